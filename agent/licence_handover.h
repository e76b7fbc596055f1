/* licence_handover: how the dashboard gets what the licence resolved to.
 * PID 1 writes, in the run directory (PI_AGENT_RUN_DIR, local: /run):
 *   licence       the accepted licence (0600, owned by the dashboard's user)
 *   licence.json  the status, nothing secret, naming its writer (pid and
 *                 start time) so `pi-agent licence` can tell a live view
 *                 from a file left behind
 * each through a random O_EXCL temporary and a rename, and sets
 * PI_LICENCE_STATUS, PI_LICENCE_FILE (and, opted in, PI_LICENCE) in the
 * child's environment. The status JSON is built here for the CLI too. */
#ifndef PI_LICENCE_HANDOVER_H
#define PI_LICENCE_HANDOVER_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "childenv.h"
#include "config.h"
#include "licence_resolve.h"

#define LICENCE_HANDOVER_FILE "licence"
#define LICENCE_STATUS_FILE "licence.json"

/* The status as a JSON object (status, reason, source, the claims or nulls,
 * checked_at), with nothing secret in it; NULL when out of memory. */
cJSON *licence_status_object(const struct licence_state *st, const struct licence_claims *claims,
                             bool have_claims);
/* Prints o unformatted (malloc'd) and deletes it; NULL when o is NULL or
 * out of memory. */
char *licence_json_print(cJSON *o);

/* Writes licence.json and, with with_licence, the licence file (or removes
 * a previous one when there is no accepted licence); owner may be NULL.
 * Logs its own failures. Returns 1 when the licence file was written, 0 when
 * not, -1 when the directory cannot be used. */
int licence_handover_write(const char *run_dir, const struct licence_resolution *r,
                           const struct run_as *owner, bool with_licence);

/* Sets the child's licence variables after licence_handover_write returned
 * written: PI_LICENCE_STATUS always, PI_LICENCE_FILE only when the file was
 * written (else unset), PI_LICENCE with cfg->inline_env and an acceptable
 * licence. Logs its own failures. */
void licence_handover_env(const struct licence_config *cfg, const struct licence_resolution *r,
                          int written, struct childenv *env);

#endif
