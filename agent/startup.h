/* startup: the startup budget (PI_AGENT_STARTUP_TIMEOUT_SECONDS). When the
 * child has not been ready that long after it started, one error line, one
 * SIGQUIT to the child (a JVM writes a thread dump to its log, so the hang
 * can be read afterwards) and from then on /live answers 503 with the
 * reason, so that ECS replaces the task. Once ready, it never applies
 * again; a restarted child gets the budget afresh until the first ready. */
#ifndef PI_STARTUP_H
#define PI_STARTUP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;
struct agent_state;

/* Pure: what to do at now_ms (monotonic). Returns 0 when the budget ran
 * out, else the milliseconds to wait before looking again. */
uint64_t startup_budget_left_ms(bool child_running, uint64_t child_started_ms, uint64_t now_ms,
                                unsigned timeout_s);

/* Watches the budget when timeout_s > 0 (a no-op otherwise). Returns 0, or
 * -1 when its timer cannot be set. */
int startup_attach(struct loop *loop, unsigned timeout_s, struct agent_state *state);

#endif
