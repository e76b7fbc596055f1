/* efs_service: the storage figures while the agent runs. The budget walk of
 * the folders the start phase found (efs_measure, also `pi-agent check`),
 * the rescans in a worker every PI_EFS_SCAN_INTERVAL_SECONDS +-10%, the
 * daily log housekeeping, and `pi-agent du`. See efs.h. */
#include "efs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "efs_scan.h"
#include "efs_seed.h"
#include "efs_share.h"
#include "fsafe.h"
#include "log.h"
#include "loop.h"
#include "state.h"
#include "util.h"
#include "worker.h"

#define EFS_FIRST_SCAN_DELAY_MS 100
#define EFS_SCAN_MAGIC 0x70694573u /* "piEs" */

/* ---- measuring ---------------------------------------------------------- */

int efs_measure(const struct efs_config *cfg, const struct efs_scan_set *plan,
                struct efs_state *st, struct util_first_error *err)
{
    double t0 = util_mono_s();
    struct efs_scan *scan = efs_scan_new();
    memset(err, 0, sizeof(*err));
    if (!scan) {
        snprintf(err->msg, sizeof(err->msg), "out of memory");
        return -1;
    }
    int measured = 0;
    st->total_bytes = 0;
    st->files = 0;
    st->nfolders = plan->nscan;
    for (int i = 0; i < plan->nscan; i++) {
        struct efs_scan_totals t;
        struct stat top;
        if (lstat(plan->paths[i], &top) < 0 && errno == ENOENT) {
            /* not created yet (a dry run) or removed meanwhile: nothing to count */
            memset(&st->folders[i], 0, sizeof(st->folders[i]));
            snprintf(st->folders[i].name, sizeof(st->folders[i].name), "%s", plan->names[i]);
            measured++;
            continue;
        }
        int rc = efs_scan_tree(scan, plan->paths[i], &t);
        snprintf(st->folders[i].name, sizeof(st->folders[i].name), "%s", plan->names[i]);
        st->folders[i].bytes = t.bytes;
        st->folders[i].files = t.files;
        st->total_bytes += t.bytes;
        st->files += t.files;
        if (t.err.count && err->count == 0)
            snprintf(err->msg, sizeof(err->msg), "%s", t.err.msg);
        err->count += t.err.count;
        if (rc == 0)
            measured++;
    }
    efs_scan_free(scan);
    st->budget_bytes = cfg->budget_bytes;
    st->scan_seconds = util_mono_s() - t0;
    st->scanned = true;
    return measured > 0 || plan->nscan == 0 ? 0 : -1;
}

/* ---- budget scans in the loop --------------------------------------------- */

struct scan_report {
    uint32_t magic;
    int rc;
    struct util_first_error err;
    struct efs_state st;
    bool shared;              /* the figures are another task's walk */
    double shared_age_s;      /* how old that walk was */
    char share_error[256];    /* why the fleet's record could not be used or written */
};

/* ---- one walk per interval for the fleet ----------------------------------- */

#define SHARE_TMP_PREFIX ".scan.tmp."

/* Reads the fleet's record (at most EFS_SHARE_MAX bytes, a regular file,
 * never through a link). */
static int read_share_record(int agentfd, struct efs_share_record *r)
{
    char buf[EFS_SHARE_MAX + 1];
    int fd = openat(agentfd, "scan", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    ssize_t n = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= EFS_SHARE_MAX)
        n = pread(fd, buf, EFS_SHARE_MAX, 0);
    close(fd);
    return n > 0 ? efs_share_parse(buf, (size_t)n, r) : -1;
}

/* Writes the record through a random O_EXCL temporary, fsync and rename.
 * Only the lock holder writes: a temporary found under the lock is a
 * leftover of a killed writer. */
static int write_share_record(const char *root, int agentfd, const struct efs_share_record *r,
                              char *err, size_t cap)
{
    char text[EFS_SHARE_MAX], tmp[64];
    int n = efs_share_format(r, text, sizeof(text));
    if (n < 0) {
        efs_fmt(err, cap, "the scan record does not fit %d bytes", EFS_SHARE_MAX);
        return -1;
    }
    int dfd = fcntl(agentfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strncmp(e->d_name, SHARE_TMP_PREFIX, sizeof(SHARE_TMP_PREFIX) - 1) == 0)
                (void)unlinkat(agentfd, e->d_name, 0);
        closedir(d);
    } else if (dfd >= 0) {
        close(dfd);
    }
    snprintf(tmp, sizeof(tmp), SHARE_TMP_PREFIX "%016llx", (unsigned long long)util_random64());
    int fd = openat(agentfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        efs_fmt(err, cap, "%s/%s: cannot create: %s", root, EFS_AGENT_DIR, strerror(errno));
        return -1;
    }
    const char *step = NULL;
    if (worker_write_all(fd, text, (size_t)n) != 0)
        step = "write";
    else if (fsync(fd) != 0)
        step = "fsync";
    else if (renameat(agentfd, tmp, agentfd, "scan") != 0)
        step = "rename";
    int saved = errno;
    close(fd);
    if (step) {
        (void)unlinkat(agentfd, tmp, 0);
        efs_fmt(err, cap, "%s/%s: cannot write (%s): %s", root, EFS_SHARE_RECORD, step,
                 strerror(saved));
        return -1;
    }
    return 0;
}

static void measure_into(const struct efs_service *svc, struct scan_report *rep)
{
    rep->rc = efs_measure(svc->cfg, &svc->scan, &rep->st, &rep->err);
}

/* One walk per interval for the fleet: under the scan lock, a record
 * younger than the interval stands for a walk; else this task walks and
 * leaves its figures for the others. Any trouble with the shared files
 * (a link, a foreign owner, no lock) means a walk of its own. */
static void measure_shared(const struct efs_service *svc, struct scan_report *rep)
{
    char *err = rep->share_error;
    size_t cap = sizeof(rep->share_error);
    /* The start phase made ROOT/.pi-agent the agent's own folder; only
     * that folder, still so, is trusted here. */
    int rootfd = fsafe_open_dir_trusted(svc->cfg->root, false);
    int agentfd = rootfd >= 0 ? efs_agent_dir_read(rootfd, NULL) : -1;
    int saved = errno;
    int lockfd = -1;
    struct stat st;
    if (rootfd >= 0)
        close(rootfd);
    if (agentfd < 0 && saved == EPERM && rootfd >= 0) {
        efs_fmt(err, cap, "%s/%s is not the agent's own folder: the fleet's scan record is not "
                "used", svc->cfg->root, EFS_AGENT_DIR);
        measure_into(svc, rep);
        return;
    }
    if (agentfd < 0) {
        efs_fmt(err, cap, "%s/%s: cannot open: %s", svc->cfg->root, EFS_AGENT_DIR,
                strerror(saved));
        measure_into(svc, rep);
        return;
    }
    lockfd = openat(agentfd, "scan.lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    int rc = -1;
    if (lockfd >= 0 && fstat(lockfd, &st) == 0 && S_ISREG(st.st_mode))
        while ((rc = fcntl(lockfd, F_SETLKW, &fl)) < 0 && errno == EINTR)
            ;
    if (rc != 0) {
        efs_fmt(err, cap, "%s/%s: cannot lock: %s", svc->cfg->root, EFS_SHARE_LOCK, strerror(errno));
        if (lockfd >= 0)
            close(lockfd);
        close(agentfd);
        measure_into(svc, rep);
        return;
    }
    struct efs_share_record r;
    uint64_t now = wall_now_ms();
    if (read_share_record(agentfd, &r) == 0 &&
        efs_share_usable(&r, svc->writer, svc->scan.names, svc->scan.nscan, now,
                         (uint64_t)svc->cfg->scan_interval_s * 1000u)) {
        rep->rc = 0;
        rep->shared = true;
        rep->shared_age_s = (double)(now - r.time_ms) / 1000.0;
        rep->st.total_bytes = r.total_bytes;
        rep->st.files = r.files;
        rep->st.budget_bytes = svc->cfg->budget_bytes;
        rep->st.scan_seconds = r.scan_seconds;
        rep->st.nfolders = r.nfolders;
        memcpy(rep->st.folders, r.folders, sizeof(rep->st.folders));
        rep->st.scanned = true;
        rep->err.count = r.errors;
    } else {
        measure_into(svc, rep);
        if (rep->rc == 0) {
            memset(&r, 0, sizeof(r));
            r.time_ms = wall_now_ms();
            r.writer = svc->writer;
            r.total_bytes = rep->st.total_bytes;
            r.files = rep->st.files;
            r.errors = rep->err.count;
            r.scan_seconds = rep->st.scan_seconds;
            r.nfolders = rep->st.nfolders;
            memcpy(r.folders, rep->st.folders, sizeof(r.folders));
            (void)write_share_record(svc->cfg->root, agentfd, &r, err, cap);
        }
    }
    fl.l_type = F_UNLCK;
    (void)fcntl(lockfd, F_SETLK, &fl);
    close(lockfd);
    close(agentfd);
}


static int scan_work(void *arg, int out_fd)
{
    const struct efs_service *svc = arg;
    /* A rescan must not compete with Tomcat: lowest CPU and idle I/O priority
     * (the latter is ignored by NFS, where the round trips are the cost). */
    (void)setpriority(PRIO_PROCESS, 0, 10);
    (void)syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, 3 << 13 /* IOPRIO_CLASS_IDLE */);
    struct scan_report *rep = calloc(1, sizeof(*rep));
    if (!rep)
        return 1;
    rep->magic = EFS_SCAN_MAGIC;
    /* The root is shared by every task only in managed mode; a first-scan-
     * only configuration has no interval to share within. */
    if (strcmp(svc->state->efs.mode, "managed") == 0 && svc->cfg->scan_interval_s > 0)
        measure_shared(svc, rep);
    else
        measure_into(svc, rep);
    int ok = worker_write_all(out_fd, rep, sizeof(*rep)) == 0;
    free(rep);
    return ok ? 0 : 1;
}

static void scan_tick(struct loop *loop, void *ctx);

static void schedule_rescan(struct efs_service *svc)
{
    if (svc->cfg->scan_interval_s == 0)
        return;
    /* +-10% so that tasks started together do not scan EFS together: every
     * agent is PID 1 and they start together, only randomness spreads them. */
    uint64_t delay = util_jitter_ms((uint64_t)svc->cfg->scan_interval_s * 1000u, util_random64());
    if (loop_timer_add(svc->loop, delay, 0, scan_tick, svc) < 0)
        log_error("cannot schedule the next storage scan");
}

static void scan_done(struct loop *loop, const struct worker_result *res, void *ctx)
{
    struct efs_service *svc = ctx;
    (void)loop;
    svc->scanning = false;
    struct efs_state *st = &svc->state->efs;
    if (res->len != sizeof(struct scan_report) ||
        ((const struct scan_report *)(const void *)res->data)->magic != EFS_SCAN_MAGIC) {
        log_warn("storage scan did not finish: figures are from the previous scan",
                 LF_BOOL("timed_out", res->timed_out), LF_INT("signal", res->signal),
                 LF_INT("timeout_s", svc->cfg->scan_timeout_s));
        schedule_rescan(svc);
        return;
    }
    struct scan_report *rep = malloc(sizeof(*rep));
    if (!rep) {
        schedule_rescan(svc);
        return;
    }
    memcpy(rep, res->data, sizeof(*rep));
    st->total_bytes = rep->st.total_bytes;
    st->files = rep->st.files;
    st->budget_bytes = rep->st.budget_bytes;
    st->scan_seconds = rep->st.scan_seconds;
    st->nfolders = rep->st.nfolders;
    memcpy(st->folders, rep->st.folders, sizeof(st->folders));
    st->scanned = true;

    enum efs_status budget = efs_budget_status(st->total_bytes, st->budget_bytes,
                                               svc->cfg->warn_percent);
    bool keeps_status = st->status == EFS_STATUS_FAILED;
    if (!keeps_status && st->status != budget) {
        st->status = budget;
        st->since_ms = wall_now_ms();
        if (budget == EFS_STATUS_OK)
            st->reason[0] = '\0';
    }
    /* Every scan, not only a change of state: the reason carries the figures. */
    if (!keeps_status && budget != EFS_STATUS_OK)
        efs_fmt(st->reason, sizeof(st->reason), "storage %s budget: %llu of %llu bytes",
                budget == EFS_STATUS_OVER ? "over" : "near",
                (unsigned long long)st->total_bytes, (unsigned long long)st->budget_bytes);
    for (int i = 0; i < st->nfolders; i++)
        log_debug("storage folder usage", LF_STR("folder", st->folders[i].name),
                  LF_INT("bytes", st->folders[i].bytes), LF_INT("files", st->folders[i].files));
    if (rep->share_error[0])
        log_warn("storage scan record not shared", LF_STR("error", rep->share_error));
    const struct log_field fields[] = {
        LF_STR("state", efs_status_name(budget)),
        LF_STR("scan", rep->shared ? "shared" : "walked"),
        LF_DOUBLE("scan_age_s", rep->shared ? rep->shared_age_s : 0.0),
        LF_INT("total_bytes", st->total_bytes),
        LF_INT("budget_bytes", st->budget_bytes),
        LF_INT("files", st->files),
        LF_DOUBLE("scan_seconds", st->scan_seconds),
        LF_INT("errors", rep->err.count),
        LF_STR("first_error", rep->err.msg),
        { 0 },
    };
    enum log_level level = budget == EFS_STATUS_OK ? LOG_INFO : LOG_WARN;
    log_emit(level, budget == EFS_STATUS_OVER   ? "storage over budget"
                    : budget == EFS_STATUS_WARN ? "storage near budget"
                                                  : "storage usage",
             fields);
    if (rep->err.count) {
        log_warn("storage scan could not read every entry", LF_INT("errors", rep->err.count),
                 LF_STR("first_error", rep->err.msg));
        /* The figures are short of what could not be read: say so where the
         * state is reported, unless a failure or the budget already speaks. */
        if (!keeps_status && budget == EFS_STATUS_OK)
            efs_fmt(st->reason, sizeof(st->reason), "figures incomplete: %llu unreadable "
                    "entr%s, first %s", (unsigned long long)rep->err.count,
                    rep->err.count == 1 ? "y" : "ies", rep->err.msg);
    } else if (!keeps_status && budget == EFS_STATUS_OK) {
        st->reason[0] = '\0';
    }
    free(rep);
    state_changed(svc->state);
    schedule_rescan(svc);
}

static void scan_tick(struct loop *loop, void *ctx)
{
    struct efs_service *svc = ctx;
    if (svc->scanning)
        return;
    if (worker_start(loop, "efs-scan", scan_work, svc, (int)(svc->cfg->scan_timeout_s * 1000u),
                     scan_done, svc) > 0) {
        svc->scanning = true;
    } else {
        log_error("cannot start the storage scan");
        schedule_rescan(svc);
    }
}

int efs_attach(struct efs_service *svc, struct loop *loop)
{
    const struct efs_config *cfg = svc->cfg;
    svc->loop = loop;
    svc->writer = util_random64();
    int rc = 0;
    if (housekeeping_attach(&svc->housekeeping, loop, &cfg->housekeeping, svc->run_as) < 0) {
        log_error("cannot schedule log housekeeping");
        rc = -1;
    }
    if (cfg->mode == EFS_MODE_OFF || svc->scan.nscan == 0)
        return rc;
    if (loop_timer_add(loop, EFS_FIRST_SCAN_DELAY_MS, 0, scan_tick, svc) < 0) {
        log_error("cannot schedule the storage scan");
        rc = -1;
    }
    return rc;
}

/* ---- pi-agent du ------------------------------------------------------------ */

int efs_du_command(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: pi-agent du PATH...  (apparent size, like du -s -x "
                        "--apparent-size -b -c)\n");
        return 2;
    }
    struct efs_scan *scan = efs_scan_new();
    if (!scan) {
        fprintf(stderr, "pi-agent du: out of memory\n");
        return 1;
    }
    uint64_t total = 0, files = 0, errors = 0;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        struct efs_scan_totals t;
        if (efs_scan_tree(scan, argv[i], &t) < 0)
            rc = 1;
        if (t.err.count) {
            fprintf(stderr, "pi-agent du: %s (%llu unreadable entr%s)\n", t.err.msg,
                    (unsigned long long)t.err.count, t.err.count == 1 ? "y" : "ies");
            rc = 1;
        }
        printf("%llu\t%s\n", (unsigned long long)t.bytes, argv[i]);
        total += t.bytes;
        files += t.files;
        errors += t.err.count;
    }
    printf("%llu\ttotal\n", (unsigned long long)total);
    printf("%llu\tfiles\n", (unsigned long long)files);
    efs_scan_free(scan);
    return rc;
}
