/* image_links: see image_links.h. This runs while an image is built, where
 * the file system is the image's own (nobody else writes to it); it still
 * never follows a symlink it did not make and never overwrites anything. */
#include "image_links.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "efs.h"
#include "efs_layout.h"

#define COPY_DEPTH_MAX 256

static int copy_file(int sfd_dir, int dfd_dir, const char *name, const struct stat *st,
                     const char *where, char *msg, size_t cap)
{
    int in = openat(sfd_dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0) {
        efs_fmt(msg, cap, "%s/%s: cannot open: %s", where, name, strerror(errno));
        return -1;
    }
    int out = openat(dfd_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        efs_fmt(msg, cap, "%s/%s: cannot create its copy: %s", where, name, strerror(errno));
        close(in);
        return -1;
    }
    char buf[65536];
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            efs_fmt(msg, cap, "%s/%s: read: %s", where, name, strerror(errno));
            rc = -1;
            break;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                efs_fmt(msg, cap, "%s/%s: write: %s", where, name, strerror(errno));
                rc = -1;
                break;
            }
            off += w;
        }
        if (rc)
            break;
    }
    struct timespec times[2] = { st->st_atim, st->st_mtim };
    if (rc == 0 && (fchown(out, st->st_uid, st->st_gid) < 0 ||
                    fchmod(out, st->st_mode & 07777) < 0 || futimens(out, times) < 0 ||
                    fsync(out) < 0)) {
        efs_fmt(msg, cap, "%s/%s: cannot keep its owner, mode or times: %s", where, name,
                strerror(errno));
        rc = -1;
    }
    close(in);
    if (close(out) < 0 && rc == 0) {
        efs_fmt(msg, cap, "%s/%s: close: %s", where, name, strerror(errno));
        rc = -1;
    }
    return rc;
}

static int copy_dir(int sfd, int dfd, const char *where, int depth, char *msg, size_t cap);

static int copy_entry(int sfd, int dfd, const char *name, const char *where, int depth, char *msg,
                      size_t cap)
{
    struct stat st;
    if (fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        efs_fmt(msg, cap, "%s/%s: %s", where, name, strerror(errno));
        return -1;
    }
    if (S_ISREG(st.st_mode))
        return copy_file(sfd, dfd, name, &st, where, msg, cap);
    struct timespec times[2] = { st.st_atim, st.st_mtim };
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(sfd, name, target, sizeof target - 1);
        if (n < 0) {
            efs_fmt(msg, cap, "%s/%s: readlink: %s", where, name, strerror(errno));
            return -1;
        }
        target[n] = '\0';
        if (symlinkat(target, dfd, name) < 0 ||
            fchownat(dfd, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0 ||
            utimensat(dfd, name, times, AT_SYMLINK_NOFOLLOW) < 0) {
            efs_fmt(msg, cap, "%s/%s: cannot copy the symlink: %s", where, name, strerror(errno));
            return -1;
        }
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        efs_fmt(msg, cap, "%s/%s: neither a file, a folder nor a symlink: not copied", where,
                name);
        return -1;
    }
    if (depth >= COPY_DEPTH_MAX) {
        efs_fmt(msg, cap, "%s/%s: deeper than %d levels", where, name, COPY_DEPTH_MAX);
        return -1;
    }
    if (mkdirat(dfd, name, 0700) < 0) {
        efs_fmt(msg, cap, "%s/%s: cannot create its copy: %s", where, name, strerror(errno));
        return -1;
    }
    int s2 = openat(sfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int d2 = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int rc = -1;
    if (s2 < 0 || d2 < 0) {
        efs_fmt(msg, cap, "%s/%s: cannot open: %s", where, name, strerror(errno));
    } else {
        char sub[PATH_MAX];
        efs_fmt(sub, sizeof sub, "%s/%s", where, name);
        rc = copy_dir(s2, d2, sub, depth + 1, msg, cap);
        /* Times last: filling the folder changed its mtime. */
        if (rc == 0 && (fchown(d2, st.st_uid, st.st_gid) < 0 ||
                        fchmod(d2, st.st_mode & 07777) < 0 || futimens(d2, times) < 0)) {
            efs_fmt(msg, cap, "%s: cannot keep its owner, mode or times: %s", sub,
                    strerror(errno));
            rc = -1;
        }
    }
    if (s2 >= 0)
        close(s2);
    if (d2 >= 0)
        close(d2);
    return rc;
}

static int copy_dir(int sfd, int dfd, const char *where, int depth, char *msg, size_t cap)
{
    int lfd = dup(sfd);
    DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
    if (!d) {
        efs_fmt(msg, cap, "%s: cannot list: %s", where, strerror(errno));
        if (lfd >= 0)
            close(lfd);
        return -1;
    }
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = copy_entry(sfd, dfd, de->d_name, where, depth, msg, cap);
        errno = 0;
    }
    if (rc == 0 && errno != 0) {
        efs_fmt(msg, cap, "%s: cannot list: %s", where, strerror(errno));
        rc = -1;
    }
    closedir(d);
    return rc;
}

int image_copy_tree(const char *src, const char *dst, char *msg, size_t cap)
{
    struct stat st;
    int sfd = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sfd < 0 || fstat(sfd, &st) < 0) {
        efs_fmt(msg, cap, "%s: cannot open: %s", src, strerror(errno));
        if (sfd >= 0)
            close(sfd);
        return -1;
    }
    if (mkdir(dst, 0700) < 0) {
        efs_fmt(msg, cap, "%s: cannot create: %s", dst, strerror(errno));
        close(sfd);
        return -1;
    }
    int dfd = open(dst, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        efs_fmt(msg, cap, "%s: cannot open: %s", dst, strerror(errno));
        close(sfd);
        return -1;
    }
    int rc = copy_dir(sfd, dfd, src, 0, msg, cap);
    struct timespec times[2] = { st.st_atim, st.st_mtim };
    if (rc == 0 && (fchown(dfd, st.st_uid, st.st_gid) < 0 || fchmod(dfd, st.st_mode & 07777) < 0 ||
                    futimens(dfd, times) < 0 || fsync(dfd) < 0)) {
        efs_fmt(msg, cap, "%s: cannot keep its owner, mode or times: %s", dst, strerror(errno));
        rc = -1;
    }
    close(sfd);
    close(dfd);
    return rc;
}

/* mkdir -p dir (mode 0755). */
static int make_dirs(const char *dir, char *msg, size_t cap)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST) {
            efs_fmt(msg, cap, "%s: cannot create: %s", buf, strerror(errno));
            return -1;
        }
        *p = saved;
        if (saved == '\0')
            return 0;
    }
}

/* One folder: returns 0 (done, or nothing to do) or -1 with msg. */
static int link_one(const struct efs_config *cfg, const struct efs_link *l, char *done,
                    size_t done_cap, char *msg, size_t cap)
{
    char folder[PATH_MAX], seed[PATH_MAX];
    efs_fmt(folder, sizeof folder, "%s/%s", cfg->root, l->name);
    efs_fmt(seed, sizeof seed, "%s/%s", cfg->seed_dir, l->name);
    enum efs_link_state state;
    if (efs_link_inspect(l->path, folder, &state) < 0) {
        efs_fmt(msg, cap, "%s: cannot inspect: %s", l->path, strerror(errno));
        return -1;
    }
    struct stat st;
    switch (state) {
    case EFS_LINK_OK:
        efs_fmt(done, done_cap, "already a link to %s", folder);
        return 0;
    case EFS_LINK_MOUNT_POINT:
        efs_fmt(msg, cap, "%s is a mount point while the image is built: not linked", l->path);
        return -1;
    case EFS_LINK_NOT_DIR:
        efs_fmt(msg, cap, "%s exists and is not a folder: not replaced", l->path);
        return -1;
    case EFS_LINK_OTHER_LINK:
        efs_fmt(msg, cap, "%s is a symlink elsewhere: not replaced", l->path);
        return -1;
    case EFS_LINK_MISSING:
        if (make_dirs(l->path, msg, cap) < 0) /* the parents, then the path itself */
            return -1;
        if (rmdir(l->path) < 0) {
            efs_fmt(msg, cap, "%s: %s", l->path, strerror(errno));
            return -1;
        }
        efs_fmt(done, done_cap, "linked to %s (the image had no content there)", folder);
        break;
    case EFS_LINK_DIRECTORY:
        if (lstat(seed, &st) == 0) {
            efs_fmt(msg, cap, "%s exists already: the image's %s is not moved over it", seed,
                    l->path);
            return -1;
        }
        if (make_dirs(cfg->seed_dir, msg, cap) < 0)
            return -1;
        if (rename(l->path, seed) < 0) {
            /* overlayfs cannot rename a folder of a lower layer: copy it. */
            if (errno != EXDEV) {
                efs_fmt(msg, cap, "%s: cannot move to %s: %s", l->path, seed, strerror(errno));
                return -1;
            }
            if (image_copy_tree(l->path, seed, msg, cap) < 0 ||
                efs_remove_image_tree(l->path, msg, cap) < 0)
                return -1;
        }
        efs_fmt(done, done_cap, "linked to %s; the image's content is in %s (seeded at start)",
                folder, seed);
        break;
    }
    if (symlink(folder, l->path) < 0) {
        efs_fmt(msg, cap, "%s: cannot create the link: %s", l->path, strerror(errno));
        return -1;
    }
    return 0;
}

int image_links_command(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "pi-agent image-links: takes no arguments (settings come from "
                        "PI_EFS_ROOT, PI_EFS_SEED_DIR, PI_DASHBOARD_HOME, PI_EFS_LINKS)\n");
        return EXIT_CONFIG;
    }
    static struct efs_config cfg;
    struct config_error err = { "" };
    if (efs_config_load(&cfg, &err) != 0) {
        fprintf(stderr, "pi-agent: configuration error: %s\n", err.msg);
        return EXIT_CONFIG;
    }
    if (cfg.mode == EFS_MODE_OFF) {
        /* the link table is not kept with storage off: nothing would be linked */
        fprintf(stderr, "pi-agent: configuration error: PI_EFS_MODE=off: image-links "
                        "needs the storage settings the image will run with\n");
        return EXIT_CONFIG;
    }
    size_t sl = strlen(cfg.seed_dir), rl = strlen(cfg.root);
    if ((sl >= rl && strncmp(cfg.seed_dir, cfg.root, rl) == 0 &&
         (cfg.seed_dir[rl] == '/' || cfg.seed_dir[rl] == '\0')) ||
        (rl > sl && strncmp(cfg.root, cfg.seed_dir, sl) == 0 && cfg.root[sl] == '/')) {
        fprintf(stderr, "pi-agent: configuration error: PI_EFS_SEED_DIR: %s overlaps "
                        "PI_EFS_ROOT=%s (the seed belongs to the image)\n", cfg.seed_dir,
                cfg.root);
        return EXIT_CONFIG;
    }
    for (int i = 0; i < cfg.links.count; i++) {
        const char *p = cfg.links.link[i].path;
        size_t pl = strlen(p);
        if ((sl >= pl && strncmp(cfg.seed_dir, p, pl) == 0 &&
             (cfg.seed_dir[pl] == '/' || cfg.seed_dir[pl] == '\0')) ||
            (pl > sl && strncmp(p, cfg.seed_dir, sl) == 0 && p[sl] == '/')) {
            fprintf(stderr, "pi-agent: configuration error: PI_EFS_SEED_DIR: %s overlaps the "
                            "dashboard path %s\n", cfg.seed_dir, p);
            return EXIT_CONFIG;
        }
    }
    int failures = 0;
    for (int i = 0; i < cfg.links.count; i++) {
        const struct efs_link *l = &cfg.links.link[i];
        char done[PATH_MAX * 2 + 96], msg[PATH_MAX * 2 + 96];
        if (link_one(&cfg, l, done, sizeof done, msg, sizeof msg) < 0) {
            fprintf(stderr, "pi-agent image-links: %s: %s\n", l->name, msg);
            failures++;
            continue;
        }
        printf("%s: %s %s\n", l->name, l->path, done);
    }
    fflush(stdout);
    return failures ? 1 : 0;
}
