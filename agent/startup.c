/* startup: see startup.h. */
#include "startup.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "loop.h"
#include "state.h"

struct startup {
    struct loop *loop;
    unsigned timeout_s;
    struct agent_state *state;
};

uint64_t startup_budget_left_ms(bool child_running, uint64_t child_started_ms, uint64_t now_ms,
                                unsigned timeout_s)
{
    uint64_t budget = (uint64_t)timeout_s * 1000u;
    if (!child_running)
        return budget; /* waiting for a restart: the next child gets the whole budget */
    uint64_t ran = now_ms > child_started_ms ? now_ms - child_started_ms : 0;
    return ran >= budget ? 0 : budget - ran;
}

static void on_budget_timer(struct loop *loop, void *ctx)
{
    struct startup *s = ctx;
    struct agent_state *st = s->state;

    if (st->ready_once || st->startup_timed_out || st->draining)
        return; /* ready once, or going away anyway: the budget is over for good */
    uint64_t left = startup_budget_left_ms(st->child_running, st->child_started_ms, loop_now_ms(),
                                           s->timeout_s);
    if (left > 0) {
        if (loop_timer_add(loop, left, 0, on_budget_timer, s) < 0)
            log_error("cannot schedule the startup budget check");
        return;
    }
    snprintf(st->live_reason, sizeof st->live_reason,
             "not ready within PI_AGENT_STARTUP_TIMEOUT_SECONDS=%u after the dashboard started",
             s->timeout_s);
    st->startup_timed_out = true;
    log_error("startup budget ran out: sending SIGQUIT for a thread dump; /live answers 503",
              LF_INT("pid", st->child_pid), LF_INT("timeout_s", s->timeout_s),
              LF_STR("probe", st->probe.reason));
    if (st->child_pid > 0 && kill(st->child_pid, SIGQUIT) != 0)
        log_warn("cannot send SIGQUIT to the child", LF_INT("pid", st->child_pid),
                 LF_STR("error", strerror(errno)));
    state_changed(st);
}

int startup_attach(struct loop *loop, unsigned timeout_s, struct agent_state *state)
{
    static struct startup s; /* one per process, lives as long as the loop */
    if (timeout_s == 0)
        return 0;
    s.loop = loop;
    s.timeout_s = timeout_s;
    s.state = state;
    if (loop_timer_add(loop, (uint64_t)timeout_s * 1000u, 0, on_budget_timer, &s) < 0) {
        log_error("cannot schedule the startup budget check");
        return -1;
    }
    return 0;
}
