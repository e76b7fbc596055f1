/* hooks_list: see hooks_list.h. */
#include "hooks_list.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsafe.h"
#include "log.h"

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void hooks_list_free(struct hook_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->names[i]);
    free(list->names);
    list->names = NULL;
    list->count = 0;
}

static int list_append(struct hook_list *list, size_t *cap, const char *name)
{
    if (list->count == *cap) {
        size_t grown_cap = *cap ? *cap * 2 : 8;
        char **grown = realloc(list->names, grown_cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        list->names = grown;
        *cap = grown_cap;
    }
    list->names[list->count] = strdup(name);
    if (list->names[list->count] == NULL)
        return -1;
    list->count++;
    return 0;
}

/* Root (or the agent's own user, when it is not root) may own a hook. */
static bool owner_trusted(uid_t uid)
{
    return uid == 0 || uid == geteuid();
}

static const char *hooks_unsafe_reason(const struct stat *st)
{
    static char buf[96];
    if (!owner_trusted(st->st_uid))
        snprintf(buf, sizeof buf, "owned by uid %u", (unsigned)st->st_uid);
    else if (st->st_mode & S_IWOTH)
        snprintf(buf, sizeof buf, "writable by others (mode %04o)",
                 (unsigned)(st->st_mode & 07777));
    else if (st->st_mode & S_IWGRP)
        snprintf(buf, sizeof buf, "writable by its group (mode %04o)",
                 (unsigned)(st->st_mode & 07777));
    else
        snprintf(buf, sizeof buf, "safe");
    return buf;
}

/* Opens dir when it and its parent are safe to run from. Returns the
 * descriptor; -1 with errno ENOENT (missing: an empty list), EPERM with
 * out->refused set, or another errno. */
static int open_trusted_folder(const char *dir, struct hook_list *out)
{
    int dfd;

    /* Root runs what is in there: the folder and the one above it
     * (PI_AGENT_HOOKS_DIR) must be writable by root alone, and no symlink on
     * the way may be one that someone else could have made. */
    const char *bad = NULL;
    char parent[1100];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash != NULL)
        *(slash == parent ? slash + 1 : slash) = '\0';
    dfd = fsafe_open_dir_trusted(dir, false);
    if (dfd < 0 && errno == ENOENT)
        return -1;
    struct stat dst, pst;
    int pfd = slash != NULL ? fsafe_open_dir_trusted(parent, false) : -1;
    if (dfd < 0 && errno != ELOOP) {
        if (pfd >= 0)
            close(pfd);
        return -1;
    }
    if (dfd < 0)
        bad = "a symlink that root did not make is on the way";
    else if (fstat(dfd, &dst) != 0 || (pfd >= 0 && fstat(pfd, &pst) != 0))
        bad = "cannot be checked";
    else if (!owner_trusted(dst.st_uid) || (dst.st_mode & (S_IWGRP | S_IWOTH)))
        bad = hooks_unsafe_reason(&dst);
    else if (pfd >= 0 && (!owner_trusted(pst.st_uid) || (pst.st_mode & (S_IWGRP | S_IWOTH))))
        bad = "its parent (PI_AGENT_HOOKS_DIR) is not root's or is writable by group or others";
    if (pfd >= 0)
        close(pfd);
    if (bad) {
        snprintf(out->refused, sizeof out->refused,
                 "%s refused: %s (root runs hooks: their folders and files must be root's and "
                 "writable by root alone)", dir, bad);
        if (dfd >= 0)
            close(dfd);
        errno = EPERM;
        return -1;
    }
    return dfd;
}

int hooks_list(const char *dir, struct hook_list *out)
{
    size_t cap = 0;
    int saved;
    DIR *d;

    out->names = NULL;
    out->count = 0;
    out->refused[0] = '\0';
    int dfd = open_trusted_folder(dir, out);
    if (dfd < 0)
        return errno == ENOENT ? 0 : -1;
    d = fdopendir(dfd);
    if (d == NULL) {
        saved = errno;
        close(dfd);
        errno = saved;
        return -1;
    }
    for (;;) {
        struct dirent *de;
        struct stat st;

        errno = 0;
        de = readdir(d);
        if (de == NULL) {
            if (errno != 0)
                goto fail;
            break;
        }
        const char *name = de->d_name;
        if (name[0] == '.') {
            if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0)
                log_debug("hook skipped: dotfile", LF_STR("dir", dir), LF_STR("hook", name));
            continue;
        }
        if (fstatat(dfd, name, &st, 0) != 0) {
            log_debug("hook skipped: cannot stat", LF_STR("dir", dir), LF_STR("hook", name),
                      LF_STR("error", strerror(errno)));
            continue;
        }
        if (!S_ISREG(st.st_mode)) {
            log_debug("hook skipped: not a regular file", LF_STR("dir", dir), LF_STR("hook", name));
            continue;
        }
        if ((st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) == 0) {
            log_debug("hook skipped: not executable", LF_STR("dir", dir), LF_STR("hook", name));
            continue;
        }
        if (!owner_trusted(st.st_uid) || (st.st_mode & (S_IWGRP | S_IWOTH))) {
            log_error("hook refused: root runs hooks, and this one is not root's or can be "
                      "changed by group or others", LF_STR("dir", dir), LF_STR("hook", name),
                      LF_STR("found", hooks_unsafe_reason(&st)));
            continue;
        }
        if (list_append(out, &cap, name) != 0)
            goto fail;
    }
    closedir(d);
    if (out->count > 1)
        qsort(out->names, out->count, sizeof *out->names, compare_names);
    return 0;
fail:
    saved = errno;
    closedir(d);
    hooks_list_free(out);
    errno = saved;
    return -1;
}
