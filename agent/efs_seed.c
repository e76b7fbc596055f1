/* efs_seed: see efs_seed.h. */
#include "efs_seed.h"

#include "efs_layout.h"
#include "fsafe.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SEED_MAX_DEPTH 64
#define SEED_FORMAT "pi-agent-seed-1"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

/* ---- fingerprint -------------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t entry_hash(const char *name, const char *rel, const struct stat *st)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv1a(h, name, strlen(name) + 1);
    h = fnv1a(h, rel, strlen(rel) + 1);
    uint64_t v[3] = { (uint64_t)(st->st_mode & S_IFMT),
                      S_ISDIR(st->st_mode) ? 0 : (uint64_t)st->st_size,
                      S_ISDIR(st->st_mode) ? 0 : (uint64_t)st->st_mtime };
    return fnv1a(h, v, sizeof(v));
}

static int fingerprint_dir(int fd, const char *name, char *rel, size_t rel_len, int depth,
                           uint64_t *sum)
{
    if (depth > SEED_MAX_DEPTH)
        return -1;
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0)
        return -1;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        size_t n = (size_t)snprintf(rel + rel_len, PATH_MAX - rel_len, "/%s", e->d_name);
        if (rel_len + n >= PATH_MAX)
            continue;
        *sum += entry_hash(name, rel, &st); /* a sum: readdir order does not matter */
        if (S_ISDIR(st.st_mode)) {
            int cfd = openat(fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (cfd >= 0) {
                if (fingerprint_dir(cfd, name, rel, rel_len + n, depth + 1, sum) < 0)
                    rc = -1;
                close(cfd);
            }
        }
        rel[rel_len] = '\0';
    }
    closedir(d);
    return rc;
}

int efs_seed_fingerprint(const struct efs_seed_source *src, int n, char out[17])
{
    uint64_t sum = fnv1a(0xcbf29ce484222325ull, SEED_FORMAT, sizeof(SEED_FORMAT));
    char *rel = malloc(PATH_MAX);
    if (!rel)
        return -1;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        int fd = fsafe_open_dir_trusted(src[i].src, false);
        if (fd < 0)
            continue;
        sum += fnv1a(0xcbf29ce484222325ull, src[i].name, strlen(src[i].name) + 1);
        rel[0] = '\0';
        if (fingerprint_dir(fd, src[i].name, rel, 0, 0, &sum) < 0)
            rc = -1;
        close(fd);
    }
    free(rel);
    snprintf(out, 17, "%016llx", (unsigned long long)sum);
    return rc;
}

bool efs_seed_marker_matches(const char *text, size_t len, const char *version)
{
    static const char key[] = "seed-version=";
    size_t klen = sizeof(key) - 1, vlen = strlen(version);
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        size_t l = (size_t)(eol - p);
        if (l == klen + vlen && memcmp(p, key, klen) == 0 && memcmp(p + klen, version, vlen) == 0)
            return true;
        p = eol + 1;
    }
    return false;
}

/* ---- copying -------------------------------------------------------------- */

struct seed_ctx {
    const struct run_as *run_as;
    struct efs_seed_result *res;
    char *path; /* display path of the current destination directory */
};

static void seed_error(struct seed_ctx *c, const char *name, const char *what, int err)
{
    util_first_error_add(&c->res->err, "%s/%s: %s: %s", c->path, name, what, strerror(err));
}

/* Moves tmp to name unless name exists. Returns 1 when placed, 0 when name
 * already existed (tmp is removed), -1 on error (errno). */
#ifdef PI_UNIT_TEST
/* Lets the unit tests take the NFS path on a local file system. */
bool efs_seed_test_without_renameat2;
#endif

static long rename_noreplace(int dfd, const char *tmp, const char *name)
{
#ifdef PI_UNIT_TEST
    if (efs_seed_test_without_renameat2) {
        errno = EINVAL;
        return -1;
    }
#endif
    return syscall(SYS_renameat2, dfd, tmp, dfd, name, RENAME_NOREPLACE);
}

static int place_noreplace(int dfd, const char *tmp, const char *name)
{
    if (rename_noreplace(dfd, tmp, name) == 0)
        return 1;
    if (errno == EEXIST) {
        (void)unlinkat(dfd, tmp, 0);
        return 0;
    }
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    /* NFS has no RENAME_NOREPLACE: a hard link fails on an existing name just
     * as atomically; the temporary name is then dropped. */
    if (linkat(dfd, tmp, dfd, name, 0) < 0) {
        int saved = errno;
        if (saved == EEXIST) {
            (void)unlinkat(dfd, tmp, 0);
            return 0;
        }
        errno = saved;
        return -1;
    }
    if (unlinkat(dfd, tmp, 0) < 0)
        return -1;
    return 1;
}

static int copy_bytes(int in, int out)
{
    char buf[65536];
    for (;;) {
        ssize_t r = read(in, buf, sizeof(buf));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return 0;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return -1;
            off += w;
        }
    }
}

/* Renames the finished temporary into place unless something is there
 * already (customer data wins), and counts the outcome. */
static void place_and_count(struct seed_ctx *c, int dfd, const char *tmp, const char *name)
{
    int placed = place_noreplace(dfd, tmp, name);
    if (placed < 0) {
        seed_error(c, name, "cannot rename into place", errno);
        (void)unlinkat(dfd, tmp, 0);
    } else if (placed == 0) {
        c->res->kept++;
    } else {
        c->res->copied++;
    }
}

static void copy_file(struct seed_ctx *c, int sfd, int dfd, const char *name,
                      const struct stat *st)
{
    if (st->st_nlink > 1) {
        /* A second name of a file elsewhere (a user who can write the image
         * folder could link root's files there): its content is not copied
         * to where the run-as user can read it. */
        seed_error(c, name, "the image's file has more than one link; not copied", EMLINK);
        return;
    }
    int in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0) {
        seed_error(c, name, "cannot read the image's file", errno);
        return;
    }
    struct stat ist;
    if (fstat(in, &ist) != 0 || !S_ISREG(ist.st_mode) || ist.st_nlink > 1) {
        seed_error(c, name, "the image's file changed while it was read; not copied", EAGAIN);
        close(in);
        return;
    }
    char tmp[64];
    int out = fsafe_tmpfile(dfd, EFS_TMP_PREFIX, 0600, tmp, sizeof(tmp));
    if (out < 0) {
        seed_error(c, name, "cannot create", errno);
        close(in);
        return;
    }
    int rc = copy_bytes(in, out);
    int err = errno;
    close(in);
    if (rc == 0 && c->run_as && c->run_as->set &&
        fchown(out, c->run_as->uid, c->run_as->gid) < 0)
        rc = -1, err = errno;
    if (rc == 0 && fchmod(out, st->st_mode & 0777) < 0)
        rc = -1, err = errno;
    if (rc == 0 && fsync(out) < 0)
        rc = -1, err = errno;
    if (close(out) < 0 && rc == 0)
        rc = -1, err = errno;
    if (rc < 0) {
        seed_error(c, name, "cannot copy", err);
        (void)unlinkat(dfd, tmp, 0);
        return;
    }
    place_and_count(c, dfd, tmp, name);
}

static void copy_symlink(struct seed_ctx *c, int sfd, int dfd, const char *name)
{
    char target[PATH_MAX];
    ssize_t n = readlinkat(sfd, name, target, sizeof(target) - 1);
    if (n < 0) {
        seed_error(c, name, "cannot read the image's symlink", errno);
        return;
    }
    target[n] = '\0';
    char tmp[64], rnd[17];
    if (fsafe_random_hex(rnd, sizeof(rnd), 8) < 0) {
        seed_error(c, name, "cannot make a random name", errno);
        return;
    }
    snprintf(tmp, sizeof(tmp), EFS_TMP_PREFIX "%s", rnd);
    if (symlinkat(target, dfd, tmp) < 0) {
        seed_error(c, name, "cannot create symlink", errno);
        return;
    }
    /* Through a descriptor: a file swapped in under the temporary name in
     * the meantime is never given away. */
    if (c->run_as && c->run_as->set &&
        fsafe_chown_symlink(dfd, tmp, c->run_as->uid, c->run_as->gid) < 0) {
        seed_error(c, name, "cannot give the symlink to the run-as user", errno);
        (void)unlinkat(dfd, tmp, 0);
        return;
    }
    place_and_count(c, dfd, tmp, name);
}

/* Removes what an interrupted seed left in this destination directory. Only
 * names with our prefix: nobody else writes them, and we hold the lock. */
static void remove_leftovers_with(struct seed_ctx *c, int dfd, const char *prefix)
{
    int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    rewinddir(d); /* the duplicate shares dfd's offset, which a previous pass moved */
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        struct stat st;
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
            unlinkat(dfd, e->d_name, 0) == 0)
            c->res->temps_removed++;
    }
    closedir(d);
}

static void remove_leftovers(struct seed_ctx *c, int dfd)
{
    remove_leftovers_with(c, dfd, EFS_TMP_PREFIX);
}

/* An entry on EFS where the image has content, that the seed leaves as it is
 * and never follows: a symlink, a file with several links, or anything but a
 * folder where the image has a folder. Counted, the first one named. */
static void note_odd(struct seed_ctx *c, const char *name, const struct stat *dst, bool want_dir)
{
    c->res->odd++;
    if (c->res->first_odd[0])
        return;
    const char *what = S_ISLNK(dst->st_mode)  ? "a symlink"
                       : S_ISDIR(dst->st_mode) ? "a folder"
                       : dst->st_nlink > 1     ? "a file with several links"
                                               : "a file";
    snprintf(c->res->first_odd, sizeof(c->res->first_odd), "%s/%s: %s where the image has a %s",
             c->path, name, what, want_dir ? "folder" : "file");
}

static void seed_dir(struct seed_ctx *c, int sfd, int dfd, size_t path_len, int depth)
{
    remove_leftovers(c, dfd);
    int fd = fcntl(sfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        seed_error(c, ".", "cannot read the image's folder", errno);
        return;
    }
    bool changed = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        if (strncmp(name, EFS_TMP_PREFIX, sizeof(EFS_TMP_PREFIX) - 1) == 0)
            continue; /* never seed a name we treat as ours */
        struct stat st, dst;
        if (fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            seed_error(c, name, "cannot read the image's entry", errno);
            continue;
        }
        bool exists = fstatat(dfd, name, &dst, AT_SYMLINK_NOFOLLOW) == 0;
        if (!exists && errno != ENOENT) {
            seed_error(c, name, "cannot check", errno);
            continue;
        }
        if (exists && (S_ISLNK(dst.st_mode) || (!S_ISDIR(dst.st_mode) && dst.st_nlink > 1) ||
                       (S_ISDIR(st.st_mode) && !S_ISDIR(dst.st_mode))))
            note_odd(c, name, &dst, S_ISDIR(st.st_mode));
        if (S_ISDIR(st.st_mode)) {
            if (exists && !S_ISDIR(dst.st_mode)) {
                c->res->kept++; /* something else by that name: never replaced */
                continue;
            }
            if (depth >= SEED_MAX_DEPTH) {
                seed_error(c, name, "too deep", ELOOP);
                continue;
            }
            int cs = openat(sfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (cs < 0) {
                seed_error(c, name, "cannot open the image's folder", errno);
                continue;
            }
            /* Created and opened without following a symlink (one placed on
             * EFS is never followed out of the root), and handed over
             * through the descriptor: whatever is swapped in by that name
             * meanwhile is never chowned. */
            bool created = false;
            int cd = fsafe_mkdir_open(dfd, name, st.st_mode & 0777, &created);
            if (cd < 0) {
                seed_error(c, name, "cannot create or open folder", errno);
                close(cs);
                continue;
            }
            if (created) {
                if (c->run_as && c->run_as->set &&
                    fsafe_chown_dir(cd, c->run_as->uid, c->run_as->gid) < 0)
                    seed_error(c, name, "cannot give the folder to the run-as user", errno);
                c->res->dirs_created++;
                changed = true;
            }
            size_t n = (size_t)snprintf(c->path + path_len, PATH_MAX - path_len, "/%s", name);
            size_t child_len = path_len + n >= PATH_MAX ? path_len : path_len + n;
            seed_dir(c, cs, cd, child_len, depth + 1);
            c->path[path_len] = '\0';
            close(cs);
            close(cd);
            continue;
        }
        if (exists) {
            c->res->kept++;
            continue;
        }
        uint64_t before = c->res->copied;
        if (S_ISREG(st.st_mode))
            copy_file(c, sfd, dfd, name, &st);
        else if (S_ISLNK(st.st_mode))
            copy_symlink(c, sfd, dfd, name);
        /* devices, fifos and sockets in an image folder are not content */
        if (c->res->copied != before)
            changed = true;
    }
    closedir(d);
    if (changed && fsync(dfd) < 0 && errno != EINVAL && errno != EBADF)
        seed_error(c, ".", "cannot sync folder", errno);
}

/* ---- lock and marker -------------------------------------------------------- */

/* The marker and the lock live in .pi-agent/, the agent's own folder (see
 * fsafe_private_dir): agentfd is open on it. */
static int write_marker(int agentfd, const char *version, char *err, size_t cap)
{
    char text[256];
    int len = snprintf(text, sizeof(text), "seed-version=%s\nagent-version=%s\nseeded-at=%lld\n",
                       version, PI_AGENT_VERSION, (long long)time(NULL));
    const char *step = NULL;
    if (fsafe_write_replace(agentfd, "seed.done", text, (size_t)len, 0644, (uid_t)-1,
                            (gid_t)-1, &step) < 0) {
        snprintf(err, cap, "%s: cannot write (%s): %s", EFS_SEED_MARKER, step ? step : "?",
                 strerror(errno));
        return -1;
    }
    return 0;
}

static bool marker_matches(int agentfd, const char *version)
{
    int fd = openat(agentfd, "seed.done", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    char buf[512];
    ssize_t n = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        n = read(fd, buf, sizeof(buf));
    close(fd);
    return n > 0 && efs_seed_marker_matches(buf, (size_t)n, version);
}

int efs_agent_dir_open(int rootfd, const char *root, char *moved, size_t moved_cap, char *msg,
                       size_t cap)
{
    char display[PATH_MAX];
    efs_fmt(display, sizeof(display), "%s/%s", root, EFS_AGENT_DIR);
    return fsafe_private_dir(rootfd, EFS_AGENT_DIR, display, moved, moved_cap, msg, cap);
}

int efs_agent_dir(const char *root, char *moved, size_t moved_cap, char *msg, size_t cap)
{
    if (moved_cap)
        moved[0] = '\0';
    int rootfd = fsafe_open_dir_trusted(root, false);
    if (rootfd < 0) {
        efs_fmt(msg, cap, "PI_EFS_ROOT=%s: cannot open: %s", root, strerror(errno));
        return -1;
    }
    int fd = efs_agent_dir_open(rootfd, root, moved, moved_cap, msg, cap);
    int saved = errno;
    close(rootfd);
    errno = saved;
    return fd;
}

int efs_agent_dir_read(int rootfd, uid_t *uid)
{
    int fd = fsafe_openat(rootfd, EFS_AGENT_DIR, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode) || !fsafe_owner_ok(rootfd, st.st_uid) ||
        (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        close(fd);
        errno = EPERM;
        return -1;
    }
    if (uid)
        *uid = st.st_uid;
    return fd;
}

/* Opens (creating) the seed lock in the agent's folder: a regular file of
 * the agent's with a single link, else it is moved aside. */
static int open_lock(int agentfd, char *moved, size_t moved_cap)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        int fd = openat(agentfd, "seed.lock",
                        O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
            fsafe_owner_ok(agentfd, st.st_uid))
            return fd;
        if (fd >= 0)
            close(fd);
        else if (errno != ELOOP && errno != EISDIR && errno != ENXIO && errno != EWOULDBLOCK)
            return -1;
        if (fsafe_move_aside(agentfd, "seed.lock", "refused", moved, moved_cap) < 0)
            return -1;
    }
    errno = EAGAIN;
    return -1;
}

/* dst is ROOT/NAME (a folder of the root): opened beneath the root's
 * descriptor, no symlink followed. */
static int open_beneath_root(int rootfd, const char *root, const char *dst)
{
    size_t rl = strlen(root);
    if (strncmp(dst, root, rl) == 0 && dst[rl] == '/')
        return fsafe_openat(rootfd, dst + rl + 1, O_RDONLY | O_DIRECTORY, 0);
    return fsafe_open_dir_trusted(dst, false);
}

int efs_seed_run(const char *root, const struct efs_seed_source *src, int n,
                 const struct run_as *run_as, struct efs_seed_result *res)
{
    memset(res, 0, sizeof(*res));
    struct util_first_error *err = &res->err;
    /* Unreadable image entries only make the fingerprint partial: the seed
     * itself reports them. */
    (void)efs_seed_fingerprint(src, n, res->version);
    int rootfd = fsafe_open_dir_trusted(root, false);
    if (rootfd < 0) {
        util_first_error_add(err, "%s: cannot open: %s", root, strerror(errno));
        return -1;
    }
    char msg[600];
    int agentfd = efs_agent_dir_open(rootfd, root, res->moved_aside, sizeof(res->moved_aside),
                                     msg, sizeof(msg));
    if (agentfd < 0) {
        util_first_error_add(err, "%s", msg);
        close(rootfd);
        return -1;
    }
    char lock_moved[NAME_MAX + 1] = "";
    int lockfd = open_lock(agentfd, lock_moved, sizeof(lock_moved));
    if (lock_moved[0] && !res->moved_aside[0])
        efs_fmt(res->moved_aside, sizeof(res->moved_aside), "%s/%s", EFS_AGENT_DIR, lock_moved);
    if (lockfd < 0) {
        util_first_error_add(err, "%s/%s: cannot open: %s", root, EFS_SEED_LOCK, strerror(errno));
        close(agentfd);
        close(rootfd);
        return -1;
    }
    (void)fcntl(lockfd, F_SETFL, 0); /* O_NONBLOCK was for the open only */
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    double t0 = util_mono_s();
    int rc;
    while ((rc = fcntl(lockfd, F_SETLKW, &fl)) < 0 && errno == EINTR)
        ;
    res->lock_wait_s = util_mono_s() - t0;
    if (rc < 0) {
        util_first_error_add(err, "%s/%s: cannot lock: %s", root, EFS_SEED_LOCK, strerror(errno));
        close(lockfd);
        close(agentfd);
        close(rootfd);
        return -1;
    }

    { /* a marker temporary left by a kill */
        struct seed_ctx lc = { .res = res };
        remove_leftovers(&lc, agentfd);
        remove_leftovers_with(&lc, agentfd, ".seed.done.tmp."); /* fsafe_write_replace's */
    }
    if (marker_matches(agentfd, res->version)) {
        res->skipped = true;
    } else {
        char path[PATH_MAX];
        struct seed_ctx c = { .run_as = run_as, .res = res, .path = path };
        for (int i = 0; i < n; i++) {
            int sfd = fsafe_open_dir_trusted(src[i].src, false);
            if (sfd < 0)
                continue; /* nothing shipped there */
            int dfd = open_beneath_root(rootfd, root, src[i].dst);
            if (dfd < 0) {
                snprintf(path, sizeof(path), "%s", src[i].dst);
                seed_error(&c, ".", "cannot open folder", errno);
                close(sfd);
                continue;
            }
            snprintf(path, sizeof(path), "%s", src[i].dst);
            seed_dir(&c, sfd, dfd, strlen(path), 0);
            close(sfd);
            close(dfd);
        }
        if (err->count == 0) {
            char marker_msg[512];
            if (write_marker(agentfd, res->version, marker_msg, sizeof(marker_msg)) < 0)
                util_first_error_add(err, "%s/%s", root, marker_msg);
        }
    }
    fl.l_type = F_UNLCK;
    (void)fcntl(lockfd, F_SETLK, &fl);
    close(lockfd); /* closing drops the lock anyway */
    close(agentfd);
    close(rootfd);
    return err->count == 0 ? 0 : -1;
}
