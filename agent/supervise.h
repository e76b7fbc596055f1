/* supervise: the child (Tomcat) and its process group. Starts it with a clean
 * signal state and only fds 0-2, forwards signals, stops it within the grace,
 * kills what it leaves behind, and restarts it when the policy says so. */
#ifndef PI_SUPERVISE_H
#define PI_SUPERVISE_H

#include <stdbool.h>
#include <sys/types.h>

#include "config.h"

struct loop;
struct agent_state;

struct supervisor;

/* Called once the child is gone for good (no restart follows), with the
 * exit status pi-agent should exit with. */
typedef void (*supervise_exit_cb)(struct supervisor *sv, int exit_status, void *ctx);

struct supervisor *supervise_new(struct loop *loop, const struct agent_config *cfg,
                                 struct agent_state *state, supervise_exit_cb on_exit,
                                 void *ctx);
void supervise_free(struct supervisor *sv);

/* Starts the child with envp. Returns 0, or -1 when fork failed. A command
 * that cannot be executed shows up as an exit with 126 or 127. */
int supervise_start(struct supervisor *sv, char *const *envp);
/* Sends sig to the child's process group (signal forwarding). */
void supervise_forward(struct supervisor *sv, int sig);
/* The stop sequence: SIGTERM, then SIGKILL after the grace. Idempotent: a
 * second call does not restart the wait. grace_ms overrides the configured
 * grace when > 0 (time already spent draining is taken off by the caller). */
void supervise_stop(struct supervisor *sv, unsigned grace_ms);
bool supervise_child_running(const struct supervisor *sv);

/* How the child's last run ended, for the run record. */
struct supervise_outcome {
    bool started;            /* a child was started at all */
    int wait_status;         /* its last wait(2) status */
    bool killed_after_grace; /* it was still running when the grace ran out */
};
void supervise_get_outcome(const struct supervisor *sv, struct supervise_outcome *out);

/* Pure: the exit status a shell would report for a wait(2) status. */
int exit_status_from_wait(int wait_status);
/* Pure: the restart delay after n consecutive failures (1 s doubling, max 60 s). */
unsigned restart_backoff_ms(unsigned failures);

/* Sends SIGKILL to every process that is a descendant of the agent (found
 * through /proc) and to the process group pgid when > 0. Returns how many
 * processes were signalled. */
int kill_descendants(pid_t pgid);



/* main calls this after every reap_all(), so the supervisor can tell when
 * the last process the child left behind is gone. sv may be NULL. */
void supervise_note_reaped(struct supervisor *sv);

#endif
