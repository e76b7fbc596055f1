/* efs_seed: copies the image's default content (themes, locale, ...) into the
 * EFS folders, exactly once across every task sharing the root, without ever
 * overwriting or deleting a file that is already there.
 *
 *  - Seeding runs under an exclusive fcntl lock on ROOT/.pi-agent/seed.lock
 *    (a file opened for writing: NFS honours whole-file fcntl locks and frees
 *    them when a crashed client's lease expires).
 *  - ROOT/.pi-agent/seed.done records the seed version: a fingerprint of the
 *    image content (folder, relative path, type, size, mtime of each entry).
 *    A task that finds the same version skips the walk; a new image version
 *    seeds again, still copying only what is absent.
 *  - ROOT/.pi-agent is the agent's own folder: root's, mode 0700, never a
 *    link (see efs_agent_dir_open); the EFS folders are walked from
 *    descriptors, never following a symlink (fsafe.h).
 *  - Every copy goes to a random temporary name (.pi-agent-tmp.*) in its target
 *    folder, is fsynced and then renamed without replacing (renameat2
 *    RENAME_NOREPLACE, or link+unlink where the file system lacks it). A kill
 *    mid-seed leaves temporaries and no marker; the next start removes the
 *    temporaries and finishes the job. */
#ifndef PI_EFS_SEED_H
#define PI_EFS_SEED_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "util.h"

#define EFS_AGENT_DIR ".pi-agent"
#define EFS_SEED_LOCK ".pi-agent/seed.lock"
#define EFS_SEED_MARKER ".pi-agent/seed.done"
#define EFS_TMP_PREFIX ".pi-agent-tmp."

struct efs_seed_source {
    const char *name; /* folder name, part of the fingerprint */
    const char *src;  /* the image's folder (local) */
    const char *dst;  /* the EFS folder */
};

struct efs_seed_result {
    bool skipped;            /* the marker already held this version */
    char version[17];        /* hex fingerprint */
    uint64_t copied;         /* files and symlinks copied */
    uint64_t kept;           /* entries already on EFS, left as they were */
    uint64_t dirs_created;
    uint64_t temps_removed;  /* leftovers of an interrupted seed */
    struct util_first_error err; /* count, and "path: reason" of the first */
    double lock_wait_s;
    uint64_t odd;            /* symlinks or multiply-linked files where the image has content */
    char first_odd[512];     /* "path: what" of the first one */
    char moved_aside[320];   /* what stood at .pi-agent (or its lock) and was moved aside */
};

/* Pure helper: order-independent fingerprint of the given sources (walks the
 * local image folders). Missing sources contribute nothing. Returns 0/-1. */
int efs_seed_fingerprint(const struct efs_seed_source *src, int n, char out[17]);

/* Seeds every source into its destination under the root's lock. Returns 0
 * when the seed is complete (res->err.count == 0), -1 otherwise (res->err.msg
 * says why: lock, marker or copy failures name the path). */
int efs_seed_run(const char *root, const struct efs_seed_source *src, int n,
                 const struct run_as *run_as, struct efs_seed_result *res);

/* Opens ROOT/.pi-agent, the agent's own folder (root's, mode 0700, not a
 * link), beneath rootfd; anything else standing there is moved aside as
 * .pi-agent.refused-RANDOM (moved says what, "" when nothing was). Returns
 * the fd, or -1 with msg naming the path and what was found. */
int efs_agent_dir_open(int rootfd, const char *root, char *moved, size_t moved_cap, char *msg,
                       size_t cap);

/* The one way to ROOT/.pi-agent for every module that keeps files there (the
 * seed, the licence cache, run and scan records): opens the root without
 * following a link, then the agent's own folder beneath it as
 * efs_agent_dir_open does (created root's, mode 0700, when missing; anything
 * else moved aside). Returns the fd, or -1 with msg naming the path. */
int efs_agent_dir(const char *root, char *moved, size_t moved_cap, char *msg, size_t cap);

/* For readers of what the agent keeps there (the licence cache, the fleet's
 * scan record): ROOT/.pi-agent beneath rootfd, opened only while it is the
 * agent's own (a folder reached without a link, of the agent's uid, writable
 * by nobody else); nothing is created or moved. Returns the fd (*uid, may be
 * NULL, gets its owner), or -1 with errno: ENOENT when it is missing, EPERM
 * when it is not the agent's own, else why it could not be opened. */
int efs_agent_dir_read(int rootfd, uid_t *uid);

/* Pure: does the marker text record this version? */
bool efs_seed_marker_matches(const char *text, size_t len, const char *version);

#endif
