/* readiness: see readiness.h. */
#include "readiness.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "probe.h"
#include "state.h"

void readiness_policy_make(struct health_policy *policy, bool licence_required,
                           bool efs_over_fails)
{
    memset(policy, 0, sizeof *policy);
    policy->licence_required = licence_required;
    policy->efs_over_fails = efs_over_fails;
}

static void log_status(struct readiness *r)
{
    const struct health_verdict *v = &r->verdict;
    if (r->logged_once && r->logged_status == v->status)
        return;
    char failing[64] = "";
    for (int i = 0; i < HEALTH_CHECK_COUNT; i++) {
        if (!v->checks[i].blocking)
            continue;
        size_t n = strlen(failing);
        snprintf(failing + n, sizeof failing - n, "%s%s", n ? "," : "", v->checks[i].name);
    }
    log_info("health status", LF_STR("status", health_status_name(v->status)),
             LF_STR("failing", failing));
    r->logged_status = v->status;
    r->logged_once = true;
}

/* The state's change handler: every state_changed() ends here. */
static void readiness_derive(void *ctx)
{
    struct readiness *r = ctx;
    struct agent_state *st = r->state;

    if (r->probe != NULL)
        probe_sync_child(r->probe); /* a result about a previous child is dropped first */
    health_evaluate(st, &r->policy, &r->verdict);
    r->derived_version = st->version;
    log_status(r);
    if (r->verdict.ready && !st->ready_once) {
        st->ready_once = true;
        log_info("ready: /health answers 200");
        if (r->on_first_ready)
            r->on_first_ready(r->ctx);
    }
}

void readiness_attach(struct readiness *r, struct agent_state *state,
                      const struct health_policy *policy,
                      void (*on_first_ready)(void *ctx), void *ctx)
{
    r->state = state;
    r->policy = *policy;
    r->on_first_ready = on_first_ready;
    r->ctx = ctx;
    r->logged_once = false;
    state->on_change = readiness_derive;
    state->on_change_ctx = r;
    state_changed(state); /* the state as it is now, after the start phases */
}

void readiness_detach(struct readiness *r)
{
    if (r->state != NULL && r->state->on_change_ctx == r) {
        r->state->on_change = NULL;
        r->state->on_change_ctx = NULL;
    }
}

const struct health_verdict *readiness_verdict(const struct readiness *r)
{
    return &r->verdict;
}
