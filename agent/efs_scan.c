/* efs_scan: see efs_scan.h. The walk reads directories with getdents64 into a
 * buffer per level (musl's readdir buffer is small, and on NFS every refill is
 * a round trip), stats every entry with fstatat relative to its directory's
 * descriptor (no path resolution, no symlink following) and descends with
 * openat(O_NOFOLLOW | O_DIRECTORY). */
#include "efs_scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define DENTS_BUF_SIZE (32 * 1024)

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

struct inode_key {
    dev_t dev;
    ino_t ino;
};

struct efs_scan {
    /* Open-addressing set of (dev, ino) for files with st_nlink > 1 only. */
    struct inode_key *links;
    size_t links_cap; /* power of two, 0 when empty */
    size_t links_used;
};

struct level {
    int fd;
    char *buf;
    size_t len, pos;
    size_t path_len; /* length of the path of this directory in the path buffer */
};

struct efs_scan *efs_scan_new(void)
{
    return calloc(1, sizeof(struct efs_scan));
}

void efs_scan_free(struct efs_scan *scan)
{
    if (!scan)
        return;
    free(scan->links);
    free(scan);
}

uint64_t efs_scan_remembered_links(const struct efs_scan *scan)
{
    return scan ? scan->links_used : 0;
}

static size_t inode_hash(dev_t dev, ino_t ino)
{
    uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ull ^ (uint64_t)dev * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(h ^ (h >> 29));
}

static int links_grow(struct efs_scan *scan)
{
    size_t cap = scan->links_cap ? scan->links_cap * 2 : 256;
    struct inode_key *tab = calloc(cap, sizeof(*tab));
    if (!tab)
        return -1;
    for (size_t i = 0; i < scan->links_cap; i++) {
        struct inode_key k = scan->links[i];
        if (k.ino == 0)
            continue;
        size_t j = inode_hash(k.dev, k.ino) & (cap - 1);
        while (tab[j].ino != 0)
            j = (j + 1) & (cap - 1);
        tab[j] = k;
    }
    free(scan->links);
    scan->links = tab;
    scan->links_cap = cap;
    return 0;
}

/* Returns 1 when (dev, ino) was already seen, 0 when it is new (and now
 * remembered), -1 when memory ran out (the file is then counted). */
static int links_seen(struct efs_scan *scan, dev_t dev, ino_t ino)
{
    if (ino == 0)
        return 0; /* 0 marks an empty slot; no real file system hands it out */
    if ((scan->links_used + 1) * 2 > scan->links_cap && links_grow(scan) < 0)
        return -1;
    size_t j = inode_hash(dev, ino) & (scan->links_cap - 1);
    while (scan->links[j].ino != 0) {
        if (scan->links[j].ino == ino && scan->links[j].dev == dev)
            return 1;
        j = (j + 1) & (scan->links_cap - 1);
    }
    scan->links[j].dev = dev;
    scan->links[j].ino = ino;
    scan->links_used++;
    return 0;
}

static void note_error(struct efs_scan_totals *out, const char *path, const char *what, int err)
{
    /* Keep the end of a very long path: the deepest names say the most. */
    size_t len = strlen(path), keep = 160;
    const char *shown = len > keep ? path + len - keep : path;
    util_first_error_add(&out->err, "%s%s: %s: %s", len > keep ? "..." : "",
             shown, what, strerror(err));
}

/* Appends "/name" to the path buffer (truncating only what is shown in
 * errors: the walk itself never uses the path). Returns the new length. */
static size_t path_push(char *path, size_t len, const char *name)
{
    if (len + 1 < PATH_MAX) {
        int n = snprintf(path + len, PATH_MAX - len, "/%s", name);
        if (n > 0)
            len = (size_t)n + len >= PATH_MAX ? PATH_MAX - 1 : len + (size_t)n;
    }
    return len;
}

static int level_open(struct level *lv, int fd, size_t path_len)
{
    lv->buf = malloc(DENTS_BUF_SIZE);
    if (!lv->buf)
        return -1;
    lv->fd = fd;
    lv->len = lv->pos = 0;
    lv->path_len = path_len;
    return 0;
}

static void level_close(struct level *lv)
{
    free(lv->buf);
    lv->buf = NULL;
    if (lv->fd >= 0)
        close(lv->fd);
    lv->fd = -1;
}

/* Next entry of the directory, or NULL at its end (or on a read error, which
 * is counted). */
static struct linux_dirent64 *level_next(struct level *lv, char *path,
                                         struct efs_scan_totals *out)
{
    for (;;) {
        if (lv->pos >= lv->len) {
            long n = syscall(SYS_getdents64, lv->fd, lv->buf, DENTS_BUF_SIZE);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                path[lv->path_len] = '\0';
                note_error(out, path, "cannot read directory", errno);
                return NULL;
            }
            if (n == 0)
                return NULL;
            lv->len = (size_t)n;
            lv->pos = 0;
        }
        struct linux_dirent64 *d = (struct linux_dirent64 *)(lv->buf + lv->pos);
        lv->pos += d->d_reclen;
        if (d->d_name[0] == '.' &&
            (d->d_name[1] == '\0' || (d->d_name[1] == '.' && d->d_name[2] == '\0')))
            continue;
        return d;
    }
}

static void count_inode(struct efs_scan *scan, const struct stat *st, struct efs_scan_totals *out)
{
    if (!S_ISDIR(st->st_mode) && st->st_nlink > 1 && links_seen(scan, st->st_dev, st->st_ino) == 1)
        return;
    if (st->st_size > 0)
        out->bytes += (uint64_t)st->st_size;
    if (S_ISDIR(st->st_mode))
        out->dirs++;
    else
        out->files++;
}

int efs_scan_tree(struct efs_scan *scan, const char *path, struct efs_scan_totals *out)
{
    memset(out, 0, sizeof(*out));
    struct stat st;
    if (lstat(path, &st) < 0) {
        note_error(out, path, "cannot read", errno);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        /* A symlink (or file) in place of a folder: counted, never followed. */
        count_inode(scan, &st, out);
        return 0;
    }
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        note_error(out, path, "cannot open directory", errno);
        return -1;
    }
    const dev_t top_dev = st.st_dev;
    count_inode(scan, &st, out);

    char *pathbuf = malloc(PATH_MAX);
    struct level *stack = calloc(EFS_SCAN_MAX_DEPTH, sizeof(*stack));
    if (!pathbuf || !stack) {
        free(pathbuf);
        free(stack);
        close(fd);
        note_error(out, path, "cannot scan", ENOMEM);
        return -1;
    }
    snprintf(pathbuf, PATH_MAX, "%s", path);
    size_t root_len = strlen(pathbuf);
    while (root_len > 1 && pathbuf[root_len - 1] == '/')
        pathbuf[--root_len] = '\0';

    int depth = 0;
    if (level_open(&stack[0], fd, root_len) < 0) {
        close(fd);
        free(pathbuf);
        free(stack);
        note_error(out, path, "cannot scan", ENOMEM);
        return -1;
    }
    depth = 1;

    while (depth > 0) {
        struct level *lv = &stack[depth - 1];
        struct linux_dirent64 *d = level_next(lv, pathbuf, out);
        if (!d) {
            level_close(lv);
            depth--;
            continue;
        }
        if (fstatat(lv->fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno != ENOENT) { /* ENOENT: removed while we walked */
                size_t n = path_push(pathbuf, lv->path_len, d->d_name);
                pathbuf[n] = '\0';
                note_error(out, pathbuf, "cannot stat", errno);
            }
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            count_inode(scan, &st, out);
            continue;
        }
        if (st.st_dev != top_dev) {
            out->skipped_mounts++; /* like du -x: another file system is not ours */
            continue;
        }
        count_inode(scan, &st, out);
        size_t child_len = path_push(pathbuf, lv->path_len, d->d_name);
        pathbuf[child_len] = '\0';
        if (depth >= EFS_SCAN_MAX_DEPTH) {
            note_error(out, pathbuf, "not measured", ELOOP);
            continue;
        }
        int cfd = openat(lv->fd, d->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cfd < 0) {
            if (errno != ENOENT)
                note_error(out, pathbuf, "cannot open directory", errno);
            continue;
        }
        if (level_open(&stack[depth], cfd, child_len) < 0) {
            close(cfd);
            note_error(out, pathbuf, "cannot scan", ENOMEM);
            continue;
        }
        depth++;
    }
    free(pathbuf);
    free(stack);
    return 0;
}
