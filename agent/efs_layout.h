/* efs_layout: the folders on EFS and the dashboard paths that point at them.
 * The folder table, mount-point detection, file system types, the write
 * probe, folder creation and the swap of a dashboard path for a symlink. */
#ifndef PI_EFS_LAYOUT_H
#define PI_EFS_LAYOUT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

#define EFS_LINKS_MAX 16
#define EFS_NAME_MAX 31
#define NFS_SUPER_MAGIC_VALUE 0x6969
#define OVERLAYFS_SUPER_MAGIC_VALUE 0x794C7630

/* Where `pi-agent image-links` keeps the image's folders (as NAME/ under it)
 * once their paths are links into the EFS root. */
#define EFS_DEFAULT_SEED_DIR "/usr/local/share/pi-agent/seed"

/* Where the dashboard image is installed, by default. */
#define DEFAULT_DASHBOARD_HOME "/var/panintelligence/Dashboard"

struct efs_link {
    char name[EFS_NAME_MAX + 1]; /* folder under the EFS root */
    char path[PATH_MAX];         /* absolute dashboard path */
};

struct efs_links {
    int count;
    struct efs_link link[EFS_LINKS_MAX];
};

/* snprintf for messages, where cutting a long path short is acceptable. */
void efs_fmt(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The default table (platform facts) under dashboard_home. */
int efs_links_default(const char *dashboard_home, struct efs_links *out);
/* Pure: parses "name:path,name:path,..." (PI_EFS_LINKS). Names are plain
 * folder names ([A-Za-z0-9._-], not "." or ".." or ".pi-agent"), paths are
 * absolute and unique. Returns 0, or -1 with err naming var. */
int efs_links_parse(const char *var, const char *text, struct efs_links *out,
                    struct config_error *err);

/* Pure: is `path` (absolute, canonical) a mount point according to the text
 * of /proc/self/mountinfo? Copies that mount's file system type to fstype
 * (may be NULL) when it is. Handles the \040-style escapes of mountinfo. */
bool efs_mountinfo_find(const char *text, size_t len, const char *path, char *fstype,
                        size_t fstype_cap);

/* Reads /proc/self/mountinfo and answers for path (resolved with realpath).
 * Returns 1 (mount point), 0 (not), -1 (path missing or unreadable: errno). */
int efs_is_mount_point(const char *path, char *fstype, size_t fstype_cap);

/* Pure: a short name for a statfs f_type magic ("nfs", "ext4", "tmpfs", ...)
 * or NULL when unknown. */
const char *efs_fs_name(int64_t magic);
/* statfs(path): the type name into out (the mountinfo type, else the magic
 * name, else "0x..."), and whether it is NFS. Returns 0 or -1 (errno). */
int efs_fs_type(const char *path, char *out, size_t cap, bool *is_nfs);

/* Creates dir (one level, mode 0755) when missing and gives it to the run-as
 * user. Returns 0, or -1 with msg "PATH: reason". A path that exists but is
 * not a directory (or is a symlink) is an error: it is never replaced. */
int efs_ensure_folder(const char *dir, const struct run_as *run_as, char *msg, size_t cap);

/* The write probe: as the run-as user (a forked process drops to it when
 * run_as->set), creates, writes, fsyncs and removes a file in each of dirs.
 * ok[i] tells the result; msg gets the first failure "PATH: reason".
 * The forked process is a worker (worker.h): a stop request ends it, and so
 * does EFS_WRITE_PROBE_TIMEOUT_MS (a hung NFS server), as a failure.
 * Returns the number of failures, or -1 when the probe could not run. */
#define EFS_WRITE_PROBE_TIMEOUT_MS (5 * 60 * 1000)
int efs_write_probe(const char *const *dirs, int n, const struct run_as *run_as, bool *ok,
                    char *msg, size_t cap);

/* State of a dashboard path relative to its EFS folder. */
enum efs_link_state {
    EFS_LINK_MISSING,     /* nothing there */
    EFS_LINK_OK,          /* a symlink to the folder already */
    EFS_LINK_OTHER_LINK,  /* a symlink somewhere else */
    EFS_LINK_DIRECTORY,   /* a plain directory (the image's content) */
    EFS_LINK_MOUNT_POINT, /* a mount point: left alone */
    EFS_LINK_NOT_DIR,     /* a file or device: an error, never replaced */
};
const char *efs_link_state_name(enum efs_link_state s);
int efs_link_inspect(const char *path, const char *folder, enum efs_link_state *out);

/* Where the image's folder is kept once it has been swapped for a symlink. */
void efs_image_backup_path(const char *path, char *out, size_t cap);

/* Makes `path` a symlink to `folder`. A directory there is moved aside to
 * efs_image_backup_path; a symlink elsewhere is replaced atomically; a mount
 * point or a file is refused. Creates missing parents. Returns 0 or -1 with
 * msg. Call it only once the directory's content is seeded: on overlayfs (a
 * container's own layer) a directory of a lower layer cannot be renamed
 * (EXDEV), and the container's view of it is removed instead (the image
 * itself keeps it). */
int efs_link_replace(const char *path, const char *folder, char *msg, size_t cap);

/* Is path on overlayfs (a container's own file system)? */
bool efs_on_overlay(const char *path);
/* Removes the directory tree at path: no symlink followed, no mount point
 * crossed (that is an error). Returns 0 or -1 with msg naming the path. */
int efs_remove_image_tree(const char *path, char *msg, size_t cap);

#endif
