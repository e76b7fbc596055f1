/* hooks: lifecycle hooks. Executables in PI_AGENT_HOOKS_DIR/<phase>.d run one
 * after another in lexical (byte) order, each in its own process group with a
 * time limit after which the whole group is killed. They inherit fds 0-2 only,
 * run as the agent's own user (root in the dashboard image) whatever
 * PI_AGENT_RUN_AS says, and get the agent's environment plus:
 *   PI_AGENT_PHASE                    pre-start, post-ready, pre-stop, post-stop
 *   PI_LICENCE_STATUS                 the licence status word ("unknown" if none)
 *   PI_AGENT_HOOK_TIME_LIMIT_SECONDS  what this hook has before it is killed
 *   PI_AGENT_CHILD_PID                Tomcat's pid, while it runs
 *   PI_AGENT_ENV_FILE                 pre-start only: KEY=VALUE lines written
 *                                     here go into Tomcat's environment
 * (`pi-agent wait-tcp`, which the shipped database hook uses, is wait_tcp.h.) */
#ifndef PI_HOOKS_H
#define PI_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "hooks_env.h"
#include "hooks_list.h"

#define EXIT_HOOK_FAILED 75 /* EX_TEMPFAIL: a pre-start hook failed or timed out */

#define HOOKS_DEFAULT_DIR "/etc/pi-agent/hooks"
#define HOOKS_DEFAULT_TIMEOUT_S 30
#define HOOKS_MAX_TIMEOUT_S 3600
/* The most a hook may write to PI_AGENT_ENV_FILE. */
#define HOOKS_ENV_FILE_MAX (64 * 1024)

#define HOOK_PHASE_PRE_START "pre-start"
#define HOOK_PHASE_POST_READY "post-ready"
#define HOOK_PHASE_PRE_STOP "pre-stop"
#define HOOK_PHASE_POST_STOP "post-stop"

struct childenv;
struct loop;
struct agent_state;
struct hook_run;

/* The hook phases under way. The caller owns it (zero-initialised storage
 * that outlives every phase, e.g. in struct agent) and passes it to every
 * call below; the module keeps no state of its own. */
struct hooks {
    struct hook_run *active;   /* phases not over yet */
};

struct hooks_config {
    char dir[1024];       /* PI_AGENT_HOOKS_DIR, absolute */
    unsigned timeout_s;   /* PI_AGENT_HOOK_TIMEOUT_SECONDS, 1..3600 */
    bool warn_only;       /* PI_AGENT_HOOK_FAILURE=warn (default fail) */
};

/* Reads PI_AGENT_HOOKS_DIR, PI_AGENT_HOOK_TIMEOUT_SECONDS and
 * PI_AGENT_HOOK_FAILURE. Returns 0, or -1 with err naming the variable. */
int hooks_config_load(struct hooks_config *cfg, struct config_error *err);

/* Synchronous, before the loop runs or after it ended (pre-start, post-stop):
 * the same engine as hooks_run_async, on a loop of its own driven until the
 * phase is over (SIGCHLD is blocked meanwhile and read there; the caller's
 * signal mask is restored on return). For pre-start, env receives the hooks'
 * KEY=VALUE output (a later hook already sees what an earlier one added); for
 * other phases env is only read (NULL means the agent's own environ).
 * budget_ms caps the whole phase (0 = none); running out of it is a failure.
 * A SIGTERM or SIGINT pending (blocked) while the phase runs ends it early:
 * the running hook's group is killed, the rest are skipped, this is recorded
 * in state->hooks_failure, and 0 is returned with the signal left pending:
 * the caller must check for it (main exits 128+N without starting Tomcat).
 * Returns 0, or EXIT_HOOK_FAILED when a pre-start hook failed (exit status not
 * 0, killed, timed out, unreadable hooks directory, bad PI_AGENT_ENV_FILE
 * line) and PI_AGENT_HOOK_FAILURE is not warn; the first such failure stops
 * the phase. Each failure is logged once (an error when it stops the start,
 * a warning otherwise) and recorded in state->hooks_failure. A hook killed
 * for its time limit or a stop request is not waited for: the reaper
 * collects it. */
int hooks_run_sync(struct hooks *h, const struct hooks_config *cfg, const char *phase,
                   struct childenv *env, uint64_t budget_ms, struct agent_state *state);

/* Asynchronous, inside the loop (post-ready, pre-stop): hooks run one after
 * another, their exits come via reap_watch callbacks, their deadlines via
 * loop timers. done(ctx) is called once, always from the loop (never from
 * inside this call), when the phase is over: all ran, or the budget ran out
 * and the running hook's process group was killed. Failures are logged and
 * recorded in state->hooks_failure. budget_ms caps the phase (0 = none).
 * Returns 0 (done will be called) or -1 when nothing could be scheduled
 * (done will not be called). */
int hooks_run_async(struct hooks *h, struct loop *loop, const struct hooks_config *cfg,
                    const char *phase, char *const *envp, uint64_t budget_ms,
                    struct agent_state *state, void (*done)(void *ctx), void *ctx);

/* Ends every loop phase still running (after loop_run returned, e.g. Tomcat
 * died during post-ready hooks): kills the running hook's group, skips the
 * rest, records the failure; done is not called. Uses the loop the phases
 * were started on, so call it before loop_free. hooks_run_sync calls it
 * first, so main needs it only when it runs no post-stop phase. Post-ready
 * hooks not started yet are also skipped once state->draining is set or
 * state->child_running is false. */
void hooks_abort_async(struct hooks *h);

/* ---- parts exposed for unit tests --------------------------------------- */

bool hooks_phase_known(const char *phase);

/* Pure: how long the next hook may run. deadline_ms is the phase's end on the
 * loop_now_ms clock (0 = no budget). Returns 0 when the budget is used up. */
uint64_t hooks_time_limit_ms(unsigned timeout_s, uint64_t deadline_ms, uint64_t now_ms);

/* Pure: "exit 3", "signal 9", "timed out after 30000 ms" into buf. Returns
 * true when the outcome counts as success (exit 0, not timed out). */
bool hooks_describe_outcome(int wait_status, bool timed_out, uint64_t limit_ms, char *buf,
                            size_t cap);

#endif
