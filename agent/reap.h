/* reap: collects every child that exits, as PID 1 or as a subreaper must.
 * Modules that fork (the supervisor, workers, hooks) register the pids they
 * care about; any other pid (a re-parented orphan) is reaped and forgotten. */
#ifndef PI_REAP_H
#define PI_REAP_H

#include <sys/types.h>

typedef void (*reap_cb)(pid_t pid, int wait_status, void *ctx);

int reap_watch(pid_t pid, reap_cb cb, void *ctx);
void reap_unwatch(pid_t pid);
/* Reaps every exited child without blocking (call on SIGCHLD). Returns the
 * number reaped. */
int reap_all(void);
/* Blocks until pid exits or timeout_ms passes (used outside the loop: start
 * and stop phases). Other children reaped meanwhile are dispatched as by
 * reap_all. A watch on pid registered earlier is set aside: the caller of
 * reap_wait gets the status (and the watch is restored on timeout). Returns
 * 0 and the status, or -1 on timeout. */
int reap_wait(pid_t pid, int timeout_ms, int *wait_status);

#endif
