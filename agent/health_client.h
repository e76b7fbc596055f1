/* health_client: `pi-agent health [--port N]`, the container health check
 * (Docker HEALTHCHECK, ECS healthCheck) without curl in the image. It asks
 * GET /health (or /live with --live) on the local endpoint and exits 0 on
 * 200, 1 otherwise (also on
 * any error: Docker reserves 2), within 2 s, printing one line:
 *   "200 ok"  or  "503 starting: tomcat (waiting for the first probe to pass)" */
#ifndef PI_HEALTH_CLIENT_H
#define PI_HEALTH_CLIENT_H

#include <stddef.h>

#define HEALTH_CLIENT_TIMEOUT_MS 2000

/* argv[0] is the subcommand ("health"); options follow. */
int health_command(int argc, char **argv);

/* Pure: reads a raw HTTP response to GET /health and writes the one-line
 * summary. Returns the HTTP status, or -1 when resp is not an HTTP response
 * (line then says why). */
int health_client_summary(const char *resp, size_t len, char *line, size_t cap);

#endif
