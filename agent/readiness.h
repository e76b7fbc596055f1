/* readiness: the one place where the task's readiness is decided. Every
 * writer of struct agent_state ends its change with state_changed(), which
 * bumps state->version and calls readiness_derive(): the verdict (ready,
 * starting, unhealthy, draining, and which checks block) is computed there,
 * once per change, and cached here. Readers (the HTTP server, EMF) only read
 * the cached verdict; they never decide.
 *
 * The derivation also owns the moments a change makes: a change of status is
 * logged ("health status"), and the first time the task is ready
 * state->ready_once is set and on_first_ready runs (the post-ready hooks). */
#ifndef PI_READINESS_H
#define PI_READINESS_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "health_report.h"

struct agent_state;
struct probe;

struct readiness {
    struct agent_state *state;
    struct health_policy policy;        /* see readiness_policy_make */
    struct probe *probe;                /* may be NULL: its result is reset on a restart */
    void (*on_first_ready)(void *ctx);  /* may be NULL */
    void *ctx;
    struct health_verdict verdict;      /* for state->version == derived_version */
    uint64_t derived_version;
    bool logged_once;
    enum health_status logged_status;
};

/* The policy readiness applies, from its owners' settings: whether the
 * licence must be acceptable (PI_AGENT_LICENCE_REQUIRED, read by the licence
 * settings) and whether storage over budget blocks (PI_EFS_OVER_BUDGET, read
 * by the storage settings). Reads no variable itself. */
void readiness_policy_make(struct health_policy *policy, bool licence_required,
                           bool efs_over_fails);

/* Registers r as the state's change handler and derives the verdict for the
 * state as it is now. r must outlive every state_changed() call. */
void readiness_attach(struct readiness *r, struct agent_state *state,
                      const struct health_policy *policy,
                      void (*on_first_ready)(void *ctx), void *ctx);

/* Unregisters r (state_changed() then only bumps the version). */
void readiness_detach(struct readiness *r);

/* The cached verdict: never computed on read. */
const struct health_verdict *readiness_verdict(const struct readiness *r);

#endif
