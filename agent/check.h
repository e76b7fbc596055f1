/* check: `pi-agent check`, the command to run before a deployment (like
 * `nginx -t`). Validates the whole configuration without starting anything:
 * every module's variables, the licence, the EFS root, folders, links,
 * permissions (a real write probe) and the budget. One line per check:
 *     ok    licence          valid: ...
 *     warn  root             PI_EFS_ROOT=/mnt/efs is a mount point on ext4, not NFS ...
 *     fail  folder keys      /mnt/efs/keys is not writable by tomcat ...
 * Exit status: 0 when every check is ok, 1 when a start would go on degraded
 * (warnings), 2 when a start would stop or readiness would fail. */
#ifndef PI_CHECK_H
#define PI_CHECK_H

#include <stdio.h>

#define CHECK_OK 0
#define CHECK_DEGRADED 1
#define CHECK_FAILED 2

int check_command(void);

/* The same, writing to out (for tests). */
int check_run(FILE *out);

#endif
