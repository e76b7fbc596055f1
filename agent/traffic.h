/* traffic: Tomcat's own connections, seen in the kernel's socket table
 * without touching the JVM. Every PI_AGENT_PROBE_INTERVAL_SECONDS one sample
 * counts the established TCP connections whose local port is Tomcat's (the
 * port of PI_AGENT_PROBE_URL), IPv4 and IPv6, and sums the bytes they
 * received (tcp_info's tcpi_bytes_received), leaving out the agent's own
 * probe. Results go to state->traffic for /metrics and EMF.
 *
 * Sources (PI_AGENT_TRAFFIC): auto (default) dumps NETLINK_SOCK_DIAG and
 * falls back to /proc/net/tcp and tcp6 (connections only, no bytes) when the
 * kernel or a sandbox refuses netlink; netlink never falls back; proc uses
 * /proc from the start; off samples nothing. The sample runs in PID 1: the dump is read from a
 * non-blocking socket registered with the loop, a few datagrams per
 * callback, with a 2 s limit, so the loop is never held for a whole dump.
 *
 * Received bytes stay monotonic across connection churn: each sample adds
 * what every connection received since the previous sample (matched by the
 * kernel's socket cookie), and a connection that closed keeps what it was
 * last seen with. The dump also lists Tomcat's closing connections, so bytes
 * that came just before a close count, and a connection that lived between
 * two samples leaves a trace (TIME_WAIT) that counts as activity; its bytes
 * are not seen.
 *
 * Drain until quiet (PI_AGENT_DRAIN_QUIET_SECONDS): during a drain the
 * sample runs every second and the drain may end once the samples show
 * Tomcat received nothing (no byte, no new connection; with /proc: no
 * connection at all) for that long, counted from the stop at the earliest. */
#ifndef PI_TRAFFIC_H
#define PI_TRAFFIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct loop;
struct agent_state;
struct probe_config;
struct emf_config;
struct probe_peer;
struct traffic_state;

enum traffic_source { TRAFFIC_AUTO, TRAFFIC_NETLINK, TRAFFIC_PROC, TRAFFIC_OFF };

struct traffic_config {
    enum traffic_source source;  /* PI_AGENT_TRAFFIC: auto (default), proc, off */
    uint16_t port;               /* Tomcat's: the probe URL's port */
    unsigned interval_s;         /* PI_AGENT_PROBE_INTERVAL_SECONDS */
    unsigned emf_interval_s;     /* the rate is averaged over this */
    unsigned drain_quiet_s;      /* PI_AGENT_DRAIN_QUIET_SECONDS, 0 = off (default) */
};

/* Reads PI_AGENT_TRAFFIC and PI_AGENT_DRAIN_QUIET_SECONDS; needs the probe's
 * settings (Tomcat's port, the sample interval), EMF's interval and the drain
 * maximum. Returns 0, or -1 with err naming the variable. */
int traffic_config_load(struct traffic_config *cfg, const struct probe_config *probe,
                        const struct emf_config *emf, unsigned drain_s,
                        struct config_error *err);

/* ---- pure parts ---------------------------------------------------------- */

/* One connection as the accounting keeps it. */
struct traffic_conn {
    uint64_t key;      /* socket cookie (netlink) or inode (/proc) */
    uint64_t bytes;    /* bytes received so far */
};

/* Pure: sorts cur by key and returns what the connections in cur received
 * since prev (sorted by key): the growth of each connection found in both,
 * the whole of a connection new in cur. *fresh is the count of new ones. */
uint64_t traffic_account(const struct traffic_conn *prev, size_t nprev, struct traffic_conn *cur,
                         size_t ncur, size_t *fresh);

/* Pure: the drain may end once the samples show nothing received for
 * quiet_ms, counted from the later of the stop and the last activity, up to
 * the last successful sample. */
bool traffic_quiet(uint64_t stop_ms, uint64_t last_activity_ms, uint64_t last_sample_ms,
                   uint64_t quiet_ms);

/* Pure: when the last traffic was seen, for a log line: an ISO 8601 UTC
 * time, or "never" when no sample saw any. */
void traffic_describe_last(const struct traffic_state *ts, char *buf, size_t cap);

/* ---- one sample, blocking (benchmarks and tests) ------------------------- */

struct traffic_sample {
    enum traffic_source source;  /* the one that answered */
    uint64_t connections;        /* established */
    uint64_t closing;            /* netlink: connections closing or closed (TIME_WAIT) */
    bool has_bytes;
    uint64_t bytes;              /* received on the connections listed now */
};

/* Runs one whole sample of port with source (TRAFFIC_NETLINK or
 * TRAFFIC_PROC), leaving out connections from the exclude ends. Returns 0,
 * or -1 with errno set. */
int traffic_sample_once(enum traffic_source source, uint16_t port,
                        const struct probe_peer *exclude, size_t nexclude,
                        struct traffic_sample *out);

/* ---- in the loop ---------------------------------------------------------- */

struct traffic;

/* Starts sampling (first sample at once). Returns the handle (also when
 * sampling is off), or NULL when the timer cannot be added. */
struct traffic *traffic_start(struct loop *loop, const struct traffic_config *cfg,
                              struct agent_state *state);

/* Called after a SIGTERM: samples every second from now on and calls
 * on_quiet once, as soon as the quiet rule holds. Returns false (and never
 * calls on_quiet) when the quiet drain is off or sampling is off. */
bool traffic_drain_begin(struct traffic *t, uint64_t stop_ms, void (*on_quiet)(void *ctx),
                         void *ctx);

void traffic_free(struct traffic *t);

#endif
