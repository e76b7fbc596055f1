/* exit_history: see exit_history.h. */
#include "exit_history.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "efs_layout.h"
#include "efs_seed.h"
#include "fsafe.h"
#include "log.h"
#include "util.h"

#define RUNS_DIR "runs"
#define TMP_PREFIX ".tmp-"
#define LIVE_SUFFIX ".live"
#define TMP_MAX_AGE_S 3600

/* Opens name under parent as a folder that only the agent's user may
 * change: no link, owned by us, not writable by group or others. */
static int open_own_dir(int parent, const char *name, bool create, const char *shown, char *err,
                        size_t cap)
{
    if (create && mkdirat(parent, name, 0755) != 0 && errno != EEXIST) {
        snprintf(err, cap, "%s: cannot create: %s", shown, strerror(errno));
        return -1;
    }
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, cap, "%s: cannot open%s: %s", shown,
                 errno == ELOOP || errno == ENOTDIR ? " (a link or not a folder: refused)" : "",
                 strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, cap, "%s: cannot stat: %s", shown, strerror(errno));
        close(fd);
        return -1;
    }
    if (!fsafe_owner_ok(parent, st.st_uid) || (st.st_mode & 022)) {
        snprintf(err, cap, "%s is owned by uid %u with mode %03o: it must belong to uid %u and be "
                 "writable by it alone; records are not written there", shown,
                 (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777), (unsigned)geteuid());
        close(fd);
        return -1;
    }
    return fd;
}

int exit_history_open(struct exit_history *h, const char *efs_root, bool efs_enabled,
                      const char *run_dir, bool create, char *err, size_t cap)
{
    char shown[600];
    memset(h, 0, sizeof *h);
    h->dirfd = -1;
    h->livefd = -1;
    int mid = -1;

    if (efs_enabled && efs_is_mount_point(efs_root, NULL, 0) == 1) {
        h->on_efs = true;
        int base = fsafe_open_dir_trusted(efs_root, false);
        if (base < 0) {
            snprintf(err, cap, "PI_EFS_ROOT=%s: cannot open: %s", efs_root, strerror(errno));
            return -1;
        }
        snprintf(shown, sizeof shown, "%s/%s", efs_root, EFS_AGENT_DIR);
        if (create) {
            /* The agent's own folder, as the storage start keeps it: what
             * else stands there is moved aside (and said so). */
            char moved[400], msg[700];
            mid = efs_agent_dir_open(base, efs_root, moved, sizeof moved, msg, sizeof msg);
            if (mid < 0)
                snprintf(err, cap, "%s", msg);
            else if (moved[0])
                log_warn("the agent's folder on EFS was not its own: moved aside",
                         LF_STR("path", shown), LF_STR("moved_to", moved));
            else if (msg[0])
                log_warn("the agent's folder on EFS is not root's", LF_STR("path", shown),
                         LF_STR("why", msg));
        } else {
            mid = open_own_dir(base, EFS_AGENT_DIR, false, shown, err, cap);
        }
        close(base);
        if (mid < 0)
            return -1;
        snprintf(h->dir, sizeof h->dir, "%s/%s/%s", efs_root, EFS_AGENT_DIR, RUNS_DIR);
    } else {
        if (create && mkdir(run_dir, 0755) != 0 && errno != EEXIST) {
            snprintf(err, cap, "PI_AGENT_RUN_DIR=%s: cannot create: %s", run_dir, strerror(errno));
            return -1;
        }
        mid = open(run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (mid < 0) {
            snprintf(err, cap, "PI_AGENT_RUN_DIR=%s: cannot open: %s", run_dir, strerror(errno));
            return -1;
        }
        snprintf(h->dir, sizeof h->dir, "%s/%s", run_dir, RUNS_DIR);
    }
    h->dirfd = open_own_dir(mid, RUNS_DIR, create, h->dir, err, cap);
    close(mid);
    return h->dirfd < 0 ? -1 : 0;
}

void exit_history_close(struct exit_history *h)
{
    if (h->livefd >= 0)
        close(h->livefd);
    if (h->dirfd >= 0)
        close(h->dirfd);
    h->livefd = h->dirfd = -1;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int exit_history_write(struct exit_history *h, const struct exit_record *rec, char *err,
                       size_t cap)
{
    char text[EXIT_RECORD_MAX];
    char tmp[64];
    int n = exit_record_format(rec, text, sizeof text);
    if (h->dirfd < 0 || h->name[0] == '\0') {
        snprintf(err, cap, "no records folder");
        return -1;
    }
    if (n < 0) {
        snprintf(err, cap, "the record does not fit %d bytes", EXIT_RECORD_MAX);
        return -1;
    }
    int fd = -1;
    for (int attempt = 0; attempt < 8 && fd < 0; attempt++) {
        snprintf(tmp, sizeof tmp, TMP_PREFIX "%016llx", (unsigned long long)util_random64());
        fd = openat(h->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        snprintf(err, cap, "%s: cannot create a temporary: %s", h->dir, strerror(errno));
        return -1;
    }
    const char *step = NULL;
    if (fchmod(fd, 0644) != 0)
        step = "chmod";
    else if (write_all(fd, text, (size_t)n) != 0)
        step = "write";
    else if (fsync(fd) != 0)
        step = "fsync";
    else if (renameat(h->dirfd, tmp, h->dirfd, h->name) != 0)
        step = "rename";
    int saved = errno;
    close(fd);
    if (step) {
        unlinkat(h->dirfd, tmp, 0);
        snprintf(err, cap, "%s/%s: cannot write (%s): %s", h->dir, h->name, step, strerror(saved));
        return -1;
    }
    (void)fsync(h->dirfd); /* best effort: the rename is what matters */
    return 0;
}

int exit_history_begin(struct exit_history *h, const struct exit_record *rec, char *err,
                       size_t cap)
{
    char live[80];
    if (h->dirfd < 0) {
        snprintf(err, cap, "no records folder");
        return -1;
    }
    snprintf(h->name, sizeof h->name, "%013llu-%016llx.json", (unsigned long long)rec->start_ms,
             (unsigned long long)util_random64());
    /* The lock first: a reader never sees this run's record unheld while
     * the run lives. */
    snprintf(live, sizeof live, "%s" LIVE_SUFFIX, h->name);
    int fd = openat(h->dirfd, live, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    if (fd < 0 || fcntl(fd, F_SETLK, &fl) != 0) {
        snprintf(err, cap, "%s/%s: cannot %s: %s", h->dir, live, fd < 0 ? "create" : "lock",
                 strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlinkat(h->dirfd, live, 0);
        }
        h->name[0] = '\0';
        return -1;
    }
    h->livefd = fd;
    if (exit_history_write(h, rec, err, cap) != 0) {
        exit_history_end(h);
        h->name[0] = '\0';
        return -1;
    }
    return 0;
}

void exit_history_end(struct exit_history *h)
{
    char live[80];
    if (h->livefd < 0)
        return;
    snprintf(live, sizeof live, "%s" LIVE_SUFFIX, h->name);
    (void)unlinkat(h->dirfd, live, 0);
    close(h->livefd);
    h->livefd = -1;
}

/* ---- reading -------------------------------------------------------------- */

long long exit_entry_ran_s(const struct exit_entry *e)
{
    uint64_t end = e->rec.end_ms ? e->rec.end_ms : e->last_ms;
    return end > e->rec.start_ms ? (long long)((end - e->rec.start_ms) / 1000u) : 0;
}

static bool is_record_name(const char *n)
{
    size_t len = strlen(n);
    if (len != 13 + 1 + 16 + 5 || n[13] != '-' || strcmp(n + len - 5, ".json") != 0)
        return false;
    for (size_t i = 0; i < len - 5; i++)
        if (i != 13 && !((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')))
            return false;
    return true;
}

static int cmp_names_desc(const void *a, const void *b)
{
    return strcmp(*(char *const *)b, *(char *const *)a);
}

/* True while the agent of record name holds its NAME.live. */
static bool live_held(int dirfd, const char *name)
{
    char live[80];
    snprintf(live, sizeof live, "%s" LIVE_SUFFIX, name);
    int fd = openat(dirfd, live, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return false; /* gone: the run ended, or its agent died before it could say so */
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    bool held = fcntl(fd, F_GETLK, &fl) != 0 || fl.l_type != F_UNLCK;
    close(fd);
    return held;
}

static void unlink_record(int dirfd, const char *name)
{
    char live[80];
    snprintf(live, sizeof live, "%s" LIVE_SUFFIX, name);
    (void)unlinkat(dirfd, live, 0);
    (void)unlinkat(dirfd, name, 0);
}

/* Reads one record; its NAME.live says whether its agent still runs. */
static int read_entry(int dirfd, const char *name, struct exit_entry *e)
{
    char buf[EXIT_RECORD_MAX + 1];
    memset(e, 0, sizeof *e);
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > EXIT_RECORD_MAX) {
        close(fd);
        return -1;
    }
    ssize_t n;
    do
        n = pread(fd, buf, sizeof buf - 1, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0 || exit_record_parse(buf, (size_t)n, &e->rec) != 0) {
        close(fd);
        return -1;
    }
    e->last_ms = (uint64_t)st.st_mtim.tv_sec * 1000u + (uint64_t)st.st_mtim.tv_nsec / 1000000u;
    close(fd);
    if (e->rec.end_ms == 0) {
        if (!live_held(dirfd, name)) {
            e->killed = true;
            snprintf(e->rec.reason, sizeof e->rec.reason, "%s", EXIT_REASON_KILLED);
            e->rec.exit_status = 137;
        } else {
            e->running = true;
        }
        uint64_t known = e->rec.stop_ms > e->rec.ready_ms ? e->rec.stop_ms : e->rec.ready_ms;
        if (known > e->last_ms)
            e->last_ms = known;
    } else {
        e->last_ms = e->rec.end_ms;
    }
    return 0;
}

int exit_history_read(int dirfd, const char *own_name, const char *family, uint64_t now_ms,
                      bool prune, struct exit_summary *out)
{
    memset(out, 0, sizeof *out);
    int fd = dup(dirfd);
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return -1;
    }
    rewinddir(d);
    size_t n = 0, cap = 0;
    char **names = NULL;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (prune && strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0) {
            struct stat st;
            /* A temporary left by a killed writer; a live one is seconds old. */
            if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                (uint64_t)st.st_mtim.tv_sec * 1000u + TMP_MAX_AGE_S * 1000u < now_ms)
                (void)unlinkat(dirfd, de->d_name, 0);
            continue;
        }
        if (!is_record_name(de->d_name) || (own_name && strcmp(de->d_name, own_name) == 0))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 128;
            char **grown = realloc(names, ncap * sizeof *names);
            if (grown == NULL)
                break;
            names = grown;
            cap = ncap;
        }
        if ((names[n] = strdup(de->d_name)) == NULL)
            break;
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_names_desc); /* newest first: names start with the time */

    /* The reader that prunes writes (or has written) its own record, which
     * is not among names: it is the hundredth. */
    size_t keep = prune ? EXIT_HISTORY_KEEP - 1 : (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        struct exit_entry e;
        if (i >= keep) {
            if (prune && !live_held(dirfd, names[i])) { /* a long run keeps its record */
                unlink_record(dirfd, names[i]);
                out->pruned++;
            }
            continue;
        }
        if (read_entry(dirfd, names[i], &e) != 0)
            continue;
        out->records++;
        if (out->nnewest < EXIT_HISTORY_NEWEST)
            out->newest[out->nnewest++] = e;
        if (!e.running && exit_reason_abnormal(e.rec.reason, e.rec.exit_status) &&
            e.last_ms + EXIT_HISTORY_RECENT_MS >= now_ms)
            out->recent_abnormal++;
        if (!e.running && !out->has_previous && strcmp(e.rec.family, family ? family : "") == 0) {
            out->has_previous = true;
            out->previous = e;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return 0;
}

/* ---- the OOM killer's counter --------------------------------------------- */

int exit_read_oom_kills(uint64_t *out)
{
    char cg[4096], path[4400], buf[4096];
    const char *v2 = NULL, *v1 = NULL;

    /* "0::/path" (v2) or "N:...memory...:/path" (v1): the agent's cgroup,
     * which is the container's. */
    if (util_read_at(AT_FDCWD, "/proc/self/cgroup", cg, sizeof cg) >= 0) {
        for (char *line = strtok(cg, "\n"); line; line = strtok(NULL, "\n")) {
            char *c1 = strchr(line, ':');
            char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            if (!c2)
                continue;
            if (strncmp(line, "0::", 3) == 0)
                v2 = c2 + 1;
            else if (strstr(c1, "memory") && strstr(c1, "memory") < c2)
                v1 = c2 + 1;
        }
    }
    const char *tries[4][2] = {
        { "/sys/fs/cgroup", v2 }, { "/sys/fs/cgroup", "" },
        { "/sys/fs/cgroup/memory", v1 }, { "/sys/fs/cgroup/memory", "" },
    };
    for (int i = 0; i < 4; i++) {
        if (tries[i][1] == NULL)
            continue;
        const char *file = i < 2 ? "memory.events" : "memory.oom_control";
        snprintf(path, sizeof path, "%s%s%s/%s", tries[i][0],
                 tries[i][1][0] && tries[i][1][0] != '/' ? "/" : "",
                 strcmp(tries[i][1], "/") == 0 ? "" : tries[i][1], file);
        long n = util_read_at(AT_FDCWD, path, buf, sizeof buf);
        if (n >= 0 && exit_parse_oom_kill(buf, (size_t)n, out) == 0)
            return 0;
    }
    return -1;
}
