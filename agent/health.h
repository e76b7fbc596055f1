/* health: the HTTP/1.1 endpoint the ALB, ECS and people ask. It lives in the
 * agent's event loop: non-blocking accept, a fixed connection table that
 * makes room by evicting connections waiting for a request (oldest first)
 * and caps what one source address may hold, one deadline per request (a
 * client that does not send a full request within
 * PI_AGENT_HEALTH_IDLE_TIMEOUT_SECONDS is dropped, however slowly it
 * dribbles), keep-alive and pipelining. Work per loop wake-up is bounded
 * (accepts per turn, reads per connection per turn).
 *
 * The same answers are served on a unix socket, run_dir/health.sock (0600,
 * the agent's own uid), with a small table of its own: `pi-agent health`
 * asks there first, so remote clients can never crowd out the container
 * check.
 * Routes: GET/HEAD /health (readiness), /live (liveness), /metrics
 * (Prometheus). Answers come from struct agent_state only. */
#ifndef PI_HEALTH_H
#define PI_HEALTH_H

#include <stdbool.h>

#include "config.h"
#include "health_report.h"

#define HEALTH_DEFAULT_PORT 8225
#define HEALTH_SOCKET_NAME "health.sock"
#define HEALTH_LOCAL_MAX_CONNECTIONS 8 /* the unix socket's own table */

struct loop;
struct agent_state;
struct readiness;

struct health_config {
    char addr[64];               /* PI_AGENT_HEALTH_ADDR, default 0.0.0.0 */
    unsigned port;               /* PI_AGENT_HEALTH_PORT, default 8225, 0 = off */
    unsigned max_connections;    /* PI_AGENT_HEALTH_MAX_CONNECTIONS, default 256 */
    unsigned max_per_peer;       /* PI_AGENT_HEALTH_MAX_PER_ADDRESS, default max(1/8 of
                                  * the table, 16), never more than the table */
    char run_dir[224];           /* PI_AGENT_RUN_DIR (health.sock), default /run/pi-agent */
    unsigned idle_timeout_s;     /* PI_AGENT_HEALTH_IDLE_TIMEOUT_SECONDS, default 5 */
};

/* Reads every variable above (the health server's own: the probe, EMF,
 * readiness policy and drain have theirs in probe.h, emf.h, readiness.h and
 * config.h). Returns 0, or -1 with err naming the variable. */
int health_config_load(struct health_config *cfg, struct config_error *err);

struct health_server;

/* PI_AGENT_HEALTH_PORT=0 disables the listener. The server decides
 * nothing: /health renders readiness's cached verdict (readiness.h), again
 * only after state->version moved. Returns NULL on failure (the bind error
 * is logged naming PI_AGENT_HEALTH_ADDR/PORT). */
struct health_server *health_server_start(struct loop *loop, const struct health_config *cfg,
                                          struct agent_state *state,
                                          const struct readiness *readiness);
void health_server_free(struct health_server *srv);

/* `pi-agent health [--port N]` (health_client.c): exit 0 on 200, else 1.
 * Without --port it asks run_dir/health.sock first, then TCP. */
int health_command(int argc, char **argv);

#endif
