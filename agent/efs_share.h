/* efs_share: one budget walk per interval for the whole fleet. Every task of
 * a service mounts the same EFS root and would walk it every interval; the
 * figures of each walk are kept in ROOT/.pi-agent/scan with their time, and
 * a task whose scan comes due uses a record younger than the interval
 * instead of walking. The decision and the write happen under an exclusive
 * fcntl lock on ROOT/.pi-agent/scan.lock, so that tasks coming due together
 * wait for one walk instead of all walking. This file holds the pure part:
 * the record's text format, its parser and the freshness rule. */
#ifndef PI_EFS_SHARE_H
#define PI_EFS_SHARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "efs_layout.h"
#include "state.h"

#define EFS_SHARE_RECORD ".pi-agent/scan"
#define EFS_SHARE_LOCK ".pi-agent/scan.lock"
#define EFS_SHARE_MAX 4096 /* bytes of a record file, at most */

/* The figures of one walk, as kept on EFS. */
struct efs_share_record {
    uint64_t time_ms;         /* wall clock when the walk finished */
    uint64_t writer;          /* random id of the agent that walked */
    uint64_t total_bytes, files, errors;
    double scan_seconds;
    int nfolders;
    struct efs_folder_usage folders[STATE_EFS_FOLDERS_MAX];
};

/* Pure: renders r as text:
 *   pi-agent-scan/1
 *   writer HEX / time_ms N / total_bytes N / files N / errors N / scan_seconds D
 *   folder NAME BYTES FILES      (one line per folder, in plan order)
 *   end
 * Returns the length, or -1 when cap is too small. */
int efs_share_format(const struct efs_share_record *r, char *buf, size_t cap);

/* Pure: parses the text (any bytes are safe: EFS is shared). Returns 0, or
 * -1 when it is not a complete record of this format. */
int efs_share_parse(const char *text, size_t len, struct efs_share_record *out);

/* Pure: true when r can stand for a walk of the folders names[0..n) by the
 * agent whose id is self at now_ms: another agent's walk (a task's own last
 * walk is always older than its next scan is due: it walks again), of the
 * same folders in the same order, younger than interval_ms (a record from
 * the future, a clock step, is not trusted). */
bool efs_share_usable(const struct efs_share_record *r, uint64_t self,
                      const char (*names)[EFS_NAME_MAX + 1], int n, uint64_t now_ms,
                      uint64_t interval_ms);

#endif
