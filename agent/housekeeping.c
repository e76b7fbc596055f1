/* housekeeping: see housekeeping.h. */
#include "housekeeping.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsafe.h"
#include "log.h"
#include "loop.h"
#include "worker.h"

#define HOUSEKEEPING_FIRST_DELAY_MS 2000
#define HOUSEKEEPING_TIMEOUT_MS (10 * 60 * 1000)

static void fmt_error(struct housekeeping_result *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Keeps the first error only; a long path is cut short. */
static void fmt_error(struct housekeeping_result *out, const char *fmt, ...)
{
    if (out->errors++ > 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->first_error, sizeof(out->first_error), fmt, ap);
    va_end(ap);
}

int housekeeping_config_load(struct housekeeping_config *cfg, const char *dashboard_home,
                             struct config_error *err)
{
    unsigned long long days;
    memset(cfg, 0, sizeof(*cfg));
    if (config_env_uint("PI_AGENT_LOG_RETENTION_DAYS", 7, 0, 36500, &days, err) < 0)
        return -1;
    cfg->retention_days = (unsigned)days;
    const char *dir = config_env_str("PI_AGENT_TOMCAT_LOG_DIR");
    if (dir) {
        if (dir[0] != '/')
            return config_fail(err, "PI_AGENT_TOMCAT_LOG_DIR", "must be an absolute path, got \"%.200s\"", dir);
        if (strlen(dir) >= sizeof(cfg->log_dir))
            return config_fail(err, "PI_AGENT_TOMCAT_LOG_DIR", "is too long");
        snprintf(cfg->log_dir, sizeof(cfg->log_dir), "%s", dir);
    } else {
        int n = snprintf(cfg->log_dir, sizeof(cfg->log_dir), "%s/tomcat/logs", dashboard_home);
        if (n < 0 || (size_t)n >= sizeof(cfg->log_dir))
            return config_fail(err, "PI_DASHBOARD_HOME", "is too long");
    }
    return 0;
}

bool housekeeping_expired(int64_t mtime, int64_t now, unsigned retention_days)
{
    if (retention_days == 0)
        return false;
    return now - mtime > (int64_t)retention_days * 86400;
}

int housekeeping_run(const struct housekeeping_config *cfg, int64_t now,
                     struct housekeeping_result *out)
{
    memset(out, 0, sizeof(*out));
    if (cfg->retention_days == 0)
        return 0;
    /* Tomcat's user can write there: a symlink it planted on the way (or
     * as the folder itself) is never followed, only those root made. */
    int dfd = fsafe_open_dir_trusted(cfg->log_dir, false);
    if (dfd < 0) {
        if (errno == ENOENT)
            return 0;
        if (errno == ELOOP)
            fmt_error(out, "%s: a symlink that root did not make is on the way; not followed",
                      cfg->log_dir);
        else
            fmt_error(out, "%s: cannot open: %s", cfg->log_dir, strerror(errno));
        return -1;
    }
    int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        fmt_error(out, "%s: cannot read: %s", cfg->log_dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        close(dfd);
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (!housekeeping_expired((int64_t)st.st_mtime, now, cfg->retention_days)) {
            out->kept++;
            continue;
        }
        if (unlinkat(dfd, e->d_name, 0) == 0) {
            out->removed++;
        } else if (errno != ENOENT) {
            fmt_error(out, "%s/%s: cannot remove: %s", cfg->log_dir, e->d_name, strerror(errno));
        }
    }
    closedir(d);
    close(dfd);
    return 0;
}

/* ---- in the loop ---------------------------------------------------------- */

static bool running;
static struct run_as hk_run_as;

void housekeeping_set_run_as(const struct run_as *run_as)
{
    memset(&hk_run_as, 0, sizeof(hk_run_as));
    if (run_as && run_as->set)
        hk_run_as = *run_as;
}

/* In the worker: the run-as user's identity, as the supervisor gives it to
 * the child. */
static int drop_to_run_as(struct housekeeping_result *res)
{
    if (!hk_run_as.set || geteuid() == hk_run_as.uid)
        return 0;
    int groups_rc = -1;
    if (hk_run_as.user[0])
        groups_rc = initgroups(hk_run_as.user, hk_run_as.gid);
    if (groups_rc != 0)
        groups_rc = setgroups(1, &hk_run_as.gid);
    if (groups_rc != 0 || setgid(hk_run_as.gid) != 0 || setuid(hk_run_as.uid) != 0) {
        memset(res, 0, sizeof(*res));
        fmt_error(res, "cannot switch to uid %u (PI_AGENT_RUN_AS): %s", (unsigned)hk_run_as.uid,
                  strerror(errno));
        return -1;
    }
    return 0;
}

static int housekeeping_work(void *arg, int out_fd)
{
    const struct housekeeping_config *cfg = arg;
    struct housekeeping_result res;
    if (drop_to_run_as(&res) == 0)
        housekeeping_run(cfg, (int64_t)time(NULL), &res);
    return worker_write_all(out_fd, &res, sizeof(res)) == 0 ? 0 : 1;
}

static void housekeeping_done(struct loop *loop, const struct worker_result *res, void *ctx)
{
    const struct housekeeping_config *cfg = ctx;
    (void)loop;
    running = false;
    if (!res->exited || res->exit_code != 0 || res->len != sizeof(struct housekeeping_result)) {
        log_warn("log housekeeping did not finish", LF_STR("folder", cfg->log_dir));
        return;
    }
    struct housekeeping_result r;
    memcpy(&r, res->data, sizeof(r));
    if (r.errors)
        log_warn("log housekeeping could not remove every old file", LF_STR("folder", cfg->log_dir),
                 LF_INT("removed", r.removed), LF_INT("errors", r.errors),
                 LF_STR("error", r.first_error));
    else
        log_info("log housekeeping done", LF_STR("folder", cfg->log_dir),
                 LF_INT("removed", r.removed), LF_INT("kept", r.kept),
                 LF_INT("retention_days", cfg->retention_days));
}

static void housekeeping_tick(struct loop *loop, void *ctx)
{
    if (running)
        return;
    if (worker_start(loop, "housekeeping", housekeeping_work, ctx, HOUSEKEEPING_TIMEOUT_MS,
                     housekeeping_done, ctx) > 0)
        running = true;
}

int housekeeping_attach(struct loop *loop, const struct housekeeping_config *cfg)
{
    if (cfg->retention_days == 0)
        return 0;
    long id = loop_timer_add(loop, HOUSEKEEPING_FIRST_DELAY_MS, HOUSEKEEPING_INTERVAL_MS,
                             housekeeping_tick, (void *)cfg);
    return id > 0 ? 0 : -1;
}
