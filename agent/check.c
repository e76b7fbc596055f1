/* check: see check.h. Nothing here writes anything but the write probe's
 * own file, which it removes. */
#include "check.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <time.h>

#include "config.h"
#include "exit_history.h"
#include "efs.h"
#include "emf.h"
#include "health.h"
#include "hooks.h"
#include "licence.h"
#include "probe.h"
#include "readiness.h"
#include "state.h"
#include "traffic.h"

struct checker {
    FILE *out;
    int ok, warn, fail;
};

static void line(struct checker *c, enum efs_level level, const char *check, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void line(struct checker *c, enum efs_level level, const char *check, const char *fmt, ...)
{
    static const char *const words[] = { "ok", "warn", "fail" };
    va_list ap;
    fprintf(c->out, "%-5s %-18s ", words[level], check);
    va_start(ap, fmt);
    vfprintf(c->out, fmt, ap);
    va_end(ap);
    fputc('\n', c->out);
    if (level == EFS_OK)
        c->ok++;
    else if (level == EFS_WARN)
        c->warn++;
    else
        c->fail++;
}

static void efs_line(void *ctx, enum efs_level level, const char *check, const char *text)
{
    line(ctx, level, check, "%s", text);
}

static void check_licence(struct checker *c, const struct licence_config *cfg)
{
    static struct licence_state st;
    memset(&st, 0, sizeof(st));
    bool acceptable = licence_check(cfg, &st) == 0;
    /* The start's own rule: what stops the start is a failure here. */
    bool blocks = licence_blocks_readiness(st.status, cfg->required);
    enum efs_level level;
    if (blocks)
        level = EFS_FAIL;
    else if (!acceptable)
        level = EFS_WARN;
    else
        level = st.status == LS_VALID ? EFS_OK : EFS_WARN;
    const char *stops = blocks ? "; PI_AGENT_LICENCE_REQUIRED=true stops the start" : "";
    if (st.has_days_left)
        line(c, level, "licence", "%s (%ld day(s) left)%s%s%s", licence_status_name(st.status),
             st.days_left, st.reason[0] ? ": " : "", st.reason, stops);
    else
        line(c, level, "licence", "%s%s%s%s", licence_status_name(st.status),
             st.reason[0] ? ": " : "", st.reason, stops);
}

static void check_budget(struct checker *c, const struct efs_config *cfg,
                         const struct efs_scan_set *plan, struct efs_state *st)
{
    struct util_first_error err;
    if (efs_measure(cfg, plan, st, &err) < 0) {
        line(c, EFS_FAIL, "budget", "nothing could be measured: %s", err.msg);
        return;
    }
    for (int i = 0; i < st->nfolders; i++)
        line(c, EFS_OK, "usage", "%-12s %llu bytes in %llu file(s)", st->folders[i].name,
             (unsigned long long)st->folders[i].bytes, (unsigned long long)st->folders[i].files);
    if (err.count)
        line(c, EFS_WARN, "budget", "%llu entr%s could not be read: %s",
             (unsigned long long)err.count, err.count == 1 ? "y" : "ies", err.msg);
    enum efs_status state = efs_budget_status(st->total_bytes, cfg->budget_bytes,
                                              cfg->warn_percent);
    enum efs_level level = EFS_OK;
    if (efs_status_blocks_readiness(state, cfg->over_budget_fail))
        level = EFS_FAIL;
    else if (state != EFS_STATUS_OK)
        level = EFS_WARN;
    line(c, level, "budget", "%s: %llu of %llu bytes (%.1f%%, PI_EFS_BUDGET_BYTES), %llu file(s), "
         "measured in %.2f s%s",
         efs_status_name(state), (unsigned long long)st->total_bytes, (unsigned long long)cfg->budget_bytes,
         (double)st->total_bytes * 100.0 / (double)cfg->budget_bytes,
         (unsigned long long)st->files, st->scan_seconds,
         level == EFS_FAIL ? "; PI_EFS_OVER_BUDGET=fail fails readiness" : "");
}

/* Could this container run with a read-only root file system? Only when the
 * start has nothing to write there: every dashboard folder is already a link
 * into PI_EFS_ROOT (`pi-agent image-links` at build) or a mount point, and
 * the folders the agent and Tomcat write to are mounts of their own. When the
 * root is read-only now, what is missing is a failure; otherwise it is only
 * information (a read-only root is a choice). */
static void check_readonly_root(struct checker *c, const struct efs_config *efs,
                                const char *run_dir)
{
    struct statvfs vs;
    bool ro = statvfs("/", &vs) == 0 && (vs.f_flag & ST_RDONLY);
    const char *blocker = NULL, *blocker_state = NULL;
    if (efs->mode != EFS_MODE_OFF) {
        for (int i = 0; i < efs->links.count && !blocker; i++) {
            const struct efs_link *l = &efs->links.link[i];
            char folder[PATH_MAX];
            enum efs_link_state state;
            efs_fmt(folder, sizeof(folder), "%s/%s", efs->root, l->name);
            if (efs_link_inspect(l->path, folder, &state) < 0) {
                blocker = l->path;
                blocker_state = "unreadable";
            } else if (state != EFS_LINK_OK && state != EFS_LINK_MOUNT_POINT) {
                blocker = l->path;
                blocker_state = efs_link_state_name(state);
            }
        }
    }
    if (blocker) {
        line(c, ro ? EFS_FAIL : EFS_OK, "read-only root",
             "%s: %s (%s) would have to become a link into PI_EFS_ROOT at start; build the "
             "image with `pi-agent image-links` (docs/ecs.md)",
             ro ? "the root is read-only and the start must write to it" : "would not work",
             blocker, blocker_state);
        return;
    }
    /* What the agent and Tomcat write while running. */
    char tomcat[3][PATH_MAX];
    const char *writable[5] = { run_dir, "/tmp", tomcat[0], tomcat[1], tomcat[2] };
    static const char *const sub[3] = { "logs", "work", "temp" };
    for (int i = 0; i < 3; i++)
        efs_fmt(tomcat[i], sizeof(tomcat[i]), "%s/tomcat/%s", efs->dashboard_home, sub[i]);
    int missing = 0;
    for (int i = 0; i < 5; i++) {
        /* The folder, or its nearest existing parent, must not be on a
         * read-only file system (access reports EROFS even to root). */
        char probe[PATH_MAX];
        snprintf(probe, sizeof(probe), "%s", writable[i]);
        while (access(probe, F_OK) != 0 && strrchr(probe, '/') && strrchr(probe, '/') != probe)
            *strrchr(probe, '/') = '\0';
        if (access(probe, W_OK) != 0 && errno == EROFS) {
            line(c, EFS_FAIL, "read-only root", "%s is on a read-only file system: mount a tmpfs "
                 "there (docs/ecs.md)", writable[i]);
            missing++;
        }
    }
    if (missing == 0)
        line(c, EFS_OK, "read-only root",
             "%s: %s; %s, /tmp and Tomcat's logs, work and temp need a tmpfs each (docs/ecs.md)",
             ro ? "works" : "would work",
             efs->mode == EFS_MODE_OFF ? "PI_EFS_MODE=off"
                                       : "every dashboard folder is a link into PI_EFS_ROOT or a "
                                         "mount point",
             run_dir);
}

/* Root on shared storage: Tomcat should not run as root, and the EFS root
 * should not be the run-as user's to write (see docs/storage.md). */
static void check_run_as(struct checker *c, const struct efs_config *efs,
                         const struct run_as *run_as, const struct efs_state *st)
{
    if (!run_as) {
        line(c, EFS_WARN, "run-as",
             "PI_AGENT_RUN_AS is not set: Tomcat runs as root; set it to the dashboard's user "
             "(e.g. PI_AGENT_RUN_AS=tomcat)");
        return;
    }
    line(c, EFS_OK, "run-as", "Tomcat runs as %s (uid %u)",
         run_as->user[0] ? run_as->user : "PI_AGENT_RUN_AS", (unsigned)run_as->uid);
    if (strcmp(st->mode, "managed") != 0)
        return;
    const char *dirs[1] = { efs->root };
    bool writable = false;
    char msg[512];
    if (efs_write_probe(dirs, 1, run_as, &writable, msg, sizeof(msg)) == 0 && writable)
        line(c, EFS_WARN, "root owner",
             "PI_EFS_ROOT=%s is writable by %s: the dashboard's user can plant links next to "
             "the agent's files (they are refused, see docs/storage.md); an access point whose "
             "root directory is owned by root (uid 0, mode 0755) closes the risk",
             efs->root, run_as->user[0] ? run_as->user : "the run-as user");
}

/* The last five run records, newest first. Reading them is the check (ok);
 * how those runs ended is history, not a reason to fail this one. */
static void print_runs(struct checker *c, const struct efs_config *efs, const char *run_dir)
{
    struct exit_history h;
    char err[600];
    static struct exit_summary sum;
    if (exit_history_open(&h, efs->root, efs->mode != EFS_MODE_OFF, run_dir, false, err,
                          sizeof(err)) != 0) {
        line(c, EFS_OK, "runs", "none kept yet (%s)", err);
        return;
    }
    if (exit_history_read(h.dirfd, "", "", (uint64_t)time(NULL) * 1000u, false, &sum) != 0) {
        line(c, EFS_WARN, "runs", "cannot read %s", h.dir);
        exit_history_close(&h);
        return;
    }
    line(c, EFS_OK, "runs", "%u record(s) in %s, %u abnormal end(s) in the last hour", sum.records,
         h.dir, sum.recent_abnormal);
    for (int i = 0; i < sum.nnewest; i++) {
        const struct exit_entry *e = &sum.newest[i];
        char when[32] = "?";
        time_t t = (time_t)(e->rec.start_ms / 1000u);
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        if (e->running)
            line(c, EFS_OK, "run", "%s task %s: running", when, e->rec.task);
        else
            line(c, EFS_OK, "run", "%s task %s: %s, exit %d, ran %s%lld s%s%s", when, e->rec.task,
                 e->rec.reason, e->rec.exit_status, e->killed ? "at least " : "",
                 exit_entry_ran_s(e), e->rec.detail[0] ? ": " : "", e->rec.detail);
    }
    exit_history_close(&h);
}

int check_run(FILE *out)
{
    struct checker c = { .out = out };
    struct config_error err = { "" };
    static struct agent_config agent;
    static struct licence_config licence;
    static struct efs_config efs;
    static struct health_config health;
    static struct probe_config probe;
    static struct emf_config emf;
    static struct hooks_config hooks;
    static struct traffic_config traffic;
    bool agent_loaded = false, licence_loaded = false;

    memset(&agent, 0, sizeof(agent));
    memset(&licence, 0, sizeof(licence));
    if (agent_config_load(&agent, NULL, &err) != 0 || !(agent_loaded = true) ||
        licence_config_load(&licence, &err) != 0 || !(licence_loaded = true) ||
        efs_config_load(&efs, &err) != 0 || health_config_load(&health, &err) != 0 ||
        probe_config_load(&probe, &err) != 0 ||
        emf_config_load(&emf, &err) != 0 || hooks_config_load(&hooks, &err) != 0 ||
        traffic_config_load(&traffic, &probe, &emf, agent.drain_s, &err) != 0) {
        line(&c, EFS_FAIL, "config", "%s", err.msg);
    } else {
        line(&c, EFS_OK, "config", "every variable is valid");
        check_licence(&c, &licence);
        static struct efs_state st;
        static struct efs_scan_set plan;
        int rc = efs_check_storage(&efs, agent.run_as.set ? &agent.run_as : NULL, efs_line, &c,
                                   &st, &plan);
        if (rc == EXIT_STORAGE)
            line(&c, EFS_FAIL, "storage", "a start would stop with exit status %d", EXIT_STORAGE);
        else if (st.status == EFS_STATUS_FAILED)
            line(&c, EFS_FAIL, "storage", "storage would fail: readiness would fail");
        check_run_as(&c, &efs, agent.run_as.set ? &agent.run_as : NULL, &st);
        if (plan.nscan > 0)
            check_budget(&c, &efs, &plan, &st);
        check_readonly_root(&c, &efs, licence.run_dir);
        if (efs.housekeeping.retention_days)
            line(&c, EFS_OK, "housekeeping", "files in %s older than %u day(s) are removed daily",
                 efs.housekeeping.log_dir, efs.housekeeping.retention_days);
        else
            line(&c, EFS_OK, "housekeeping", "off (PI_AGENT_LOG_RETENTION_DAYS=0)");
        print_runs(&c, &efs, licence.run_dir);
    }
    fprintf(out, "check: %d ok, %d warning(s), %d failure(s)\n", c.ok, c.warn, c.fail);
    fflush(out);
    if (licence_loaded)
        licence_config_free(&licence);
    if (agent_loaded)
        agent_config_free(&agent);
    return c.fail ? CHECK_FAILED : c.warn ? CHECK_DEGRADED : CHECK_OK;
}

int check_command(void)
{
    return check_run(stdout);
}
