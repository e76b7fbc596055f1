/* efs_scan: the budget walk. Measures the apparent size of a tree the way
 * `du -s -x --apparent-size -b` does: the st_size of every inode in the tree
 * (files, directories, symlinks), hard-linked files once, never following a
 * symlink and never crossing into another file system.
 *
 * Memory does not grow with the number of files: the walk keeps one open
 * directory (and its read buffer) per level of depth, and remembers inodes
 * only for files with more than one link. */
#ifndef PI_EFS_SCAN_H
#define PI_EFS_SCAN_H

#include <stdint.h>

#include "util.h"

/* Deeper trees are reported as an error rather than exhausting descriptors. */
#define EFS_SCAN_MAX_DEPTH 256

struct efs_scan_totals {
    uint64_t bytes;          /* apparent size, du --apparent-size -b */
    uint64_t files;          /* non-directory inodes counted */
    uint64_t dirs;           /* directories counted (the top one included) */
    uint64_t skipped_mounts; /* directories on another file system, not entered */
    struct util_first_error err; /* entries that could not be read, and
                                    "path: reason" of the first ("" when none) */
};

/* One scan shares its hard-link memory across every tree it measures, so a
 * file linked into two folders counts once in the total (like `du -s a b`). */
struct efs_scan;

struct efs_scan *efs_scan_new(void);
void efs_scan_free(struct efs_scan *scan);

/* Measures the tree at path into *out (which it clears first). Returns 0 when
 * the top of the tree could be read (errors inside are counted in out), -1
 * when it could not (out->err.msg says why). */
int efs_scan_tree(struct efs_scan *scan, const char *path, struct efs_scan_totals *out);

/* Number of distinct multiply-linked inodes remembered so far (for tests and
 * for the benchmark's memory figure). */
uint64_t efs_scan_remembered_links(const struct efs_scan *scan);

#endif
