/* licence_resolve: what PI_LICENCE (or PI_LICENCE_URL) comes to, and the
 * status that follows. The decision lives here and only here: which form the
 * value has (licence_token.h), whether it is checked offline, exchanged with
 * the ALM (alm.h) with the EFS cache as fallback (licence_cache.h), passed
 * through to the dashboard, or fetched from a licence URL.
 *
 * It blocks on the network and on EFS: the agent runs it in a worker
 * (licence_service.h); `pi-agent licence` and `check` run it in-process
 * with write_cache false. It keeps no state between calls. */
#ifndef PI_LICENCE_RESOLVE_H
#define PI_LICENCE_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>

#include "licence_config.h"
#include "licence_token.h"
#include "state.h"

/* What resolving came to. licence is what the dashboard gets (malloc'd,
 * a secret: wiped by licence_resolution_free), set only when the status is
 * acceptable. */
struct licence_resolution {
    struct licence_state st;       /* status, reason, source and the claims' summary */
    bool have_claims;              /* claims of a token whose signature held */
    struct licence_claims claims;
    char *licence;
    size_t len;
};

struct licence_resolve_opts {
    const struct licence_config *cfg;
    bool write_cache;  /* false for `pi-agent licence` and `check` */
    bool refresh_only; /* the daily refresh: ALM only, no fallback */
};

/* Empty, status LS_UNKNOWN, users unknown. */
void licence_resolution_init(struct licence_resolution *r);
/* Wipes and frees the licence. */
void licence_resolution_free(struct licence_resolution *r);
/* Settles status, source and reason. */
void licence_resolution_set(struct licence_resolution *r, enum licence_status status,
                            const char *source, const char *reason);
/* Neither PI_LICENCE nor PI_LICENCE_URL: LS_MISSING with the hint. */
void licence_resolution_missing(struct licence_resolution *r);

/* Resolves o->cfg into r (which it initialises). Always settles a status. */
void licence_resolve(const struct licence_resolve_opts *o, struct licence_resolution *r);

#endif
