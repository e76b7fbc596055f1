/* runas: taking the identity Tomcat runs as (PI_AGENT_RUN_AS) in a forked
 * process, written once for every process that must act with that user's
 * rights only: the child itself, the log housekeeping worker and the
 * storage write probe. PI_AGENT_RUN_AS is read and parsed by config.c. */
#ifndef PI_RUNAS_H
#define PI_RUNAS_H

#include "config.h"

/* Call only in a forked process, never in PID 1. When ra->set: the
 * supplementary groups (initgroups for a named user, falling back to the
 * one group ra->gid; just ra->gid for a numeric id), then setgid, then
 * setuid, each checked, and finally a check that the real and effective ids
 * are ra's and root cannot be taken back. Returns 0 (also when ra is NULL or
 * not set: nothing to do), or -1 with errno from the step that failed
 * (EPERM when the final check fails). */
int runas_drop(const struct run_as *ra);

#endif
