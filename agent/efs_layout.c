/* efs_layout: see efs_layout.h. */
#include "efs_layout.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "fsafe.h"
#include "runas.h"
#include "util.h"
#include "worker.h"

void efs_fmt(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
}

/* ---- the folder table --------------------------------------------------- */

static const struct {
    const char *name;
    const char *rel; /* under the dashboard home */
} default_links[] = {
    { "themes", "tomcat/webapps/panMISDashboardResources/themes" },
    { "images", "tomcat/webapps/panMISDashboardResources/images" },
    { "files", "tomcat/webapps/panMISDashboardResources/files" },
    { "svg", "tomcat/webapps/panMISDashboardResources/svg" },
    { "locale", "tomcat/webapps/panMISDashboardResources/locale" },
    { "keys", "keys" },
    { "custom_jdbc", "custom_jdbc" },
};

int efs_links_default(const char *dashboard_home, struct efs_links *out)
{
    config_clear(out, sizeof(*out));
    size_t hl = strlen(dashboard_home);
    while (hl > 1 && dashboard_home[hl - 1] == '/')
        hl--;
    for (size_t i = 0; i < sizeof(default_links) / sizeof(default_links[0]); i++) {
        struct efs_link *l = &out->link[out->count++];
        snprintf(l->name, sizeof(l->name), "%s", default_links[i].name);
        int n = snprintf(l->path, sizeof(l->path), "%.*s/%s", (int)hl, dashboard_home,
                         default_links[i].rel);
        if (n < 0 || (size_t)n >= sizeof(l->path))
            return -1;
    }
    return 0;
}

static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || len > EFS_NAME_MAX)
        return false;
    if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    if (len == 9 && memcmp(s, ".pi-agent", 9) == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int efs_links_parse(const char *var, const char *text, struct efs_links *out,
                    struct config_error *err)
{
    config_clear(out, sizeof(*out));
    if (!text || !*text)
        return config_fail(err, var, "is empty; expected name:path[,name:path...]");
    const char *p = text;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        /* trim spaces around an entry */
        while (len && (*p == ' ' || *p == '\t'))
            p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len == 0)
            return config_fail(err, var, "has an empty entry; expected name:path[,name:path...]");
        const char *colon = memchr(p, ':', len);
        if (!colon)
            return config_fail(err, var, "entry '%.*s' has no ':'; expected name:path",
                               (int)(len > 64 ? 64 : len), p);
        size_t nlen = (size_t)(colon - p);
        const char *path = colon + 1;
        size_t plen = len - nlen - 1;
        if (!valid_name(p, nlen))
            return config_fail(err, var,
                               "folder name '%.*s' is not a plain name of up to %d characters "
                               "[A-Za-z0-9._-]",
                               (int)(nlen > 64 ? 64 : nlen), p, EFS_NAME_MAX);
        if (plen == 0 || path[0] != '/')
            return config_fail(err, var, "path for '%.*s' must be absolute", (int)nlen, p);
        if (plen >= PATH_MAX)
            return config_fail(err, var, "path for '%.*s' is too long", (int)nlen, p);
        while (plen > 1 && path[plen - 1] == '/')
            plen--;
        if (plen == 1)
            return config_fail(err, var, "path for '%.*s' cannot be /", (int)nlen, p);
        if (out->count >= EFS_LINKS_MAX)
            return config_fail(err, var, "has more than %d entries", EFS_LINKS_MAX);
        struct efs_link *l = &out->link[out->count];
        memcpy(l->name, p, nlen);
        l->name[nlen] = '\0';
        memcpy(l->path, path, plen);
        l->path[plen] = '\0';
        if (strstr(l->path, "/../") || strstr(l->path, "/./") ||
            (plen >= 3 && strcmp(l->path + plen - 3, "/..") == 0) ||
            (plen >= 2 && strcmp(l->path + plen - 2, "/.") == 0))
            return config_fail(err, var, "path for '%s' must not contain . or .. parts", l->name);
        for (int i = 0; i < out->count; i++) {
            if (strcmp(out->link[i].name, l->name) == 0)
                return config_fail(err, var, "folder '%s' is listed twice", l->name);
            if (strcmp(out->link[i].path, l->path) == 0)
                return config_fail(err, var, "path '%s' is listed twice", l->path);
            /* Once the outer path is a symlink to its EFS folder, the inner
             * one lies inside that folder: linking it would move customer
             * data aside there. */
            const char *a = out->link[i].path, *b = l->path;
            size_t al = strlen(a), bl = strlen(b);
            if (al > bl) {
                const char *t = a;
                a = b;
                b = t;
                size_t tl = al;
                al = bl;
                bl = tl;
            }
            if (strncmp(a, b, al) == 0 && b[al] == '/')
                return config_fail(err, var, "path '%s' is inside path '%s'; the folders must not "
                                   "nest", b, a);
        }
        out->count++;
        if (!end)
            break;
        p = end + 1;
    }
    return 0;
}

/* ---- mount points --------------------------------------------------------- */

/* Copies a mountinfo field (up to a space) unescaping \ooo; returns the end. */
static const char *field_copy(const char *p, const char *end, char *dst, size_t cap)
{
    size_t n = 0;
    while (p < end && *p != ' ' && *p != '\n') {
        char c = *p++;
        if (c == '\\' && end - p >= 3 && p[0] >= '0' && p[0] <= '3' && p[1] >= '0' &&
            p[1] <= '7' && p[2] >= '0' && p[2] <= '7') {
            c = (char)((p[0] - '0') * 64 + (p[1] - '0') * 8 + (p[2] - '0'));
            p += 3;
        }
        if (n + 1 < cap)
            dst[n++] = c;
    }
    if (cap)
        dst[n] = '\0';
    return p;
}

static const char *skip_field(const char *p, const char *end)
{
    while (p < end && *p != ' ' && *p != '\n')
        p++;
    if (p < end && *p == ' ')
        p++;
    return p;
}

bool efs_mountinfo_find(const char *text, size_t len, const char *path, char *fstype,
                        size_t fstype_cap)
{
    const char *p = text, *end = text + len;
    bool found = false;
    char mnt[PATH_MAX];
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        const char *q = p;
        for (int i = 0; i < 4 && q < eol; i++) /* id, parent, dev, root */
            q = skip_field(q, eol);
        if (q < eol) {
            q = field_copy(q, eol, mnt, sizeof(mnt));
            if (strcmp(mnt, path) == 0) {
                found = true; /* the last matching line is the visible mount */
                const char *sep = NULL;
                for (const char *s = q; s + 2 < eol; s++) {
                    if (s[0] == ' ' && s[1] == '-' && s[2] == ' ') {
                        sep = s + 3;
                        break;
                    }
                }
                if (fstype && fstype_cap) {
                    fstype[0] = '\0';
                    if (sep)
                        field_copy(sep, eol, fstype, fstype_cap);
                }
            }
        }
        p = eol < end ? eol + 1 : end;
    }
    return found;
}

/* mountinfo grows with every mount; start at 64 KiB, double up to 4 MiB. */
static char *read_mountinfo(size_t *len)
{
    for (size_t cap = 64 * 1024; cap <= 4 * 1024 * 1024; cap *= 2) {
        char *buf = malloc(cap);
        if (!buf)
            return NULL;
        long n = util_read_at(AT_FDCWD, "/proc/self/mountinfo", buf, cap);
        if (n >= 0) {
            *len = (size_t)n;
            return buf;
        }
        int saved = errno;
        free(buf);
        errno = saved;
        if (saved != EFBIG)
            return NULL;
    }
    errno = EFBIG;
    return NULL;
}

int efs_is_mount_point(const char *path, char *fstype, size_t fstype_cap)
{
    char real[PATH_MAX];
    if (!realpath(path, real))
        return -1;
    size_t len = 0;
    char *text = read_mountinfo(&len);
    if (!text)
        return -1;
    bool found = efs_mountinfo_find(text, len, real, fstype, fstype_cap);
    free(text);
    return found ? 1 : 0;
}

const char *efs_fs_name(int64_t magic)
{
    switch ((uint32_t)magic) {
    case 0x6969: return "nfs";
    case 0xEF53: return "ext4";
    case 0x01021994: return "tmpfs";
    case 0x794C7630: return "overlay";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x65735546: return "fuse";
    case 0x2FC12FC1: return "zfs";
    case 0x858458F6: return "ramfs";
    case 0x9FA0: return "proc";
    default: return NULL;
    }
}

int efs_fs_type(const char *path, char *out, size_t cap, bool *is_nfs)
{
    struct statfs sfs;
    if (statfs(path, &sfs) < 0)
        return -1;
    *is_nfs = (uint32_t)sfs.f_type == NFS_SUPER_MAGIC_VALUE;
    char mtype[64] = "";
    if (efs_is_mount_point(path, mtype, sizeof(mtype)) == 1 && mtype[0]) {
        snprintf(out, cap, "%s", mtype);
        return 0;
    }
    const char *name = efs_fs_name((int64_t)sfs.f_type);
    if (name)
        snprintf(out, cap, "%s", name);
    else
        snprintf(out, cap, "0x%lx", (unsigned long)sfs.f_type);
    return 0;
}

/* ---- folders and the write probe --------------------------------------- */

/* Splits an absolute path into its parent, opened with
 * fsafe_open_dir_trusted (create: making missing parents), and its last
 * component (into base). Returns the parent's fd or -1 with msg. */
static int open_parent(const char *path, bool create, char *base, size_t base_cap, char *msg,
                       size_t cap)
{
    char parent[PATH_MAX];
    snprintf(parent, sizeof(parent), "%s", path);
    char *slash = strrchr(parent, '/');
    if (!slash || slash[1] == '\0') {
        efs_fmt(msg, cap, "%s: not an absolute path to an entry", path);
        errno = EINVAL;
        return -1;
    }
    snprintf(base, base_cap, "%s", slash + 1);
    if (slash == parent)
        slash[1] = '\0';
    else
        *slash = '\0';
    int fd = fsafe_open_dir_trusted(parent, create);
    if (fd < 0) {
        int saved = errno;
        if (saved == ELOOP)
            efs_fmt(msg, cap, "%s: a symlink on the way that root did not make (not followed)",
                    parent);
        else
            efs_fmt(msg, cap, "%s: cannot open folder: %s", parent, strerror(saved));
        errno = saved;
    }
    return fd;
}

int efs_ensure_folder(const char *dir, const struct run_as *run_as, char *msg, size_t cap)
{
    char base[NAME_MAX + 1];
    int pfd = open_parent(dir, false, base, sizeof(base), msg, cap);
    if (pfd < 0)
        return -1;
    bool created = false;
    int fd = fsafe_mkdir_open(pfd, base, 0755, &created);
    int saved = errno;
    close(pfd);
    if (fd < 0) {
        if (saved == ELOOP)
            snprintf(msg, cap, "%s: is a symlink, not a folder; it is not followed or replaced",
                     dir);
        else if (saved == ENOTDIR)
            snprintf(msg, cap, "%s: exists and is not a folder; it is not replaced", dir);
        else
            snprintf(msg, cap, "%s: cannot create folder: %s", dir, strerror(saved));
        return -1;
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0) {
        snprintf(msg, cap, "%s: %s", dir, strerror(errno));
        rc = -1;
    } else if (run_as && run_as->set && (created || st.st_uid != run_as->uid)) {
        /* Only the folder itself, through its descriptor: customer files keep
         * whatever owner they have, and nothing swapped in by that name is
         * ever chowned. */
        if (fsafe_chown_dir(fd, run_as->uid, run_as->gid) < 0) {
            snprintf(msg, cap, "%s: cannot give the folder to %s (uid %u): %s", dir,
                     run_as->user[0] ? run_as->user : "the run-as user", (unsigned)run_as->uid,
                     strerror(errno));
            rc = -1;
        }
    }
    close(fd);
    return rc;
}

static int probe_one(const char *dir, int i, char *msg, size_t cap)
{
    (void)i;
    /* The folder itself is never a symlink followed (as root, without a
     * run-as user, the probe must not land elsewhere). */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) {
        snprintf(msg, cap, "%s: cannot open: %s", dir,
                 errno == ELOOP ? "a symlink (not followed)" : strerror(errno));
        return -1;
    }
    /* pids repeat across containers sharing EFS (each agent is PID 1 of its
     * own namespace): the name needs randomness to be unique, and O_EXCL. */
    char name[64];
    int fd = fsafe_tmpfile(dfd, ".pi-agent-probe.", 0600, name, sizeof(name));
    if (fd < 0) {
        snprintf(msg, cap, "%s: not writable: %s", dir, strerror(errno));
        close(dfd);
        return -1;
    }
    static const char probe[] = "pi-agent write probe\n";
    int rc = 0;
    if (write(fd, probe, sizeof(probe) - 1) != (ssize_t)(sizeof(probe) - 1) || fsync(fd) < 0) {
        snprintf(msg, cap, "%s: write failed: %s", dir, strerror(errno));
        rc = -1;
    }
    if (close(fd) < 0 && rc == 0) {
        snprintf(msg, cap, "%s: write failed: %s", dir, strerror(errno));
        rc = -1;
    }
    if (unlinkat(dfd, name, 0) < 0 && rc == 0) {
        snprintf(msg, cap, "%s: cannot remove the probe file: %s", dir, strerror(errno));
        rc = -1;
    }
    close(dfd);
    return rc;
}

static int probe_all(const char *const *dirs, int n, bool *ok, char *msg, size_t cap)
{
    int failures = 0;
    for (int i = 0; i < n; i++) {
        char one[512];
        ok[i] = probe_one(dirs[i], i, one, sizeof(one)) == 0;
        if (!ok[i] && failures++ == 0)
            snprintf(msg, cap, "%s", one);
    }
    return failures;
}

/* What the write probe's process reports back. */
struct probe_report {
    int failures;                 /* -1: the identity could not be taken */
    bool ok[EFS_LINKS_MAX * 2];
    char msg[512];
};

struct probe_args {
    const char *const *dirs;
    int n;
    const struct run_as *run_as;
};

/* In the worker: the run-as identity first, so the probe answers for the
 * user Tomcat runs as, not for root. */
static int probe_work(void *arg, int out_fd)
{
    const struct probe_args *a = arg;
    struct probe_report rep;
    memset(&rep, 0, sizeof(rep));
    if (runas_drop(a->run_as) != 0) {
        rep.failures = -1;
        snprintf(rep.msg, sizeof(rep.msg), "cannot switch to uid %u for the write probe: %s",
                 (unsigned)a->run_as->uid, strerror(errno));
    } else {
        rep.failures = probe_all(a->dirs, a->n, rep.ok, rep.msg, sizeof(rep.msg));
    }
    return worker_write_all(out_fd, &rep, sizeof(rep)) == 0 ? 0 : 1;
}

int efs_write_probe(const char *const *dirs, int n, const struct run_as *run_as, bool *ok,
                    char *msg, size_t cap)
{
    if (cap)
        msg[0] = '\0';
    if (!run_as || !run_as->set || geteuid() == run_as->uid)
        return probe_all(dirs, n, ok, msg, cap);

    struct probe_args args = { dirs, n > EFS_LINKS_MAX * 2 ? EFS_LINKS_MAX * 2 : n, run_as };
    struct worker_result res;
    if (worker_run("write-probe", probe_work, &args, EFS_WRITE_PROBE_TIMEOUT_MS, &res) != 0)
        return -1;
    struct probe_report rep;
    bool got = res.exited && res.exit_code == 0 && res.len == sizeof(rep);
    if (got)
        memcpy(&rep, res.data, sizeof(rep));
    worker_result_free(&res);
    if (!got) {
        snprintf(msg, cap, "write probe process failed");
        return -1;
    }
    if (rep.failures < 0) {
        snprintf(msg, cap, "%s", rep.msg);
        return -1;
    }
    for (int i = 0; i < n; i++)
        ok[i] = i < EFS_LINKS_MAX * 2 ? rep.ok[i] : false;
    snprintf(msg, cap, "%s", rep.msg);
    return rep.failures;
}

/* ---- dashboard paths ------------------------------------------------------- */

const char *efs_link_state_name(enum efs_link_state s)
{
    switch (s) {
    case EFS_LINK_MISSING: return "missing";
    case EFS_LINK_OK: return "linked";
    case EFS_LINK_OTHER_LINK: return "symlink elsewhere";
    case EFS_LINK_DIRECTORY: return "image folder";
    case EFS_LINK_MOUNT_POINT: return "mount point";
    case EFS_LINK_NOT_DIR: return "not a folder";
    }
    return "?";
}


void efs_image_backup_path(const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s.pi-agent-image", path);
}

bool efs_on_overlay(const char *path)
{
    struct statfs sfs;
    return statfs(path, &sfs) == 0 && (uint32_t)sfs.f_type == OVERLAYFS_SUPER_MAGIC_VALUE;
}

/* Removes the tree under dfd (depth-first, never following a symlink, never
 * leaving the file system of top_dev). */
static int remove_under(int dfd, dev_t top_dev, int depth, const char *path, char *msg, size_t cap)
{
    if (depth > 64) {
        efs_fmt(msg, cap, "%s: too deep to remove", path);
        return -1;
    }
    int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        efs_fmt(msg, cap, "%s: cannot read: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;
            efs_fmt(msg, cap, "%s/%s: %s", path, e->d_name, strerror(errno));
            rc = -1;
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            if (st.st_dev != top_dev) {
                efs_fmt(msg, cap, "%s/%s: a mount point inside the image folder; not removed",
                        path, e->d_name);
                rc = -1;
                break;
            }
            int cfd = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (cfd < 0) {
                efs_fmt(msg, cap, "%s/%s: %s", path, e->d_name, strerror(errno));
                rc = -1;
                break;
            }
            char sub[PATH_MAX];
            efs_fmt(sub, sizeof(sub), "%s/%s", path, e->d_name);
            rc = remove_under(cfd, top_dev, depth + 1, sub, msg, cap);
            close(cfd);
            if (rc == 0 && unlinkat(dfd, e->d_name, AT_REMOVEDIR) < 0) {
                efs_fmt(msg, cap, "%s: cannot remove: %s", sub, strerror(errno));
                rc = -1;
            }
        } else if (unlinkat(dfd, e->d_name, 0) < 0 && errno != ENOENT) {
            efs_fmt(msg, cap, "%s/%s: cannot remove: %s", path, e->d_name, strerror(errno));
            rc = -1;
        }
    }
    closedir(d);
    return rc;
}

/* What stands at pfd/base, seen through the parent's descriptor. */
static int inspect_at(int pfd, const char *base, const char *path, const char *folder,
                      enum efs_link_state *out)
{
    struct stat st;
    if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT) {
            *out = EFS_LINK_MISSING;
            return 0;
        }
        return -1;
    }
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(pfd, base, target, sizeof(target) - 1);
        if (n < 0)
            return -1;
        target[n] = '\0';
        *out = strcmp(target, folder) == 0 ? EFS_LINK_OK : EFS_LINK_OTHER_LINK;
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) {
        *out = EFS_LINK_NOT_DIR;
        return 0;
    }
    int m = efs_is_mount_point(path, NULL, 0);
    if (m < 0)
        return -1;
    *out = m ? EFS_LINK_MOUNT_POINT : EFS_LINK_DIRECTORY;
    return 0;
}

/* The same, from a path (planning and check only read what they find; the
 * start acts through inspect_at on the parent it holds). */
int efs_link_inspect(const char *path, const char *folder, enum efs_link_state *out)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL || slash[1] == '\0' || (size_t)(slash - path) >= PATH_MAX) {
        errno = EINVAL;
        return -1;
    }
    char parent[PATH_MAX];
    memcpy(parent, path, (size_t)(slash - path));
    parent[slash - path] = '\0';
    int pfd = open(parent[0] ? parent : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            *out = EFS_LINK_MISSING;
            return 0;
        }
        return -1;
    }
    int rc = inspect_at(pfd, slash + 1, path, folder, out);
    int saved = errno;
    close(pfd);
    errno = saved;
    return rc;
}

/* Removes the directory pfd/base: no symlink followed, no mount point crossed. */
static int remove_image_tree_at(int pfd, const char *base, const char *path, char *msg,
                                size_t cap)
{
    int fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        efs_fmt(msg, cap, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        efs_fmt(msg, cap, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    int rc = remove_under(fd, st.st_dev, 0, path, msg, cap);
    close(fd);
    if (rc == 0 && unlinkat(pfd, base, AT_REMOVEDIR) < 0) {
        efs_fmt(msg, cap, "%s: cannot remove: %s", path, strerror(errno));
        rc = -1;
    }
    return rc;
}

/* The same from a path: the parent is opened and the tree removed through it. */
int efs_remove_image_tree(const char *path, char *msg, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL || slash[1] == '\0' || (size_t)(slash - path) >= PATH_MAX) {
        efs_fmt(msg, cap, "%s: not an absolute path to a folder", path);
        return -1;
    }
    char parent[PATH_MAX];
    memcpy(parent, path, (size_t)(slash - path));
    parent[slash - path] = '\0';
    int pfd = open(parent[0] ? parent : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) {
        efs_fmt(msg, cap, "%s: cannot open: %s", parent[0] ? parent : "/", strerror(errno));
        return -1;
    }
    int rc = remove_image_tree_at(pfd, slash + 1, path, msg, cap);
    close(pfd);
    return rc;
}

int efs_link_replace(const char *path, const char *folder, char *msg, size_t cap)
{
    /* Everything below happens through the parent's descriptor: a folder on
     * the way swapped for a symlink by someone who can write there is never
     * followed (fsafe_open_dir_trusted). */
    char base[NAME_MAX + 1];
    int pfd = open_parent(path, true, base, sizeof(base), msg, cap);
    if (pfd < 0)
        return -1;
    int rc = -1;
    enum efs_link_state state;
    if (inspect_at(pfd, base, path, folder, &state) < 0) {
        snprintf(msg, cap, "%s: cannot inspect: %s", path, strerror(errno));
        goto out;
    }
    switch (state) {
    case EFS_LINK_OK:
        rc = 0;
        goto out;
    case EFS_LINK_MOUNT_POINT:
        snprintf(msg, cap, "%s: is a mount point; it is left alone", path);
        goto out;
    case EFS_LINK_NOT_DIR:
        snprintf(msg, cap, "%s: exists and is not a folder; it is not replaced", path);
        goto out;
    default:
        break;
    }

    char tmp[NAME_MAX + 1], rnd[17];
    if (fsafe_random_hex(rnd, sizeof(rnd), 8) < 0) {
        snprintf(msg, cap, "%s: no random name: %s", path, strerror(errno));
        goto out;
    }
    int n = snprintf(tmp, sizeof(tmp), "%.200s.pi-agent-link.%s", base, rnd);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        snprintf(msg, cap, "%s: path too long", path);
        goto out;
    }
    if (symlinkat(folder, pfd, tmp) < 0) {
        snprintf(msg, cap, "%s: cannot create symlink: %s", path, strerror(errno));
        goto out;
    }

    char backup[NAME_MAX + 1] = "";
    if (state == EFS_LINK_DIRECTORY) {
        /* The image's folder is moved aside, never deleted: a directory cannot
         * be swapped for a symlink in one rename. */
        int moved = -1, err = EEXIST;
        for (int i = 0; i < 10 && moved < 0; i++) {
            if (i == 0)
                snprintf(backup, sizeof(backup), "%.200s.pi-agent-image", base);
            else
                snprintf(backup, sizeof(backup), "%.200s.pi-agent-image.%d", base, i);
            struct stat st;
            if (fstatat(pfd, backup, &st, AT_SYMLINK_NOFOLLOW) == 0)
                continue;
            moved = renameat(pfd, base, pfd, backup);
            err = errno;
            if (moved < 0 && err != EEXIST && err != ENOTEMPTY)
                break;
        }
        struct statfs sfs;
        if (moved < 0 && err == EXDEV && fstatfs(pfd, &sfs) == 0 &&
            (uint32_t)sfs.f_type == OVERLAYFS_SUPER_MAGIC_VALUE) {
            /* Docker's overlayfs cannot rename a directory of a lower layer.
             * Its content is on EFS already (the caller seeds first), and the
             * image keeps it: only the container's view of it is removed. */
            backup[0] = '\0';
            if (remove_image_tree_at(pfd, base, path, msg, cap) < 0) {
                (void)unlinkat(pfd, tmp, 0);
                goto out;
            }
            moved = 0;
        }
        if (moved < 0) {
            snprintf(msg, cap, "%s: cannot move the image folder aside: %s", path, strerror(err));
            (void)unlinkat(pfd, tmp, 0);
            goto out;
        }
    }
    if (renameat(pfd, tmp, pfd, base) < 0) {
        int saved = errno;
        snprintf(msg, cap, "%s: cannot put the symlink in place: %s", path, strerror(saved));
        if (backup[0])
            (void)renameat(pfd, backup, pfd, base);
        (void)unlinkat(pfd, tmp, 0);
        goto out;
    }
    rc = 0;
out:
    close(pfd);
    return rc;
}
