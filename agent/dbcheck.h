/* dbcheck: is the repository database reachable from this task? When
 * PI_DB_HOST is set (the dashboard's own variable), every probe interval the
 * agent checks that PI_DB_HOST:PI_DB_PORT (default 3306) accepts a TCP
 * connection, from the loop, non-blocking and within DBCHECK_TIMEOUT_MS.
 * A name is looked up in a short-lived worker (getaddrinfo blocks), again
 * after a failure and at least every DBCHECK_RESOLVE_EVERY_MS.
 *
 * The connection is never completed from the server's point of view: the
 * final ACK of the handshake is held back (TCP_QUICKACK off) and the socket
 * is reset on close, so MariaDB never accepts it and never counts an
 * aborted connection against this host (max_connect_errors).
 *
 * The result lands in state->database for /health, /metrics and EMF; it
 * never decides readiness: a database outage must not fail every task at
 * once. A change of status is logged once. */
#ifndef PI_DBCHECK_H
#define PI_DBCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config.h"
#include "state.h"

#define DBCHECK_DEFAULT_PORT 3306
#define DBCHECK_TIMEOUT_MS 2000
#define DBCHECK_RESOLVE_EVERY_MS 60000
#define DBCHECK_ADDRS_MAX 4

struct loop;
struct agent_state;

/* "unknown", "starting", "ok", "failing", "misconfigured": the one name table. */
const char *database_status_name(enum database_status s);

struct dbcheck_config {
    bool enabled;          /* PI_DB_HOST is set */
    char host[254];        /* PI_DB_HOST */
    unsigned port;         /* PI_DB_PORT, 0 when it is not a port */
    char problem[160];     /* why the check cannot run ("" when it can) */
};

/* Reads PI_DB_HOST and PI_DB_PORT. Never fails the start: the variables are
 * the dashboard's; a bad value is reported as the check's status instead. */
void dbcheck_config_load(struct dbcheck_config *cfg);

/* Pure: the settings from the two values (either may be NULL). */
void dbcheck_config_parse(const char *host, const char *port, struct dbcheck_config *cfg);

/* Starts checking every interval_s (first check at once). Returns 0 with
 * *out the check's handle (NULL when the check is off or misconfigured:
 * nothing runs), or -1 when it cannot start. The handle lives as long as the
 * loop: the agent holds it until it exits. */
struct dbcheck;
int dbcheck_start(struct loop *loop, const struct dbcheck_config *cfg, unsigned interval_s,
                  struct agent_state *state, struct dbcheck **out);

#endif
