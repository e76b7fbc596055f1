/* fsafe: see fsafe.h. */
#include "fsafe.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#define FSAFE_RESOLVE_NO_MAGICLINKS 0x02
#define FSAFE_RESOLVE_NO_SYMLINKS 0x04
#define FSAFE_RESOLVE_BENEATH 0x08
#define FSAFE_MAX_LINKS 40

/* struct open_how of linux/openat2.h, spelled out: musl's headers may lack it. */
struct fsafe_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};

#ifdef PI_UNIT_TEST
bool fsafe_test_without_openat2;
#endif

static int walk_openat(int dirfd, const char *rel, int flags, mode_t mode)
{
    char buf[PATH_MAX];
    size_t len = strlen(rel);
    if (len == 0 || len >= sizeof(buf)) {
        errno = len ? ENAMETOOLONG : ENOENT;
        return -1;
    }
    memcpy(buf, rel, len + 1);
    int cur = dirfd;
    char *p = buf;
    for (;;) {
        while (*p == '/')
            p++;
        char *slash = strchr(p, '/');
        while (slash && slash[1] == '/')
            slash++;
        bool last = slash == NULL || slash[1] == '\0';
        if (slash)
            *slash = '\0';
        int fd;
        if (strcmp(p, "..") == 0) {
            errno = EXDEV;
            fd = -1;
        } else if (last) {
            fd = openat(cur, p, flags | O_NOFOLLOW | O_CLOEXEC, mode);
        } else {
            fd = openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        int saved = errno;
        if (cur != dirfd)
            close(cur);
        errno = saved;
        if (fd < 0 || last)
            return fd;
        cur = fd;
        p = slash + 1;
    }
}

int fsafe_openat(int dirfd, const char *rel, int flags, mode_t mode)
{
    if (rel[0] == '/') {
        errno = EXDEV;
        return -1;
    }
    static int have_openat2 = -1; /* unknown until the first try */
#ifdef PI_UNIT_TEST
    if (fsafe_test_without_openat2)
        return walk_openat(dirfd, rel, flags, mode);
#endif
    if (have_openat2 != 0) {
        struct fsafe_open_how how = {
            .flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
            .mode = (flags & (O_CREAT | O_TMPFILE)) ? (uint64_t)mode : 0,
            .resolve = FSAFE_RESOLVE_BENEATH | FSAFE_RESOLVE_NO_SYMLINKS |
                       FSAFE_RESOLVE_NO_MAGICLINKS,
        };
        long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
        if (fd >= 0) {
            have_openat2 = 1;
            return (int)fd;
        }
        if (errno != ENOSYS && errno != EPERM) /* EPERM: a seccomp filter refusing it */
            return -1;
        have_openat2 = 0;
    }
    return walk_openat(dirfd, rel, flags, mode);
}

/* May a symlink found in the directory open on dirfd be followed? Only when
 * nobody but root could have put it there. */
static bool link_trusted(int dirfd, const struct stat *lst)
{
    struct stat dst;
    return lst->st_uid == 0 && fstat(dirfd, &dst) == 0 && dst.st_uid == 0 &&
           (dst.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

int fsafe_open_dir_trusted(const char *abs, bool create)
{
    if (abs[0] != '/') {
        errno = EINVAL;
        return -1;
    }
    /* The path still to walk; a followed symlink's target is put in front. */
    char *todo = malloc(PATH_MAX * 2);
    if (!todo)
        return -1;
    snprintf(todo, PATH_MAX * 2, "%s", abs);
    int cur = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int links = 0;
    char *p = todo;
    while (cur >= 0) {
        while (*p == '/')
            p++;
        if (*p == '\0')
            break;
        char name[NAME_MAX + 1];
        size_t n = strcspn(p, "/");
        if (n > NAME_MAX) {
            close(cur);
            cur = -1;
            errno = ENAMETOOLONG;
            break;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        p += n;
        if (strcmp(name, ".") == 0)
            continue;
        struct stat st;
        if (fstatat(cur, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno != ENOENT || !create || strcmp(name, "..") == 0 ||
                (mkdirat(cur, name, 0755) < 0 && errno != EEXIST) ||
                fstatat(cur, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                int saved = errno;
                close(cur);
                cur = -1;
                errno = saved;
                break;
            }
        }
        if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t tl = -1;
            if (!link_trusted(cur, &st) || ++links > FSAFE_MAX_LINKS ||
                (tl = readlinkat(cur, name, target, sizeof(target) - 1)) <= 0) {
                close(cur);
                cur = -1;
                errno = ELOOP;
                break;
            }
            target[tl] = '\0';
            size_t rest = strlen(p);
            if ((size_t)tl + rest + 2 > PATH_MAX * 2) {
                close(cur);
                cur = -1;
                errno = ENAMETOOLONG;
                break;
            }
            char *joined = malloc(PATH_MAX * 2);
            if (!joined) {
                close(cur);
                cur = -1;
                break;
            }
            snprintf(joined, PATH_MAX * 2, "%s/%s", target, p);
            free(todo);
            todo = p = joined;
            if (target[0] == '/') {
                close(cur);
                cur = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            }
            continue;
        }
        int next = openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int saved = errno;
        close(cur);
        errno = saved;
        cur = next;
    }
    int saved = errno;
    free(todo);
    errno = saved;
    return cur;
}

int fsafe_random_hex(char *out, size_t cap, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char rnd[32];
    if (n > sizeof(rnd) || cap < 2 * n + 1) {
        errno = EINVAL;
        return -1;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(rnd + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[rnd[i] >> 4];
        out[2 * i + 1] = hex[rnd[i] & 15];
    }
    out[2 * n] = '\0';
    return 0;
}

int fsafe_tmpfile(int dirfd, const char *prefix, mode_t mode, char *name, size_t cap)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        char rnd[17];
        if (fsafe_random_hex(rnd, sizeof(rnd), 8) < 0)
            return -1;
        int n = snprintf(name, cap, "%s%s", prefix, rnd);
        if (n < 0 || (size_t)n >= cap) {
            errno = ENAMETOOLONG;
            return -1;
        }
        int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    errno = EEXIST;
    return -1;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int fsafe_write_replace(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
                        uid_t uid, gid_t gid, const char **step)
{
    char tmp[NAME_MAX + 1], prefix[NAME_MAX + 1];
    const char *failed = NULL;
    int n = snprintf(prefix, sizeof(prefix), ".%.200s.tmp.", name);
    if (n < 0 || (size_t)n >= sizeof(prefix)) {
        errno = ENAMETOOLONG;
        failed = "create";
        goto out;
    }
    int fd = fsafe_tmpfile(dirfd, prefix, mode & 0777, tmp, sizeof(tmp));
    if (fd < 0) {
        failed = "create";
        goto out;
    }
    if (fchmod(fd, mode & 0777) != 0)
        failed = "chmod";
    else if (uid != (uid_t)-1 && fchown(fd, uid, gid) != 0)
        failed = "chown";
    else if (write_all(fd, data, len) != 0)
        failed = "write";
    else if (fsync(fd) != 0)
        failed = "fsync";
    int saved = errno;
    if (close(fd) != 0 && !failed) {
        failed = "close";
        saved = errno;
    }
    if (!failed && renameat(dirfd, tmp, dirfd, name) != 0) {
        failed = "rename";
        saved = errno;
    }
    if (failed) {
        (void)unlinkat(dirfd, tmp, 0);
        errno = saved;
        goto out;
    }
    (void)fsync(dirfd); /* best effort: the rename is what matters */
out:
    if (step)
        *step = failed;
    return failed ? -1 : 0;
}

int fsafe_mkdir_open(int dirfd, const char *name, mode_t mode, bool *created)
{
    *created = false;
    if (mkdirat(dirfd, name, mode) == 0)
        *created = true;
    else if (errno != EEXIST)
        return -1;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOTDIR) {
        struct stat st;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
            errno = ELOOP;
    }
    return fd;
}

int fsafe_chown_dir(int fd, uid_t uid, gid_t gid)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return fchown(fd, uid, gid);
}

int fsafe_chown_symlink(int dirfd, const char *name, uid_t uid, gid_t gid)
{
    int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) == 0) {
        if (S_ISLNK(st.st_mode))
            rc = fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
        else
            errno = EPERM;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int fsafe_move_aside(int dirfd, const char *name, const char *label, char *moved, size_t cap)
{
    char to[NAME_MAX + 1], rnd[17];
    for (int attempt = 0; attempt < 4; attempt++) {
        if (fsafe_random_hex(rnd, sizeof(rnd), 8) < 0)
            return -1;
        int n = snprintf(to, sizeof(to), "%.200s.%.20s-%s", name, label, rnd);
        if (n < 0 || (size_t)n >= sizeof(to)) {
            errno = ENAMETOOLONG;
            return -1;
        }
        long rc = syscall(SYS_renameat2, dirfd, name, dirfd, to, RENAME_NOREPLACE);
        if (rc != 0 && (errno == EINVAL || errno == ENOSYS)) {
            /* NFS has no RENAME_NOREPLACE: 64 random bits make the name new. */
            struct stat st;
            if (fstatat(dirfd, to, &st, AT_SYMLINK_NOFOLLOW) == 0)
                continue;
            rc = renameat(dirfd, name, dirfd, to);
        }
        if (rc == 0) {
            if (moved)
                snprintf(moved, cap, "%s", to);
            return 0;
        }
        if (errno != EEXIST)
            return -1;
    }
    errno = EEXIST;
    return -1;
}

void fsafe_describe(int dirfd, const char *name, char *out, size_t cap)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        snprintf(out, cap, "nothing readable (%s)", strerror(errno));
        return;
    }
    if (S_ISLNK(st.st_mode)) {
        char target[256];
        ssize_t n = readlinkat(dirfd, name, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        snprintf(out, cap, "a symlink to %s", target);
    } else if (S_ISREG(st.st_mode)) {
        if (st.st_nlink > 1)
            snprintf(out, cap, "a file with %lu links", (unsigned long)st.st_nlink);
        else
            snprintf(out, cap, "a file owned by uid %u", (unsigned)st.st_uid);
    } else if (!S_ISDIR(st.st_mode)) {
        snprintf(out, cap, "a special file");
    } else if (st.st_uid != geteuid()) {
        snprintf(out, cap, "a folder owned by uid %u", (unsigned)st.st_uid);
    } else if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(out, cap, "a folder writable by %s",
                 (st.st_mode & S_IWOTH) ? "others" : "its group");
    } else {
        snprintf(out, cap, "a folder (mode %04o)", (unsigned)(st.st_mode & 07777));
    }
}

uid_t fsafe_new_owner(int dirfd)
{
    char name[64];
    int fd = fsafe_tmpfile(dirfd, ".pi-agent-owner.", 0600, name, sizeof(name));
    if (fd < 0)
        return geteuid();
    struct stat st;
    uid_t uid = fstat(fd, &st) == 0 ? st.st_uid : geteuid();
    close(fd);
    (void)unlinkat(dirfd, name, 0);
    return uid;
}

bool fsafe_owner_ok(int dirfd, uid_t uid)
{
    return uid == geteuid() || uid == fsafe_new_owner(dirfd);
}

/* Is the directory open on fd the agent's own, writable by nobody else?
 * Owned by the agent's uid, or by the uid the file system gives the agent's
 * new entries (parentfd: where to ask). */
static bool private_ok(int parentfd, int fd, bool *mapped)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode) || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return false;
    if (st.st_uid == geteuid())
        return true;
    if (st.st_uid != fsafe_new_owner(parentfd))
        return false;
    *mapped = true;
    return true;
}

int fsafe_private_dir(int dirfd, const char *name, const char *display, char *moved,
                      size_t moved_cap, char *msg, size_t cap)
{
    if (moved && moved_cap)
        moved[0] = '\0';
    if (cap)
        msg[0] = '\0';
    for (int attempt = 0; attempt < 3; attempt++) {
        bool created = false, mapped = false;
        int fd = fsafe_mkdir_open(dirfd, name, 0700, &created);
        if (fd >= 0 && private_ok(dirfd, fd, &mapped)) {
            /* An earlier version made it 0755: nobody else could write it, so
             * tightening it is safe. */
            struct stat st;
            if (fstat(fd, &st) == 0 && (st.st_mode & 0777) != 0700 && fchmod(fd, 0700) != 0) {
                snprintf(msg, cap, "%s: cannot make it mode 0700: %s", display, strerror(errno));
                close(fd);
                return -1;
            }
            if (mapped)
                snprintf(msg, cap, "%s belongs to uid %u, not root: the file system gives the "
                         "agent's new files to that uid (an EFS access point's POSIX user, or "
                         "root squashing), so anyone with that uid can change it; an access "
                         "point without a POSIX user (or with uid 0) keeps it root's", display,
                         (unsigned)st.st_uid);
            return fd;
        }
        int saved = errno;
        if (fd >= 0)
            close(fd);
        else if (saved != ELOOP && saved != ENOTDIR && saved != EEXIST) {
            snprintf(msg, cap, "%s: cannot open: %s", display, strerror(saved));
            errno = saved;
            return -1;
        }
        char what[320];
        fsafe_describe(dirfd, name, what, sizeof(what));
        char to[NAME_MAX + 1];
        if (fsafe_move_aside(dirfd, name, "refused", to, sizeof(to)) != 0) {
            saved = errno;
            snprintf(msg, cap, "%s is %s, not the agent's own folder (root's, mode 0700); it "
                     "cannot be moved aside: %s", display, what, strerror(saved));
            errno = saved;
            return -1;
        }
        if (moved && moved_cap)
            snprintf(moved, moved_cap, "%s (was %s)", to, what);
    }
    snprintf(msg, cap, "%s keeps being replaced by something else", display);
    errno = EAGAIN;
    return -1;
}
