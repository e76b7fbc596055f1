/* runas: see runas.h. */
#include "runas.h"

#include <errno.h>
#include <grp.h>
#include <unistd.h>

int runas_drop(const struct run_as *ra)
{
    if (ra == NULL || !ra->set)
        return 0;
    /* Supplementary groups from /etc/group when the user is known there. */
    int rc = -1;
    if (ra->user[0])
        rc = initgroups(ra->user, ra->gid);
    if (rc != 0 && setgroups(1, &ra->gid) != 0)
        return -1;
    if (setgid(ra->gid) != 0 || setuid(ra->uid) != 0)
        return -1;
    /* A partial switch must never pass for a complete one. */
    if (getuid() != ra->uid || geteuid() != ra->uid || getgid() != ra->gid ||
        getegid() != ra->gid || (ra->uid != 0 && setuid(0) == 0)) {
        errno = EPERM;
        return -1;
    }
    return 0;
}
