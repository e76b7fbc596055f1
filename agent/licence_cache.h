/* licence_cache: the ALM licence cached on EFS, for a start while the ALM
 * cannot be reached. It lives in EFS_ROOT/.pi-agent/licence, the agent's own
 * folder (root's, mode 0700, not a link), which the storage module alone
 * creates and opens (efs_agent_dir_open, efs_agent_dir_read). The EFS root is
 * shared with the dashboard's user, so every step walks from descriptors
 * (fsafe.h), nothing planted there is followed, and a folder that is not the
 * agent's own is moved aside (store) or not read (load).
 *
 * Runs in a worker only: NFS may stall. Both calls log what went wrong
 * themselves (never the licence) and fail soft: the cache is a fallback. */
#ifndef PI_LICENCE_CACHE_H
#define PI_LICENCE_CACHE_H

#include <stddef.h>

/* Replaces the cached licence with token (write, fsync, rename); also
 * removes temporaries that killed writers left behind. */
void licence_cache_store(const char *efs_root, const char *token, size_t len);

/* The cached licence (malloc'd, NUL-terminated, at most LICENCE_MAX_LEN
 * bytes; the caller wipes and frees it), or NULL when there is none or it
 * cannot be trusted. */
char *licence_cache_load(const char *efs_root, size_t *len);

#endif
