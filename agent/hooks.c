/* hooks: lifecycle hooks with time limits, run one after another by one
 * engine driven by a loop. Loop phases (post-ready, pre-stop) run on the
 * agent's loop; the phases outside it (pre-start, post-stop) run on the same
 * engine, on a loop of their own driven until the phase is over.
 *
 * Each hook runs in its own process group so that a time limit can kill
 * everything it started; whatever is still in that group when the hook
 * itself exits is killed too, so a hook cannot leave strays behind PID 1. */
#include "hooks.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "childenv.h"
#include "execprep.h"
#include "log.h"
#include "loop.h"
#include "reap.h"
#include "state.h"

extern char **environ;

/* ---- configuration ------------------------------------------------------ */

static const char *const failure_choices[] = { "fail", "warn", NULL };

int hooks_config_load(struct hooks_config *cfg, struct config_error *err)
{
    unsigned long long timeout;
    int failure;
    const char *dir = config_env_str("PI_AGENT_HOOKS_DIR");

    memset(cfg, 0, sizeof *cfg);
    if (dir == NULL)
        dir = HOOKS_DEFAULT_DIR;
    if (dir[0] != '/')
        return config_fail(err, "PI_AGENT_HOOKS_DIR", "expected an absolute path, got \"%.200s\"",
                           dir);
    if (strlen(dir) >= sizeof cfg->dir)
        return config_fail(err, "PI_AGENT_HOOKS_DIR", "path longer than %zu bytes",
                           sizeof cfg->dir - 1);
    memcpy(cfg->dir, dir, strlen(dir) + 1);
    if (config_env_uint("PI_AGENT_HOOK_TIMEOUT_SECONDS", HOOKS_DEFAULT_TIMEOUT_S, 1,
                        HOOKS_MAX_TIMEOUT_S, &timeout, err) != 0)
        return -1;
    if (config_env_choice("PI_AGENT_HOOK_FAILURE", 0, failure_choices, &failure, err) != 0)
        return -1;
    cfg->timeout_s = (unsigned)timeout;
    cfg->warn_only = failure == 1;
    return 0;
}

bool hooks_phase_known(const char *phase)
{
    return phase != NULL &&
           (strcmp(phase, HOOK_PHASE_PRE_START) == 0 || strcmp(phase, HOOK_PHASE_POST_READY) == 0 ||
            strcmp(phase, HOOK_PHASE_PRE_STOP) == 0 || strcmp(phase, HOOK_PHASE_POST_STOP) == 0);
}

/* ---- pure helpers ------------------------------------------------------- */

uint64_t hooks_time_limit_ms(unsigned timeout_s, uint64_t deadline_ms, uint64_t now_ms)
{
    uint64_t limit = (uint64_t)timeout_s * 1000u;

    if (deadline_ms == 0)
        return limit;
    if (now_ms >= deadline_ms)
        return 0;
    return deadline_ms - now_ms < limit ? deadline_ms - now_ms : limit;
}

bool hooks_describe_outcome(int wait_status, bool timed_out, uint64_t limit_ms, char *buf,
                            size_t cap)
{
    if (timed_out) {
        snprintf(buf, cap, "timed out after %llu ms", (unsigned long long)limit_ms);
        return false;
    }
    if (WIFEXITED(wait_status)) {
        snprintf(buf, cap, "exit %d", WEXITSTATUS(wait_status));
        return WEXITSTATUS(wait_status) == 0;
    }
    if (WIFSIGNALED(wait_status)) {
        snprintf(buf, cap, "signal %d", WTERMSIG(wait_status));
        return false;
    }
    snprintf(buf, cap, "wait status %d", wait_status);
    return false;
}

/* ---- running one hook ---------------------------------------------------- */

/* ---- one running phase ------------------------------------------------------ */

struct hook_run {
    struct hooks *owner;
    struct loop *loop;
    struct hooks_config cfg;
    char phase[16];
    char dir[1100];
    struct hook_list list;
    size_t next;                 /* index of the next hook to start */
    struct childenv base;        /* a copy of the caller's environment */
    struct childenv *env;        /* what hooks start from: base, or pre-start's env */
    bool prestart;               /* hooks may set variables for Tomcat */
    bool fatal;                  /* a failure stops the phase (pre-start, not warn) */
    bool watch_stop;             /* outside the loop: a pending SIGTERM/SIGINT ends it */
    bool stopped;                /* it did */
    int rc;                      /* 0, or EXIT_HOOK_FAILED */
    int *rc_out;                 /* where rc goes when the phase is over, or NULL */
    uint64_t deadline_ms;        /* 0 = no budget */
    uint64_t budget_ms;
    struct agent_state *state;
    void (*done)(void *ctx);
    void *ctx;
    /* the running hook */
    pid_t pid;
    long timer;                  /* its time limit, or the deferred finish */
    uint64_t started_ms;
    uint64_t limit_ms;
    char env_file[512];          /* its PI_AGENT_ENV_FILE, "" when none */
    struct hook_run *next_active;
};

static void record_failure(struct agent_state *state, const char *phase, const char *hook,
                           const char *what)
{
    if (state == NULL)
        return;
    snprintf(state->hooks_failure, sizeof state->hooks_failure, "%s/%s: %s", phase, hook, what);
    state_changed(state);
}

/* The one rule for how loud a failure is: an error when it stops the start
 * (a pre-start hook, PI_AGENT_HOOK_FAILURE=fail), a warning otherwise. */
static enum log_level failure_level(const struct hook_run *run)
{
    return run->fatal && !run->stopped ? LOG_ERROR : LOG_WARN;
}

/* The one place a failure is told: logged at failure_level, recorded in
 * state->hooks_failure; a fatal one ends the phase with EXIT_HOOK_FAILED. */
static void hook_failed(struct hook_run *run, const char *name, const char *msg, const char *what,
                        const char *error, int line)
{
    struct log_field fields[5] = { LF_STR("phase", run->phase), LF_STR("hook", name) };
    int n = 2;

    if (error != NULL)
        fields[n++] = LF_STR("error", error);
    if (line > 0)
        fields[n++] = LF_INT("line", line);
    log_emit(failure_level(run), msg, fields);
    record_failure(run->state, run->phase, name, what);
    if (run->fatal && !run->stopped) {
        log_error("pre-start hook failed: not starting (PI_AGENT_HOOK_FAILURE=warn would go on)",
                  LF_STR("hook", name), LF_INT("exit_status", EXIT_HOOK_FAILED));
        run->rc = EXIT_HOOK_FAILED;
        run->next = run->list.count;
    }
}

/* In the forked child: a clean signal state (the agent blocks signals for its
 * signalfd and ignores SIGPIPE; both survive exec) and fds 0-2 only. */
static void prepare_child(void)
{
    execprep_reset_signals();
    execprep_close_fds(-1);
}

static pid_t spawn_hook(const char *path, char *const *envp)
{
    pid_t pid = fork();

    if (pid < 0)
        return -1;
    if (pid == 0) {
        char *argv[] = { (char *)path, NULL };
        int err;

        if (setpgid(0, 0) != 0) {
            log_error("hook cannot get its own process group", LF_STR("hook", path),
                      LF_STR("error", strerror(errno)));
            _exit(126);
        }
        prepare_child();
        execve(path, argv, envp);
        err = errno;
        log_error("hook cannot be executed", LF_STR("hook", path), LF_STR("error", strerror(err)));
        _exit(err == ENOENT ? 127 : 126);
    }
    /* Also from the parent, so the group exists before we may signal it. It
     * fails harmlessly (EACCES) when the child already called execve. */
    (void)setpgid(pid, pid);
    return pid;
}

/* Kills what is left of a hook's process group; true when something was. */
static bool kill_group(pid_t pgid)
{
    return kill(-pgid, SIGKILL) == 0;
}

static bool stop_requested(void)
{
    sigset_t pending;

    if (sigpending(&pending) != 0)
        return false;
    return sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1;
}

static int phase_dir(const struct hooks_config *cfg, const char *phase, char *dir, size_t cap)
{
    int n = snprintf(dir, cap, "%s/%s.d", cfg->dir, phase);

    if (n < 0 || (size_t)n >= cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

static void drop_env_file(struct hook_run *run)
{
    if (run->env_file[0] && unlink(run->env_file) != 0 && errno != ENOENT)
        log_warn("cannot remove a hook's env file", LF_STR("path", run->env_file),
                 LF_STR("error", strerror(errno)));
    run->env_file[0] = '\0';
}

static void run_free(struct hook_run *run)
{
    for (struct hook_run **p = &run->owner->active; *p != NULL; p = &(*p)->next_active) {
        if (*p == run) {
            *p = run->next_active;
            break;
        }
    }
    drop_env_file(run);
    hooks_list_free(&run->list);
    childenv_free(&run->base);
    free(run);
}

static void run_finish(struct hook_run *run)
{
    void (*done)(void *) = run->done;
    void *ctx = run->ctx;

    log_debug("hook phase over", LF_STR("phase", run->phase));
    if (run->rc_out != NULL)
        *run->rc_out = run->rc;
    run_free(run);
    done(ctx);
}

static void on_finish_timer(struct loop *loop, void *ctx)
{
    (void)loop;
    run_finish(ctx);
}

static void on_hook_exit(pid_t pid, int wait_status, void *ctx);
static void on_hook_timeout(struct loop *loop, void *ctx);

/* True when the phase must end before the next hook: nothing left, Tomcat
 * gone (post-ready), a stop requested, or the budget used up. */
static bool phase_ends_here(struct hook_run *run, uint64_t limit)
{
    const char *name = run->list.names[run->next];

    /* Readiness hooks make no sense once the task is being stopped or
     * Tomcat is gone (its clean-up also signals every hook process). */
    if (run->state != NULL && (run->state->draining || !run->state->child_running) &&
        strcmp(run->phase, HOOK_PHASE_POST_READY) == 0) {
        log_info("post-ready hooks skipped: stopping, or Tomcat is not running",
                 LF_INT("skipped", run->list.count - run->next));
    } else if (run->watch_stop && stop_requested()) {
        /* Not a hook failure: the caller sees the pending signal. */
        run->stopped = true;
        record_failure(run->state, run->phase, name, "skipped: stop requested");
        log_warn("stop requested: remaining hooks skipped", LF_STR("phase", run->phase),
                 LF_INT("skipped", run->list.count - run->next - 1));
    } else if (limit == 0) {
        log_emit(failure_level(run), "hook phase out of time: remaining hooks skipped",
                 LOG_FIELDS_(LF_STR("phase", run->phase),
                             LF_INT("skipped", run->list.count - run->next),
                             LF_INT("budget_ms", run->budget_ms)));
        record_failure(run->state, run->phase, name, "skipped: phase out of time");
        if (run->fatal)
            run->rc = EXIT_HOOK_FAILED;
    } else {
        return false;
    }
    run->next = run->list.count;
    return true;
}

/* Forks the hook and arms its watch and time limit. Returns 0, or -1 after
 * hook_failed told why. */
static int start_hook(struct hook_run *run, const char *name, uint64_t limit)
{
    struct childenv hook_env;
    char path[2048];

    if ((size_t)snprintf(path, sizeof path, "%s/%s", run->dir, name) >= sizeof path) {
        hook_failed(run, name, "hook path too long", "path too long", NULL, 0);
        return -1;
    }
    if (run->prestart && hooks_env_file_create(run->env_file, sizeof run->env_file) != 0) {
        run->env_file[0] = '\0';
        hook_failed(run, name, "cannot create the hook's PI_AGENT_ENV_FILE "
                    "(set TMPDIR to a writable directory)",
                    "cannot create PI_AGENT_ENV_FILE", strerror(errno), 0);
        return -1;
    }
    if (hooks_env_build(&hook_env, run->env->vars, run->phase, run->state, limit,
                        run->env_file[0] ? run->env_file : NULL) != 0) {
        drop_env_file(run);
        hook_failed(run, name, "out of memory building the hook's environment", "out of memory",
                    NULL, 0);
        return -1;
    }
    log_debug("hook starting", LF_STR("phase", run->phase), LF_STR("hook", name),
              LF_INT("time_limit_ms", limit));
    run->started_ms = loop_now_ms();
    pid_t pid = spawn_hook(path, hook_env.vars);
    childenv_free(&hook_env);
    if (pid < 0) {
        drop_env_file(run);
        hook_failed(run, name, "cannot fork a hook", "cannot fork", strerror(errno), 0);
        return -1;
    }
    /* SIGCHLD reaches the loop only after we return: no exit is missed. */
    if (reap_watch(pid, on_hook_exit, run) != 0) {
        kill_group(pid);
        drop_env_file(run);
        hook_failed(run, name, "cannot watch a hook: killed it", "out of memory", NULL, 0);
        return -1;
    }
    run->timer = loop_timer_add(run->loop, limit, 0, on_hook_timeout, run);
    if (run->timer < 0) {
        reap_unwatch(pid);
        kill_group(pid);
        drop_env_file(run);
        hook_failed(run, name, "cannot arm a hook's time limit: killed it",
                    "cannot arm its time limit", NULL, 0);
        return -1;
    }
    run->pid = pid;
    run->limit_ms = limit;
    return 0;
}

/* Starts the next hook that can be started. Returns true when one runs. */
static bool start_next(struct hook_run *run)
{
    while (run->next < run->list.count) {
        uint64_t limit = hooks_time_limit_ms(run->cfg.timeout_s, run->deadline_ms, loop_now_ms());

        if (phase_ends_here(run, limit))
            return false;
        const char *name = run->list.names[run->next++];
        if (start_hook(run, name, limit) == 0)
            return true;
    }
    return false;
}

/* The one place a hook's outcome is logged: info when it succeeded, else at
 * failure_level. A successful pre-start hook's variables are taken here. */
static void hook_over(struct hook_run *run, bool ok, const char *outcome)
{
    const char *name = run->list.names[run->next - 1];
    uint64_t duration = loop_now_ms() - run->started_ms;

    run->pid = 0;
    run->timer = 0;
    if (ok) {
        log_info("hook finished", LF_STR("phase", run->phase), LF_STR("hook", name),
                 LF_STR("outcome", outcome), LF_INT("duration_ms", duration));
    } else {
        log_emit(failure_level(run), "hook failed",
                 LOG_FIELDS_(LF_STR("phase", run->phase), LF_STR("hook", name),
                             LF_STR("outcome", outcome), LF_INT("duration_ms", duration)));
        record_failure(run->state, run->phase, name, outcome);
    }
    if (run->env_file[0] && ok) {
        struct hooks_env_failure why;
        int count = hooks_env_file_take(run->env_file, run->env, &why);
        if (count < 0) {
            ok = false;
            hook_failed(run, name, why.msg, why.what, why.error, why.line);
        } else if (count > 0) {
            log_info("hook set variables for Tomcat", LF_STR("phase", run->phase),
                     LF_STR("hook", name), LF_INT("count", count));
        }
    } else if (run->env_file[0] && !run->stopped) {
        log_debug("failed hook's PI_AGENT_ENV_FILE ignored", LF_STR("hook", name));
    }
    drop_env_file(run);
    if (!ok && run->fatal && !run->stopped && run->rc == 0) {
        log_error("pre-start hook failed: not starting (PI_AGENT_HOOK_FAILURE=warn would go on)",
                  LF_STR("hook", name), LF_INT("exit_status", EXIT_HOOK_FAILED));
        run->rc = EXIT_HOOK_FAILED;
        run->next = run->list.count;
    }
    if (run->stopped) {
        log_warn("stop requested: remaining hooks skipped", LF_STR("phase", run->phase),
                 LF_INT("skipped", run->list.count - run->next));
        run->next = run->list.count;
    }
    if (!start_next(run))
        run_finish(run); /* inside a loop callback: done may run now */
}

static void on_hook_exit(pid_t pid, int wait_status, void *ctx)
{
    struct hook_run *run = ctx;
    char outcome[96];
    bool ok;

    loop_timer_cancel(run->loop, run->timer);
    if (kill_group(pid))
        log_warn("hook left processes behind: killed them", LF_STR("phase", run->phase),
                 LF_STR("hook", run->list.names[run->next - 1]));
    ok = hooks_describe_outcome(wait_status, false, run->limit_ms, outcome, sizeof outcome);
    hook_over(run, ok, outcome);
}

/* Killed and forgotten: the reaper collects it as an orphan, and the phase
 * goes on (or ends) now, so the stop grace is never overrun. */
static void kill_running(struct hook_run *run)
{
    loop_timer_cancel(run->loop, run->timer);
    reap_unwatch(run->pid);
    kill_group(run->pid);
}

static void on_hook_timeout(struct loop *loop, void *ctx)
{
    struct hook_run *run = ctx;
    char outcome[96];
    (void)loop;

    run->timer = 0;
    kill_running(run);
    hooks_describe_outcome(0, true, run->limit_ms, outcome, sizeof outcome);
    hook_over(run, false, outcome);
}

/* Outside the loop only: a stop request kills the running hook. */
static void stop_running(struct hook_run *run)
{
    if (run->pid <= 0 || run->stopped)
        return;
    run->stopped = true;
    kill_running(run);
    hook_over(run, false, "killed: stop requested");
}

/* Sets a phase up and starts its first hook. done(ctx) comes from the loop,
 * never from here. Returns the run, or NULL (done will not be called). */
/* rc_out != NULL: a phase outside the loop (see struct sync_drive), which a
 * pending stop signal ends and whose result goes to *rc_out. */
static struct hook_run *run_start(struct hooks *h, struct loop *loop,
                                  const struct hooks_config *cfg, const char *phase,
                                  struct childenv *env, char *const *envp, uint64_t budget_ms,
                                  struct agent_state *state, void (*done)(void *ctx),
                                  void *ctx, int *rc_out)
{
    struct hook_run *run = calloc(1, sizeof *run);

    if (run == NULL)
        return NULL;
    run->owner = h;
    run->loop = loop;
    run->cfg = *cfg;
    snprintf(run->phase, sizeof run->phase, "%s", phase);
    run->prestart = strcmp(phase, HOOK_PHASE_PRE_START) == 0 && env != NULL;
    run->fatal = strcmp(phase, HOOK_PHASE_PRE_START) == 0 && !cfg->warn_only;
    run->watch_stop = rc_out != NULL;
    run->rc_out = rc_out;
    run->state = state;
    run->done = done;
    run->ctx = ctx;
    run->budget_ms = budget_ms;
    run->deadline_ms = budget_ms != 0 ? loop_now_ms() + budget_ms : 0;
    if (childenv_init(&run->base, env != NULL ? env->vars : envp != NULL ? envp : environ) != 0) {
        free(run);
        return NULL;
    }
    run->env = run->prestart ? env : &run->base;
    run->next_active = h->active;
    h->active = run;
    if (phase_dir(cfg, phase, run->dir, sizeof run->dir) != 0 ||
        hooks_list(run->dir, &run->list) != 0) {
        const char *why = run->list.refused[0] ? run->list.refused : strerror(errno);
        log_emit(failure_level(run), "cannot read the hooks directory",
                 LOG_FIELDS_(LF_STR("phase", phase), LF_STR("dir", run->dir),
                             LF_STR("error", why)));
        record_failure(state, phase, "(directory)", why);
        if (run->fatal)
            run->rc = EXIT_HOOK_FAILED;
    } else if (run->list.count == 0) {
        log_debug("no hooks to run", LF_STR("phase", phase), LF_STR("dir", run->dir));
    } else {
        log_info("running hooks", LF_STR("phase", phase), LF_INT("count", run->list.count),
                 LF_INT("budget_ms", budget_ms));
    }
    if (start_next(run))
        return run;
    /* Nothing runs: done must still come from the loop, not from here. */
    run->timer = loop_timer_add(loop, 0, 0, on_finish_timer, run);
    if (run->timer < 0) {
        run_free(run);
        return NULL;
    }
    return run;
}

/* ---- loop phases ------------------------------------------------------------- */

int hooks_run_async(struct hooks *h, struct loop *loop, const struct hooks_config *cfg,
                    const char *phase, char *const *envp, uint64_t budget_ms,
                    struct agent_state *state, void (*done)(void *ctx), void *ctx)
{
    if (!hooks_phase_known(phase) || done == NULL) {
        log_error("unknown hook phase", LF_STR("phase", phase != NULL ? phase : "(null)"));
        return -1;
    }
    return run_start(h, loop, cfg, phase, NULL, envp, budget_ms, state, done, ctx, NULL) != NULL
               ? 0 : -1;
}

void hooks_abort_async(struct hooks *h)
{
    while (h->active != NULL) {
        struct hook_run *run = h->active;

        if (run->timer > 0)
            loop_timer_cancel(run->loop, run->timer);
        if (run->pid > 0) {
            const char *name = run->list.names[run->next - 1];
            reap_unwatch(run->pid);
            kill_group(run->pid);
            log_warn("hook killed: the agent is stopping", LF_STR("phase", run->phase),
                     LF_STR("hook", name));
            record_failure(run->state, run->phase, name, "killed: the agent is stopping");
        }
        if (run->next < run->list.count)
            log_info("hooks not run: the agent is stopping", LF_STR("phase", run->phase),
                     LF_INT("skipped", run->list.count - run->next));
        run_free(run);
    }
}

/* ---- phases outside the loop ------------------------------------------------ */

/* A loop of the phase's own: SIGCHLD read from a signalfd and reaped, and a
 * pending SIGTERM/SIGINT watched but never read (main acts on it later). */
struct sync_drive {
    struct loop *loop;
    struct hook_run *run;   /* NULL once the phase is over */
    int rc;
    int chld_fd, stop_fd;
    sigset_t old_mask;
};

static void on_sync_done(void *ctx)
{
    struct sync_drive *d = ctx;
    d->run = NULL;
    loop_stop(d->loop, 0);
}

static void on_sync_chld(struct loop *loop, int fd, uint32_t events, void *ctx)
{
    struct signalfd_siginfo si;
    (void)loop;
    (void)events;
    (void)ctx;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si)
        ;
    reap_all();
}

static void on_sync_stop(struct loop *loop, int fd, uint32_t events, void *ctx)
{
    struct sync_drive *d = ctx;
    (void)events;
    loop_del_fd(loop, fd); /* level-triggered, and left pending on purpose */
    if (d->run != NULL)
        stop_running(d->run);
}

static int sync_drive_open(struct sync_drive *d)
{
    sigset_t chld, stop;

    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    d->chld_fd = d->stop_fd = -1;
    if (sigprocmask(SIG_BLOCK, &chld, &d->old_mask) != 0)
        return -1;
    d->loop = loop_new();
    d->chld_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    d->stop_fd = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);
    if (d->loop == NULL || d->chld_fd < 0 || d->stop_fd < 0 ||
        loop_add_fd(d->loop, d->chld_fd, EPOLLIN, on_sync_chld, d) != 0 ||
        loop_add_fd(d->loop, d->stop_fd, EPOLLIN, on_sync_stop, d) != 0)
        return -1;
    return 0;
}

static void sync_drive_close(struct sync_drive *d)
{
    if (d->loop != NULL)
        loop_free(d->loop);
    if (d->chld_fd >= 0)
        close(d->chld_fd);
    if (d->stop_fd >= 0)
        close(d->stop_fd);
    (void)sigprocmask(SIG_SETMASK, &d->old_mask, NULL);
}

int hooks_run_sync(struct hooks *h, const struct hooks_config *cfg, const char *phase,
                   struct childenv *env, uint64_t budget_ms, struct agent_state *state)
{
    struct sync_drive d;
    bool fatal = strcmp(phase != NULL ? phase : "", HOOK_PHASE_PRE_START) == 0 && !cfg->warn_only;

    if (!hooks_phase_known(phase)) {
        log_error("unknown hook phase", LF_STR("phase", phase != NULL ? phase : "(null)"));
        return 0;
    }
    /* Loop phases still running now belong to a loop that ended. */
    hooks_abort_async(h);
    memset(&d, 0, sizeof d);
    if (sync_drive_open(&d) != 0) {
        log_emit(fatal ? LOG_ERROR : LOG_WARN, "cannot run hooks: no event loop",
                 LOG_FIELDS_(LF_STR("phase", phase), LF_STR("error", strerror(errno))));
        record_failure(state, phase, "(engine)", "cannot set up an event loop");
        sync_drive_close(&d);
        return fatal ? EXIT_HOOK_FAILED : 0;
    }
    d.run = run_start(h, d.loop, cfg, phase, env, NULL, budget_ms, state, on_sync_done, &d, &d.rc);
    if (d.run == NULL) {
        log_emit(fatal ? LOG_ERROR : LOG_WARN, "cannot run hooks: out of memory",
                 LOG_FIELDS_(LF_STR("phase", phase)));
        record_failure(state, phase, "(engine)", "out of memory");
        d.rc = fatal ? EXIT_HOOK_FAILED : 0;
    } else if (loop_run(d.loop) < 0 && d.run != NULL) {
        hooks_abort_async(h);
        d.rc = fatal ? EXIT_HOOK_FAILED : 0;
    }
    sync_drive_close(&d);
    return d.rc;
}
