/* probe: the agent's own check of Tomcat. Every PI_AGENT_PROBE_INTERVAL_SECONDS
 * it sends `GET <path>` to PI_AGENT_PROBE_URL over a non-blocking socket
 * registered with the loop, and records in state->probe whether a 2xx status
 * line came back within the time limit (2 s). Only the status line is read.
 * Status words: "starting" until the first pass, then "ok" or "failing";
 * "disabled" when PI_AGENT_PROBE_URL=off (the check then passes). */
#ifndef PI_PROBE_H
#define PI_PROBE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define PROBE_TIMEOUT_MS 2000
#define PROBE_DEFAULT_URL "http://127.0.0.1:8224/pi/version"

#include "config.h"
#include "state.h"

struct loop;
struct agent_state;

/* A parsed http:// URL whose host is an IP literal or localhost: the probe
 * never resolves names (that would block the loop). */
struct probe_target {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char host_header[80];  /* "127.0.0.1:8224", "[::1]:8224" */
    char path[512];        /* "/pi/version" (query kept) */
};

struct probe_config {
    bool enabled;                /* PI_AGENT_PROBE_URL is not "off" */
    char url[512];               /* PI_AGENT_PROBE_URL */
    struct probe_target target;  /* parsed url */
    unsigned interval_s;         /* PI_AGENT_PROBE_INTERVAL_SECONDS, default 5 */
};

/* Reads the variables above. Returns 0, or -1 with err naming the variable
 * (never echoing a URL that holds user:password@). */
int probe_config_load(struct probe_config *cfg, struct config_error *err);

/* "none", "starting", "ok", "failing": the probe's one name table. */
const char *probe_status_name(enum probe_status s);

/* Pure. Returns 0, or -1 with *why set to a static explanation. */
int probe_parse_url(const char *url, struct probe_target *out, const char **why);

/* Pure: the status code of an HTTP/1.x status line at the start of buf, 0
 * when buf holds no complete status line yet, -1 when it is not HTTP. */
int probe_status_code(const char *buf, size_t len);

struct probe;

/* Starts probing (first probe at once) and returns the probe's handle, or
 * NULL (logged) when the timer cannot be added. With the probe disabled it
 * only marks state->probe. */
struct probe *probe_start(struct loop *loop, const struct probe_config *cfg,
                          struct agent_state *state);

/* Stops probing (an answer in flight is dropped) and frees pr; NULL is fine. */
void probe_free(struct probe *pr);

/* Called by readiness before it decides (pr may be NULL): when the child was
 * restarted since the last probe result, that result is dropped (status back
 * to "starting"), so a new Tomcat is never reported ready on its
 * predecessor's probe. */
void probe_sync_child(struct probe *pr);

#endif
