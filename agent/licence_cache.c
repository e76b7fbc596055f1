/* licence_cache: see licence_cache.h. */
#include "licence_cache.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "efs_seed.h"
#include "fsafe.h"
#include "licence_token.h"
#include "log.h"
#include "util.h"

#define CACHE_FILE_NAME "licence"

static int cache_root_open(const char *efs_root)
{
    int fd = fsafe_open_dir_trusted(efs_root, false);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode))) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* A temporary of the cache older than this was left by a writer that was
 * killed: the write itself takes milliseconds. */
#define CACHE_TMP_STALE_S 3600

/* Removes temporaries that killed writers (of any task) left in the cache
 * folder: each holds a copy of a licence. Only names of our own pattern,
 * only regular files, only old ones. */
static void cache_remove_stale_temps(int dirfd, const char *dir)
{
    static const char prefix[] = "." CACHE_FILE_NAME ".tmp.";
    int dfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0)
        return;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return;
    }
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, sizeof(prefix) - 1) != 0)
            continue;
        struct stat st;
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            now - st.st_mtime < CACHE_TMP_STALE_S)
            continue;
        if (unlinkat(dfd, e->d_name, 0) != 0 && errno != ENOENT)
            log_warn("cannot remove a stale temporary of the licence cache",
                     LF_STR("path", dir), LF_STR("name", e->d_name),
                     LF_STR("error", strerror(errno)));
    }
    closedir(d); /* closes dfd */
}

void licence_cache_store(const char *efs_root, const char *token, size_t len)
{
    int rootfd = cache_root_open(efs_root);
    if (rootfd < 0) {
        log_debug("licence cache skipped: the EFS root is not a directory",
                  LF_STR("efs_root", efs_root));
        return;
    }
    char dir[PATH_MAX + 16], msg[700], moved[400];
    snprintf(dir, sizeof(dir), "%s/%s", efs_root, EFS_AGENT_DIR);
    int dfd = efs_agent_dir_open(rootfd, efs_root, moved, sizeof(moved), msg, sizeof(msg));
    close(rootfd);
    if (dfd < 0) {
        log_warn("cannot use the licence cache folder", LF_STR("path", dir),
                 LF_STR("error", msg));
        return;
    }
    if (msg[0])
        log_warn("the licence cache folder is not root's", LF_STR("path", dir),
                 LF_STR("why", msg));
    if (moved[0])
        log_warn("the licence cache folder was not the agent's own (root's, mode 0700, not a "
                 "link): moved aside, nothing in it was used",
                 LF_STR("path", dir), LF_STR("moved_to", moved));
    cache_remove_stale_temps(dfd, dir);
    const char *step = NULL;
    if (fsafe_write_replace(dfd, CACHE_FILE_NAME, token, len, 0600, (uid_t)-1, (gid_t)-1,
                            &step) != 0) {
        log_warn("cannot cache the licence on EFS", LF_STR("path", dir),
                 LF_STR("step", step ? step : "?"), LF_STR("error", strerror(errno)));
        close(dfd);
        return;
    }
    close(dfd);
    log_info("licence cached on EFS", LF_STR("path", dir));
}

char *licence_cache_load(const char *efs_root, size_t *len)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/%s/%s", efs_root, EFS_AGENT_DIR, CACHE_FILE_NAME);
    int rootfd = cache_root_open(efs_root);
    if (rootfd < 0)
        return NULL;
    uid_t dir_uid; /* the agent's, or the uid its files get (checked by efs_agent_dir_read) */
    int dfd = efs_agent_dir_read(rootfd, &dir_uid);
    int saved = errno;
    close(rootfd);
    if (dfd < 0) {
        if (saved != ENOENT)
            log_warn("the cached licence is not read: its folder is not the agent's own (root's, "
                     "mode 0700, not a link)", LF_STR("path", path));
        return NULL;
    }
    int fd = openat(dfd, CACHE_FILE_NAME, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    saved = errno;
    close(dfd);
    if (fd < 0) {
        if (saved != ENOENT)
            log_warn("cannot read the cached licence", LF_STR("path", path),
                     LF_STR("error", strerror(saved)));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
        !(st.st_uid == geteuid() || st.st_uid == dir_uid)) {
        log_warn("the cached licence is not read: not a file of the agent's with one link",
                 LF_STR("path", path));
        close(fd);
        return NULL;
    }
    char *data = malloc(LICENCE_MAX_LEN + 1);
    long n = data ? util_read_fd(fd, data, LICENCE_MAX_LEN + 1) : -1;
    saved = data ? errno : ENOMEM;
    close(fd);
    if (n < 0) {
        if (data) {
            explicit_bzero(data, LICENCE_MAX_LEN + 1); /* part of a licence */
            free(data);
        }
        log_warn("cannot read the cached licence", LF_STR("path", path),
                 LF_STR("error", strerror(saved)));
        return NULL;
    }
    *len = (size_t)n;
    return data;
}
