/* housekeeping: see housekeeping.h. */
#include "housekeeping.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsafe.h"
#include "log.h"
#include "loop.h"
#include "runas.h"
#include "util.h"
#include "worker.h"

#define HOUSEKEEPING_FIRST_DELAY_MS 2000
#define HOUSEKEEPING_TIMEOUT_MS (10 * 60 * 1000)

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
            return config_fail(err, "PI_AGENT_TOMCAT_LOG_DIR",
                               "must be an absolute path, got \"%.200s\"", dir);
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
            util_first_error_add(&out->errors,
                                 "%s: a symlink that root did not make is on the way; not followed",
                                 cfg->log_dir);
        else
            util_first_error_add(&out->errors, "%s: cannot open: %s", cfg->log_dir,
                                 strerror(errno));
        return -1;
    }
    int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        util_first_error_add(&out->errors, "%s: cannot read: %s", cfg->log_dir, strerror(errno));
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
            util_first_error_add(&out->errors, "%s/%s: cannot remove: %s", cfg->log_dir,
                                 e->d_name, strerror(errno));
        }
    }
    closedir(d);
    close(dfd);
    return 0;
}

/* ---- in the loop ---------------------------------------------------------- */

/* In the worker: the run-as user's identity, as the supervisor gives it to
 * the child. */
static int drop_to_run_as(const struct run_as *run_as, struct housekeeping_result *res)
{
    if (!run_as->set || geteuid() == run_as->uid)
        return 0;
    if (runas_drop(run_as) != 0) {
        memset(res, 0, sizeof(*res));
        util_first_error_add(&res->errors, "cannot switch to uid %u (PI_AGENT_RUN_AS): %s",
                             (unsigned)run_as->uid, strerror(errno));
        return -1;
    }
    return 0;
}

static int housekeeping_work(void *arg, int out_fd)
{
    const struct housekeeping *hk = arg;
    struct housekeeping_result res;
    if (drop_to_run_as(&hk->run_as, &res) == 0)
        housekeeping_run(hk->cfg, (int64_t)time(NULL), &res);
    return worker_write_all(out_fd, &res, sizeof(res)) == 0 ? 0 : 1;
}

static void housekeeping_done(struct loop *loop, const struct worker_result *res, void *ctx)
{
    struct housekeeping *hk = ctx;
    const struct housekeeping_config *cfg = hk->cfg;
    (void)loop;
    hk->running = false;
    if (!res->exited || res->exit_code != 0 || res->len != sizeof(struct housekeeping_result)) {
        log_warn("log housekeeping did not finish", LF_STR("folder", cfg->log_dir));
        return;
    }
    struct housekeeping_result r;
    memcpy(&r, res->data, sizeof(r));
    if (r.errors.count)
        log_warn("log housekeeping could not remove every old file", LF_STR("folder", cfg->log_dir),
                 LF_INT("removed", r.removed), LF_INT("errors", r.errors.count),
                 LF_STR("error", r.errors.msg));
    else
        log_info("log housekeeping done", LF_STR("folder", cfg->log_dir),
                 LF_INT("removed", r.removed), LF_INT("kept", r.kept),
                 LF_INT("retention_days", cfg->retention_days));
}

static void housekeeping_tick(struct loop *loop, void *ctx)
{
    struct housekeeping *hk = ctx;
    if (hk->running)
        return;
    if (worker_start(loop, "housekeeping", housekeeping_work, hk, HOUSEKEEPING_TIMEOUT_MS,
                     housekeeping_done, hk) > 0)
        hk->running = true;
}

int housekeeping_attach(struct housekeeping *hk, struct loop *loop,
                        const struct housekeeping_config *cfg, const struct run_as *run_as)
{
    memset(hk, 0, sizeof(*hk));
    hk->cfg = cfg;
    if (run_as && run_as->set)
        hk->run_as = *run_as;
    if (cfg->retention_days == 0)
        return 0;
    long id = loop_timer_add(loop, HOUSEKEEPING_FIRST_DELAY_MS, HOUSEKEEPING_INTERVAL_MS,
                             housekeeping_tick, hk);
    return id > 0 ? 0 : -1;
}
