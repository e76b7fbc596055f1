/* exit_run: see exit_run.h. PID 1 has one run, held by the agent (struct exit_run). */
#include "exit_run.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "efs.h"
#include "exit_history.h"
#include "log.h"
#include "loop.h"
#include "probe.h"
#include "state.h"
#include "worker.h"

#define READ_TIMEOUT_MS 10000
#define RECOUNT_EVERY_MS 60000


/* ---- reading, in a worker -------------------------------------------------- */

struct read_args {
    struct exit_run_where where;
    const char *own;
    const char *family;
    bool prune;
};

static int read_work(void *arg, int out_fd)
{
    const struct read_args *a = arg;
    struct exit_history h;
    char err[600];
    /* A worker keeps no descriptor of the agent's: the folder is opened
     * again, with the same checks. */
    if (exit_history_open(&h, a->where.efs_root, a->where.efs_enabled, a->where.run_dir, false,
                          err, sizeof err) != 0)
        return 1;
    struct exit_summary *sum = calloc(1, sizeof *sum);
    if (sum == NULL || exit_history_read(h.dirfd, a->own, a->family, wall_now_ms(), a->prune, sum) != 0) {
        free(sum);
        exit_history_close(&h);
        return 1;
    }
    exit_history_close(&h);
    int rc = worker_write_all(out_fd, sum, sizeof *sum) == 0 ? 0 : 1;
    free(sum);
    return rc;
}

static void task_id(const struct task_metadata *md, char *out, size_t cap)
{
    const char *slash = md->known ? strrchr(md->task_arn, '/') : NULL;
    if (slash && slash[1]) {
        snprintf(out, cap, "%s", slash + 1);
        return;
    }
    char host[256];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    snprintf(out, cap, "%.127s", host);
}

static void log_previous(const struct exit_entry *e, struct agent_state *state)
{
    struct previous_run_state *p = &state->previous_run;
    p->known = true;
    snprintf(p->task, sizeof p->task, "%s", e->rec.task);
    snprintf(p->reason, sizeof p->reason, "%s", e->rec.reason);
    p->exit_status = e->rec.exit_status;
    p->ran_s = exit_entry_ran_s(e);
    p->ended_ms = e->last_ms;

    bool bad = exit_reason_abnormal(e->rec.reason, e->rec.exit_status);
    const char *hint = e->rec.detail;
    if (e->killed)
        hint = e->rec.stop_ms
                   ? "the agent was killed while it stopped: ECS stopTimeout is probably shorter "
                     "than PI_AGENT_DRAIN_SECONDS + PI_AGENT_STOP_GRACE_SECONDS"
                   : "the agent was killed before it could record the end (SIGKILL, or the host "
                     "went away); if ECS stopped the task, its stopTimeout may be shorter than "
                     "PI_AGENT_DRAIN_SECONDS + PI_AGENT_STOP_GRACE_SECONDS";
    log_emit(bad ? LOG_WARN : LOG_INFO, "previous run",
             (const struct log_field[]){ LF_STR("task", e->rec.task),
                                         LF_STR("reason", e->rec.reason),
                                         LF_INT("exit_status", e->rec.exit_status),
                                         LF_INT("ran_s", p->ran_s),
                                         LF_BOOL("ran_s_at_least", e->killed),
                                         LF_STR("probe", e->rec.probe),
                                         LF_STR("hint", hint),
                                         { 0 } });
}

static void fill_probe(const struct agent_state *st, char *out, size_t cap)
{
    const struct probe_state *p = &st->probe;
    if (p->status == PROBE_UNSET)
        snprintf(out, cap, "none");
    else if (p->reason[0])
        snprintf(out, cap, "%.15s: %.110s", probe_status_name(p->status), p->reason);
    else
        snprintf(out, cap, "%s", probe_status_name(p->status));
}

/* Updates run in a worker: a slow or hung EFS must not hold PID 1's loop.
 * One at a time, in order; the newest state is what the next one writes. */
struct update_args {
    struct exit_run_where where;
    char name[64];
    struct exit_record rec;
};

static int update_work(void *arg, int out_fd)
{
    const struct update_args *a = arg;
    struct exit_history h;
    char err[600] = "";
    int rc = exit_history_open(&h, a->where.efs_root, a->where.efs_enabled, a->where.run_dir, false,
                               err, sizeof err);
    if (rc == 0) {
        snprintf(h.name, sizeof h.name, "%s", a->name);
        rc = exit_history_write(&h, &a->rec, err, sizeof err);
        exit_history_close(&h);
    }
    (void)worker_write_all(out_fd, err, strlen(err));
    return rc == 0 ? 0 : 1;
}

static void start_update(struct exit_run *run);

static void update_done(struct loop *loop, const struct worker_result *res, void *ctx)
{
    struct exit_run *run = ctx;
    (void)loop;
    run->update_pid = 0;
    if (run->ending)
        return; /* killed with the other workers: the end writes the whole record */
    if (!res->exited || res->exit_code != 0)
        log_warn("cannot update the run record", LF_STR("folder", run->h.dir),
                 LF_STR("error", res->data && res->data[0] ? res->data
                                 : res->timed_out        ? "timed out"
                                                         : "the worker failed"));
    if (run->update_pending) {
        run->update_pending = false;
        start_update(run);
    }
}

static void start_update(struct exit_run *run)
{
    struct update_args args;
    if (!run->open || run->loop == NULL || run->h.name[0] == '\0')
        return;
    if (run->update_pid > 0) {
        run->update_pending = true;
        return;
    }
    args.where = run->where;
    snprintf(args.name, sizeof args.name, "%s", run->h.name);
    args.rec = run->rec;
    pid_t pid = worker_start(run->loop, "run-record", update_work, &args, READ_TIMEOUT_MS,
                             update_done, run);
    if (pid > 0)
        run->update_pid = pid;
    else
        log_warn("cannot update the run record", LF_STR("error", "cannot start a worker"));
}

void exit_run_prepare(struct exit_run *run, const struct exit_run_where *where,
                      struct agent_state *state)
{
    memset(&run->rec, 0, sizeof run->rec);
    run->state = state;
    /* The strings are the settings', which live as long as the process. */
    run->where = *where;
    run->prepared = true;
    run->rec.exit_status = -1;
    run->rec.start_ms = state->started_ms ? state->started_ms : wall_now_ms();
    task_id(&state->metadata, run->rec.task, sizeof run->rec.task);
    if (state->metadata.known)
        snprintf(run->rec.family, sizeof run->rec.family, "%s", state->metadata.family);
    snprintf(run->rec.probe, sizeof run->rec.probe, "none");
}

/* Opens the records folder and writes this run's first record (rec as it
 * is then: at the end, a completed one). Once per run-> */
static void open_store(struct exit_run *run, bool quiet)
{
    char err[600];
    if (!run->prepared || run->store_tried)
        return;
    run->store_tried = true;
    if (exit_history_open(&run->h, run->where.efs_root, run->where.efs_enabled, run->where.run_dir,
                          true, err, sizeof err) != 0) {
        if (!quiet)
            log_warn("run records are not kept", LF_STR("error", err));
        return;
    }
    run->open = true;
    /* Nothing is forked here: the records are read once the loop runs. */
    if (exit_history_begin(&run->h, &run->rec, err, sizeof err) != 0) {
        if (!quiet)
            log_warn("cannot write the run record", LF_STR("error", err));
        exit_history_close(&run->h);
        run->open = false;
    }
}

void exit_run_begin(struct exit_run *run)
{
    open_store(run, false);
}

void exit_run_child_starting(struct exit_run *run)
{
    run->have_oom_base = exit_read_oom_kills(&run->oom_base) == 0;
}

void exit_run_note_ready(struct exit_run *run, const struct agent_state *state)
{
    if (run->rec.ready_ms)
        return;
    run->rec.ready_ms = wall_now_ms();
    fill_probe(state, run->rec.probe, sizeof run->rec.probe);
    start_update(run);
}

void exit_run_note_stop(struct exit_run *run, const struct agent_state *state)
{
    if (run->rec.stop_ms)
        return;
    run->rec.stop_ms = wall_now_ms();
    fill_probe(state, run->rec.probe, sizeof run->rec.probe);
    start_update(run);
}

/* ---- the fleet's recent abnormal ends ------------------------------------- */

/* The first reading at start logs the previous run and prunes; every
 * minute after, it only counts the fleet's recent abnormal ends. */
static void take_summary(struct exit_run *run, const struct worker_result *res)
{
    bool first = !run->read_once;
    run->read_once = true;
    if (res->len != sizeof(struct exit_summary)) {
        if (first)
            log_warn("cannot read the run records", LF_STR("folder", run->h.dir),
                     LF_BOOL("timed_out", res->timed_out));
        return; /* the figure stays as it was; the next minute tries again */
    }
    struct exit_summary *sum = malloc(sizeof *sum);
    if (sum == NULL)
        return;
    memcpy(sum, res->data, sizeof *sum);
    if (first) {
        if (sum->has_previous)
            log_previous(&sum->previous, run->state);
        log_debug("run records", LF_STR("folder", run->h.dir), LF_INT("records", sum->records),
                  LF_INT("recent_abnormal", sum->recent_abnormal), LF_INT("pruned", sum->pruned));
    }
    run->state->recent_abnormal_known = true;
    run->state->recent_abnormal_exits = sum->recent_abnormal;
    state_changed(run->state);
    free(sum);
}

static void read_done(struct loop *loop, const struct worker_result *res, void *ctx)
{
    struct exit_run *run = ctx;
    (void)loop;
    run->counting = false;
    /* A reading killed with the other workers at the end, reaped while the
     * end waits for its own reading. */
    if (!run->ending)
        take_summary(run, res);
}

/* A run too short for the first reading to report (a child that dies at
 * once, a crash loop): it is done before the end is written, so the
 * previous run is still told. */
static void first_reading_now(struct exit_run *run)
{
    struct read_args args = { .where = run->where, .own = run->h.name, .family = run->rec.family,
                              .prune = true };
    struct worker_result res;
    if (worker_run("run-records", read_work, &args, READ_TIMEOUT_MS, &res) != 0)
        return;
    take_summary(run, &res);
    worker_result_free(&res);
}

static void read_tick(struct loop *loop, void *ctx)
{
    struct exit_run *run = ctx;
    struct read_args args;
    if (!run->open || run->counting)
        return;
    args = (struct read_args){ .where = run->where, .own = run->h.name, .family = run->rec.family,
                               .prune = !run->read_once };
    if (worker_start(loop, "run-records", read_work, &args, READ_TIMEOUT_MS, read_done, run) > 0)
        run->counting = true;
}

int exit_run_attach(struct exit_run *run, struct loop *loop, struct agent_state *state)
{
    run->state = state;
    run->loop = loop;
    if (!run->open)
        return 0;
    if (loop_timer_add(loop, 0, 0, read_tick, run) < 0 ||
        loop_timer_add(loop, RECOUNT_EVERY_MS, RECOUNT_EVERY_MS, read_tick, run) < 0) {
        log_error("cannot schedule the reading of the run records");
        return -1;
    }
    return 0;
}

/* ---- the end ---------------------------------------------------------------- */

static void fill_detail(const char *reason, const struct agent_state *st, char *out, size_t cap)
{
    out[0] = '\0';
    if (strcmp(reason, EXIT_REASON_OOM) == 0)
        snprintf(out, cap, "the kernel's OOM killer ended the dashboard: give the task more "
                           "memory or the JVM a smaller heap");
    else if (strcmp(reason, EXIT_REASON_KILLED_AFTER_GRACE) == 0)
        snprintf(out, cap, "the dashboard did not stop within PI_AGENT_STOP_GRACE_SECONDS and "
                           "was killed");
    else if (strcmp(reason, EXIT_REASON_STARTUP_TIMEOUT) == 0)
        snprintf(out, cap, "%s", st->live_reason);
    else if (strcmp(reason, EXIT_REASON_LICENCE) == 0)
        snprintf(out, cap, "%s", st->licence.reason);
    else if (strcmp(reason, EXIT_REASON_STORAGE) == 0)
        snprintf(out, cap, "%s", st->efs.reason);
    else if (strcmp(reason, EXIT_REASON_HOOK) == 0)
        snprintf(out, cap, "%s", st->hooks_failure);
}

int exit_run_end(struct exit_run *run, struct exit_facts *facts, const struct agent_state *state)
{
    const char *reason;
    int status;
    uint64_t now_kills;

    run->ending = true;
    /* A start that stopped before the storage phase (licence, a stop
     * request) has its record written now. */
    if (run->prepared && !run->store_tried)
        open_store(run, state == NULL);
    if (run->open && !run->read_once && run->state)
        first_reading_now(run);
    if (facts->child_started && run->have_oom_base && exit_read_oom_kills(&now_kills) == 0 &&
        now_kills > run->oom_base)
        facts->oom_killed = true;
    exit_decide(facts, &reason, &status);
    run->rec.end_ms = wall_now_ms();
    if (run->rec.end_ms < run->rec.start_ms)
        run->rec.end_ms = run->rec.start_ms;
    snprintf(run->rec.reason, sizeof run->rec.reason, "%s", reason);
    run->rec.exit_status = status;
    if (state) {
        if (state->probe.status != PROBE_UNSET)
            fill_probe(state, run->rec.probe, sizeof run->rec.probe);
        fill_detail(reason, state, run->rec.detail, sizeof run->rec.detail);
    }
    /* A configuration error (no state yet) is one line on stderr, which
     * main has written: the record is kept without another line. */
    if (state)
        log_emit(exit_reason_abnormal(reason, status) ? LOG_WARN : LOG_INFO, "run ended",
             (const struct log_field[]){ LF_STR("reason", reason), LF_INT("exit_status", status),
                                         LF_INT("ran_s", (run->rec.end_ms - run->rec.start_ms) / 1000u),
                                         LF_STR("detail", run->rec.detail), { 0 } });
    if (run->open) {
        char err[600];
        /* An update still on its way must not land after the end: it was
         * killed with the other workers; wait until it is gone. */
        if (run->update_pid > 0)
            while (waitpid(run->update_pid, NULL, 0) < 0 && errno == EINTR)
                ;
        run->update_pid = 0;
        if ((run->h.name[0] == '\0' ? exit_history_begin(&run->h, &run->rec, err, sizeof err) != 0
                                    : exit_history_write(&run->h, &run->rec, err, sizeof err) != 0) &&
            state)
            log_warn("cannot write the run record", LF_STR("when", "end"), LF_STR("error", err));
        exit_history_end(&run->h);
        exit_history_close(&run->h);
    }
    run->open = false;
    return status;
}

/* ---- a configuration error ---------------------------------------------------- */

void exit_run_config_failed(int exit_status)
{
    static struct agent_state st; /* nothing known but the clock */
    /* The settings did not load: each folder by its own rule, else its default. */
    char run_dir[CONFIG_RUN_DIR_MAX + 1], efs_root[PATH_MAX];
    struct config_error cerr;
    if (config_run_dir(run_dir, sizeof run_dir, &cerr) != 0)
        snprintf(run_dir, sizeof run_dir, "%s", CONFIG_DEFAULT_RUN_DIR);
    if (efs_config_root(efs_root, sizeof efs_root, &cerr) != 0)
        snprintf(efs_root, sizeof efs_root, "%s", EFS_DEFAULT_ROOT);
    const char *mode = getenv("PI_EFS_MODE");
    struct exit_run_where where = {
        .efs_root = efs_root,
        .efs_enabled = !(mode && strcmp(mode, "off") == 0),
        .run_dir = run_dir,
    };
    char err[600];
    struct exit_run one = { 0 }, *run = &one; /* nothing else of the run exists yet */
    run->rec.start_ms = wall_now_ms();
    task_id(&st.metadata, run->rec.task, sizeof run->rec.task);
    snprintf(run->rec.probe, sizeof run->rec.probe, "none");
    if (exit_history_open(&run->h, where.efs_root, where.efs_enabled, where.run_dir, true, err,
                          sizeof err) != 0)
        return; /* the configuration error itself was the line that matters */
    run->open = true;
    snprintf(run->rec.detail, sizeof run->rec.detail,
             "a variable is invalid: the log's configuration error (or pi-agent check) names it");
    struct exit_facts f = { .start_rc = exit_status, .stop_exit_status = -1 };
    exit_run_end(run, &f, NULL);
}
