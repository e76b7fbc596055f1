/* licence_service: the licence as PID 1 runs it. At start it resolves the
 * licence in a worker (licence_resolve.h; the worker's report comes back
 * over a pipe in a fixed wire format checked on arrival), hands the result
 * over (licence_handover.h) and records it in agent_state. In the loop it
 * re-evaluates expiry every PI_LICENCE_CHECK_SECONDS and refreshes from the
 * ALM every PI_LICENCE_REFRESH_SECONDS (jittered) and while the licence is
 * about to expire, when a customer key and PI_ALM_URL are configured.
 *
 * Its state is the struct below, owned by the caller (main's struct agent)
 * and passed to every call: no hidden globals. The status itself lives in
 * state->licence only. */
#ifndef PI_LICENCE_SERVICE_H
#define PI_LICENCE_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "childenv.h"
#include "config.h"
#include "licence_config.h"
#include "licence_resolve.h"
#include "state.h"

#define EXIT_LICENCE 77

struct loop;

struct licence_service {
    const struct licence_config *cfg;
    struct agent_state *state;
    bool has_owner;                 /* the licence file goes to owner */
    struct run_as owner;
    bool have_claims;               /* claims of the licence in use, for expiry */
    struct licence_claims claims;
    bool refreshing;                /* a refresh worker runs */
    uint64_t last_refresh_ms;       /* loop clock */
    long refresh_timer;             /* 0 when none */
    struct licence_resolve_opts refresh_opts; /* the refresh worker's argument */
};

/* Start phase, before the child starts, as root. Resolves the licence in a
 * worker, writes the hand-over (the licence file owned by run_as, which may
 * be NULL), caches an ALM licence on EFS, fills state->licence and the
 * child's licence variables in env. svc, cfg and state must outlive the
 * loop. Returns 0 to go on, or EXIT_LICENCE (77) when the status blocks the
 * start (licence_blocks_readiness with PI_AGENT_LICENCE_REQUIRED). */
int licence_start(struct licence_service *svc, const struct licence_config *cfg,
                  const struct run_as *run_as, struct agent_state *state, struct childenv *env);

/* The worker's report, the one message that crosses from the worker to
 * PID 1: a fixed header (magic, status, the state and claims) and the
 * licence bytes. write: 0, or -1 with errno. read: 0 with r filled (free it
 * with licence_resolution_free either way), or -1 when the bytes are not a
 * whole, consistent report: wrong magic or length, a status that is not the
 * outcome of a check or disagrees with its copy, too many modules. Strings
 * are cut to their buffers. */
int licence_report_write(int fd, const struct licence_resolution *r);
int licence_report_read(const void *data, size_t len, struct licence_resolution *r);

/* Inside the loop, after licence_start: arms the expiry check and, when
 * refreshable, the ALM refresh. Returns 0 or -1 (logged). */
int licence_attach(struct licence_service *svc, struct loop *loop);

#endif
