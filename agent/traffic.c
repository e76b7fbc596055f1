/* traffic: see traffic.h. A sample is a `struct dump`: the netlink dump of
 * IPv4 then IPv6 on one socket, or the two /proc files, collecting the
 * matching connections into an array that the accounting compares with the
 * previous sample's. */
#include "traffic.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "emf.h"
#include "probe.h"
#include "log.h"
#include "loop.h"
#include "sockdiag.h"
#include "state.h"
#include "util.h"

#define NETLINK_SOCK_DIAG_ 4
#define SAMPLE_LIMIT_MS 2000         /* a dump not finished by then is abandoned */
#define DRAIN_SAMPLE_MS 1000         /* sampling during a quiet drain */
#define DATAGRAMS_PER_CALLBACK 16    /* the loop serves others between them */
#define MAX_TRACKED (1u << 18)       /* connections whose bytes are followed */

/* linux/netlink.h: musl has no kernel headers. */
struct sockaddr_nl_ {
    sa_family_t nl_family;
    unsigned short nl_pad;
    uint32_t nl_pid;
    uint32_t nl_groups;
};

/* ---- settings ------------------------------------------------------------ */

int traffic_config_load(struct traffic_config *cfg, const struct probe_config *probe,
                        const struct emf_config *emf, unsigned drain_s, struct config_error *err)
{
    static const char *const sources[] = { "auto", "netlink", "proc", "off", NULL };
    unsigned long long v;
    int choice;

    memset(cfg, 0, sizeof *cfg);
    if (config_env_choice("PI_AGENT_TRAFFIC", TRAFFIC_AUTO, sources, &choice, err) != 0)
        return -1;
    cfg->source = (enum traffic_source)choice;
    cfg->interval_s = probe->interval_s;
    cfg->emf_interval_s = emf->interval_s;
    if (!probe->enabled) {
        if (config_env_str("PI_AGENT_TRAFFIC") != NULL && cfg->source != TRAFFIC_OFF)
            return config_fail(err, "PI_AGENT_TRAFFIC", "needs Tomcat's port from "
                               "PI_AGENT_PROBE_URL, which is off (set the URL, or "
                               "PI_AGENT_TRAFFIC=off)");
        cfg->source = TRAFFIC_OFF;
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&probe->target.addr;
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&probe->target.addr;
        cfg->port = ntohs(probe->target.addr.ss_family == AF_INET6 ? s6->sin6_port : s4->sin_port);
    }

    if (config_env_uint("PI_AGENT_DRAIN_QUIET_SECONDS", 0, 0, 3600, &v, err) != 0)
        return -1;
    cfg->drain_quiet_s = (unsigned)v;
    if (cfg->drain_quiet_s > 0 && cfg->source == TRAFFIC_OFF)
        return config_fail(err, "PI_AGENT_DRAIN_QUIET_SECONDS", "needs Tomcat's traffic, but %s",
                           probe->enabled ? "PI_AGENT_TRAFFIC is off"
                                                 : "PI_AGENT_PROBE_URL is off (it gives Tomcat's port)");
    if (cfg->drain_quiet_s > 0 && cfg->drain_quiet_s >= drain_s)
        return config_fail(err, "PI_AGENT_DRAIN_QUIET_SECONDS",
                           "%u must be less than PI_AGENT_DRAIN_SECONDS (%u), the longest a drain "
                           "lasts: raise PI_AGENT_DRAIN_SECONDS", cfg->drain_quiet_s, drain_s);
    return 0;
}

static const char *source_name(enum traffic_source s)
{
    switch (s) {
    case TRAFFIC_NETLINK:
        return "netlink";
    case TRAFFIC_PROC:
        return "proc";
    case TRAFFIC_OFF:
        return "off";
    default:
        return "auto";
    }
}

/* ---- pure parts ---------------------------------------------------------- */

static int by_key(const void *a, const void *b)
{
    uint64_t x = ((const struct traffic_conn *)a)->key, y = ((const struct traffic_conn *)b)->key;
    return x < y ? -1 : x > y;
}

uint64_t traffic_account(const struct traffic_conn *prev, size_t nprev, struct traffic_conn *cur,
                         size_t ncur, size_t *fresh)
{
    uint64_t received = 0;
    size_t j = 0;

    *fresh = 0;
    if (ncur > 1)
        qsort(cur, ncur, sizeof *cur, by_key);
    for (size_t i = 0; i < ncur; i++) {
        while (j < nprev && prev[j].key < cur[i].key)
            j++;
        if (j < nprev && prev[j].key == cur[i].key) {
            if (cur[i].bytes > prev[j].bytes)
                received += cur[i].bytes - prev[j].bytes;
        } else {
            (*fresh)++;
            received += cur[i].bytes;
        }
    }
    return received;
}

bool traffic_quiet(uint64_t stop_ms, uint64_t last_activity_ms, uint64_t last_sample_ms,
                   uint64_t quiet_ms)
{
    uint64_t since = stop_ms > last_activity_ms ? stop_ms : last_activity_ms;
    return last_sample_ms >= since && last_sample_ms - since >= quiet_ms;
}

void traffic_describe_last(const struct traffic_state *ts, char *buf, size_t cap)
{
    time_t secs = (time_t)(ts->last_activity_wall_ms / 1000);
    struct tm tm;
    char when[32];
    if (ts->last_activity_wall_ms == 0 || gmtime_r(&secs, &tm) == NULL ||
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        snprintf(buf, cap, "never");
        return;
    }
    snprintf(buf, cap, "%s.%03uZ", when, (unsigned)(ts->last_activity_wall_ms % 1000));
}

/* ---- one sample ---------------------------------------------------------- */

struct dump {
    enum traffic_source source;       /* TRAFFIC_NETLINK or TRAFFIC_PROC */
    uint16_t port;
    const struct probe_peer *exclude;
    size_t nexclude;
    int fd;
    uint32_t seq;
    int family;                       /* the family being dumped */
    struct traffic_conn *conns;
    size_t n, cap;
    uint64_t connections;
    bool missing_bytes;               /* a socket came without tcpi_bytes_received */
    bool overflow;                    /* more than MAX_TRACKED connections */
    int err;
};

static void dump_init(struct dump *d, enum traffic_source source, uint16_t port,
                      const struct probe_peer *exclude, size_t nexclude)
{
    memset(d, 0, sizeof *d);
    d->source = source;
    d->port = port;
    d->exclude = exclude;
    d->nexclude = nexclude;
    d->fd = -1;
}

static void dump_close(struct dump *d)
{
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
    free(d->conns);
    d->conns = NULL;
    d->n = d->cap = 0;
}

static bool from_probe(const struct dump *d, const struct sockdiag_conn *c)
{
    for (size_t i = 0; i < d->nexclude; i++)
        if (d->exclude[i].port != 0 && d->exclude[i].port == c->remote_port &&
            memcmp(d->exclude[i].addr, c->remote_addr, 16) == 0)
            return true;
    return false;
}

static void on_conn(const struct sockdiag_conn *c, void *ctx)
{
    struct dump *d = ctx;
    bool established = c->state == SOCKDIAG_TCP_ESTABLISHED;
    /* /proc has no cookie for a closing socket (its inode is 0): there only
     * established connections are followed. */
    if (c->local_port != d->port || from_probe(d, c) || (!established && d->source != TRAFFIC_NETLINK))
        return;
    if (established)
        d->connections++;
    /* A socket in TIME_WAIT is a remnant without tcp_info: it only shows
     * that a connection existed (its bytes were counted while it lived). */
    if (d->source == TRAFFIC_NETLINK && !c->has_bytes && c->state != SOCKDIAG_TCP_TIME_WAIT)
        d->missing_bytes = true;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        struct traffic_conn *grown = cap <= MAX_TRACKED ? realloc(d->conns, cap * sizeof *grown) : NULL;
        if (grown == NULL) {
            d->overflow = true;
            return;
        }
        d->conns = grown;
        d->cap = cap;
    }
    d->conns[d->n++] = (struct traffic_conn){
        d->source == TRAFFIC_NETLINK ? c->cookie : c->inode, c->bytes_received
    };
}

static int nl_request(struct dump *d, int family)
{
    uint8_t req[SOCKDIAG_REQUEST_SIZE];
    struct sockaddr_nl_ kernel = { .nl_family = AF_NETLINK };
    d->family = family;
    d->seq++;
    size_t len = sockdiag_build_request(req, sizeof req, family, d->port, d->seq);
    ssize_t n;
    do
        n = sendto(d->fd, req, len, 0, (const struct sockaddr *)&kernel, sizeof kernel);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)len) {
        d->err = n < 0 ? errno : EIO;
        return -1;
    }
    return 0;
}

/* Opens the netlink socket and asks for the IPv4 dump. */
static int dump_start(struct dump *d)
{
    d->fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_SOCK_DIAG_);
    if (d->fd < 0) {
        d->err = errno;
        return -1;
    }
    return nl_request(d, AF_INET);
}

/* Reads up to max datagrams. Returns 1 when both dumps are done, 0 when
 * more is to come, -1 on failure (d->err). */
static int dump_step(struct dump *d, int max)
{
    /* The kernel fills a dump datagram up to 32 KiB less its own overhead
     * (netlink_recvmsg caps it): this holds any of them. One dump at a time
     * in this process. */
    static uint8_t buf[32768];
    for (int i = 0; i < max; i++) {
        ssize_t n = recv(d->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0) {
            d->err = n < 0 ? errno : EIO;
            return -1;
        }
        int kerr = 0;
        enum sockdiag_status st = sockdiag_parse(buf, (size_t)n, d->seq, on_conn, d, &kerr);
        bool no_ipv6 = st == SOCKDIAG_FAILED && d->family == AF_INET6 &&
                       (kerr == ENOENT || kerr == EAFNOSUPPORT || kerr == EPROTONOSUPPORT);
        if (st == SOCKDIAG_MALFORMED) {
            d->err = EPROTO;
            return -1;
        }
        if (st == SOCKDIAG_FAILED && !no_ipv6) {
            d->err = kerr;
            return -1;
        }
        if (st == SOCKDIAG_DONE && d->family == AF_INET) {
            if (nl_request(d, AF_INET6) != 0)
                return -1;
        } else if (st != SOCKDIAG_MORE) {
            return 1; /* IPv6 done, or a kernel without IPv6 */
        }
    }
    return 0;
}

/* One /proc file, read in pieces, every complete line parsed. */
static int proc_file(struct dump *d, const char *path, int family)
{
    char buf[16384];
    size_t have = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (family == AF_INET6 && errno == ENOENT)
            return 0; /* a kernel without IPv6 */
        d->err = errno;
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            d->err = errno;
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        have += (size_t)n;
        size_t used = sockdiag_proc_parse(buf, have, family, on_conn, d);
        memmove(buf, buf + used, have - used);
        have -= used;
        if (have == sizeof buf)
            have = 0; /* a line longer than the buffer is not a socket line */
    }
    close(fd);
    return 0;
}

static int dump_proc(struct dump *d)
{
    if (proc_file(d, "/proc/net/tcp", AF_INET) != 0 || proc_file(d, "/proc/net/tcp6", AF_INET6) != 0)
        return -1;
    return 0;
}

int traffic_sample_once(enum traffic_source source, uint16_t port,
                        const struct probe_peer *exclude, size_t nexclude,
                        struct traffic_sample *out)
{
    struct dump d;
    int rc = 0;

    memset(out, 0, sizeof *out);
    dump_init(&d, source == TRAFFIC_PROC ? TRAFFIC_PROC : TRAFFIC_NETLINK, port, exclude, nexclude);
    if (d.source == TRAFFIC_PROC) {
        rc = dump_proc(&d);
    } else if ((rc = dump_start(&d)) == 0) {
        int r;
        while ((r = dump_step(&d, DATAGRAMS_PER_CALLBACK)) == 0) {
            struct pollfd pfd = { d.fd, POLLIN, 0 };
            int p = poll(&pfd, 1, SAMPLE_LIMIT_MS);
            if (p == 0 || (p < 0 && errno != EINTR)) {
                d.err = p == 0 ? ETIMEDOUT : errno;
                r = -1;
                break;
            }
        }
        rc = r < 0 ? -1 : 0;
    }
    if (rc == 0) {
        out->source = d.source;
        out->connections = d.connections;
        out->closing = d.n - (d.connections < d.n ? d.connections : d.n);
        out->has_bytes = d.source == TRAFFIC_NETLINK && !d.missing_bytes;
        for (size_t i = 0; i < d.n; i++)
            out->bytes += d.conns[i].bytes;
    }
    int saved = d.err;
    dump_close(&d);
    errno = saved;
    return rc;
}

/* ---- in the loop ---------------------------------------------------------- */

struct traffic {
    struct loop *loop;
    const struct traffic_config *cfg;
    struct agent_state *state;
    enum traffic_source source;       /* netlink, proc or off once resolved */
    bool netlink_proven;              /* a netlink sample succeeded once */
    long timer;
    long limit_timer;
    bool in_flight;
    struct dump d;
    uint64_t started_us;
    struct traffic_conn *prev;
    size_t nprev;
    bool warned_failing, warned_overflow;
    bool rate_started;
    uint64_t rate_start_ms, rate_start_bytes;
    bool draining;
    uint64_t stop_ms;
    void (*on_quiet)(void *ctx);
    void *quiet_ctx;
};

static void sample_start(struct traffic *t);

static void set_source(struct traffic *t, enum traffic_source s)
{
    t->source = s;
    snprintf(t->state->traffic.source, sizeof t->state->traffic.source, "%s", source_name(s));
}

static void sample_done(struct traffic *t)
{
    struct traffic_state *ts = &t->state->traffic;
    struct dump *d = &t->d;
    uint64_t now = loop_now_ms();
    size_t fresh;
    uint64_t received = traffic_account(t->prev, t->nprev, d->conns, d->n, &fresh);

    free(t->prev);
    t->prev = d->conns;   /* sorted by traffic_account: the next sample's reference */
    t->nprev = d->n;
    d->conns = NULL;
    d->n = d->cap = 0;

    if (t->source == TRAFFIC_NETLINK)
        t->netlink_proven = true;
    if (d->overflow && !t->warned_overflow) {
        log_warn("more Tomcat connections than the traffic count follows: bytes of the others "
                 "are not counted", LF_INT("connections", d->connections), LF_INT("followed", MAX_TRACKED));
        t->warned_overflow = true;
    }
    ts->connections = d->connections;
    ts->has_bytes = t->source == TRAFFIC_NETLINK && !d->missing_bytes;
    if (ts->has_bytes)
        ts->received_bytes += received;
    bool active = ts->has_bytes ? received > 0 || fresh > 0 : d->connections > 0;
    if (active) {
        ts->last_activity_ms = now;
        ts->last_activity_wall_ms = wall_now_ms();
    }
    ts->last_sample_ms = now;
    ts->sample_seconds = (double)(util_mono_us() - t->started_us) / 1e6;
    ts->sampled = true;
    if (ts->failing)
        log_info("Tomcat traffic sample recovered", LF_STR("source", ts->source));
    ts->failing = false;
    t->warned_failing = false;

    /* Bytes per second over about one EMF interval, so the EMF value covers
     * the period its line stands for. */
    uint64_t window = (uint64_t)(t->cfg->emf_interval_s ? t->cfg->emf_interval_s : 60) * 1000u;
    if (!t->rate_started) {
        t->rate_started = true;
        t->rate_start_ms = now;
        t->rate_start_bytes = ts->received_bytes;
    } else if (now - t->rate_start_ms >= window) {
        ts->received_bytes_per_s = (double)(ts->received_bytes - t->rate_start_bytes) * 1000.0 /
                                   (double)(now - t->rate_start_ms);
        ts->has_rate = ts->has_bytes;
        t->rate_start_ms = now;
        t->rate_start_bytes = ts->received_bytes;
    }
    log_debug("Tomcat traffic sampled", LF_INT("connections", ts->connections),
              LF_INT("received_bytes", ts->received_bytes), LF_INT("new_connections", fresh),
              LF_DOUBLE("sample_s", ts->sample_seconds));
    state_changed(t->state);

    if (t->draining && t->on_quiet &&
        traffic_quiet(t->stop_ms, ts->last_activity_ms, ts->last_sample_ms,
                      (uint64_t)t->cfg->drain_quiet_s * 1000u)) {
        void (*cb)(void *) = t->on_quiet;
        t->on_quiet = NULL;
        cb(t->quiet_ctx);
    }
}

static bool netlink_refused(int err)
{
    return err == EPERM || err == EACCES || err == EPROTONOSUPPORT || err == EAFNOSUPPORT ||
           err == ENOENT || err == EOPNOTSUPP || err == ENOSYS || err == EINVAL;
}

static void sample_failed(struct traffic *t, int err)
{
    struct traffic_state *ts = &t->state->traffic;
    if (t->source == TRAFFIC_NETLINK && t->cfg->source == TRAFFIC_AUTO && !t->netlink_proven &&
        netlink_refused(err)) {
        log_warn("netlink socket diagnostics refused: counting Tomcat's connections from "
                 "/proc/net/tcp instead (received bytes are not known there)",
                 LF_STR("error", strerror(err)));
        set_source(t, TRAFFIC_PROC);
        sample_start(t);
        return;
    }
    ts->failing = true;
    state_changed(t->state);
    if (!t->warned_failing)
        log_warn("Tomcat traffic sample failed", LF_STR("source", ts->source),
                 LF_STR("error", strerror(err)));
    t->warned_failing = true;
}

static void dump_end(struct traffic *t)
{
    if (t->d.fd >= 0)
        loop_del_fd(t->loop, t->d.fd);
    if (t->limit_timer > 0)
        loop_timer_cancel(t->loop, t->limit_timer);
    t->limit_timer = 0;
    t->in_flight = false;
}

static void on_dump_readable(struct loop *loop, int fd, uint32_t events, void *ctx)
{
    struct traffic *t = ctx;
    (void)loop;
    (void)fd;
    (void)events;
    int r = dump_step(&t->d, DATAGRAMS_PER_CALLBACK);
    if (r == 0)
        return;
    dump_end(t);
    if (r > 0) {
        sample_done(t);
        dump_close(&t->d);
    } else {
        int err = t->d.err;
        dump_close(&t->d); /* before a fallback sample reuses t->d */
        sample_failed(t, err);
    }
}

static void on_dump_limit(struct loop *loop, void *ctx)
{
    struct traffic *t = ctx;
    (void)loop;
    t->limit_timer = 0;
    dump_end(t);
    dump_close(&t->d);
    sample_failed(t, ETIMEDOUT);
}

static void sample_start(struct traffic *t)
{
    struct dump *d = &t->d;
    if (t->in_flight || t->source == TRAFFIC_OFF)
        return;
    dump_init(d, t->source, t->cfg->port, t->state->probe.recent, PROBE_RECENT_PEERS);
    t->started_us = util_mono_us();
    if (t->source == TRAFFIC_PROC) {
        int rc = dump_proc(d), err = d->err;
        if (rc == 0)
            sample_done(t);
        dump_close(d);
        if (rc != 0)
            sample_failed(t, err);
        return;
    }
    if (dump_start(d) != 0 || loop_add_fd(t->loop, d->fd, EPOLLIN, on_dump_readable, t) != 0) {
        int err = d->err ? d->err : errno;
        dump_close(d);
        sample_failed(t, err);
        return;
    }
    t->in_flight = true;
    t->limit_timer = loop_timer_add(t->loop, SAMPLE_LIMIT_MS, 0, on_dump_limit, t);
    if (t->limit_timer < 0) {
        t->limit_timer = 0;
        dump_end(t);
        dump_close(d);
        sample_failed(t, ENOMEM);
    }
}

static void on_tick(struct loop *loop, void *ctx)
{
    (void)loop;
    sample_start(ctx);
}

static int arm(struct traffic *t, uint64_t every_ms)
{
    if (t->timer > 0)
        loop_timer_cancel(t->loop, t->timer);
    t->timer = loop_timer_add(t->loop, 0, every_ms, on_tick, t);
    return t->timer < 0 ? -1 : 0;
}

struct traffic *traffic_start(struct loop *loop, const struct traffic_config *cfg,
                              struct agent_state *state)
{
    struct traffic *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->loop = loop;
    t->cfg = cfg;
    t->state = state;
    t->d.fd = -1;
    set_source(t, cfg->source == TRAFFIC_PROC ? TRAFFIC_PROC
                  : cfg->source == TRAFFIC_OFF ? TRAFFIC_OFF : TRAFFIC_NETLINK);
    if (t->source == TRAFFIC_OFF) {
        log_info("Tomcat traffic count off", LF_STR("reason", cfg->port ? "PI_AGENT_TRAFFIC=off"
                                                                  : "PI_AGENT_PROBE_URL=off"));
        return t;
    }
    if (arm(t, (uint64_t)cfg->interval_s * 1000u) != 0) {
        log_error("cannot start the Tomcat traffic timer");
        free(t);
        return NULL;
    }
    log_info("Tomcat traffic count started", LF_INT("port", cfg->port),
             LF_STR("source", cfg->source == TRAFFIC_AUTO ? "netlink, else /proc" : state->traffic.source),
             LF_INT("interval_s", cfg->interval_s), LF_INT("drain_quiet_s", cfg->drain_quiet_s));
    return t;
}

bool traffic_drain_begin(struct traffic *t, uint64_t stop_ms, void (*on_quiet)(void *ctx),
                         void *ctx)
{
    if (t == NULL || t->source == TRAFFIC_OFF || t->cfg->drain_quiet_s == 0)
        return false;
    t->draining = true;
    t->stop_ms = stop_ms;
    t->on_quiet = on_quiet;
    t->quiet_ctx = ctx;
    uint64_t every = (uint64_t)t->cfg->interval_s * 1000u;
    if (arm(t, every < DRAIN_SAMPLE_MS ? every : DRAIN_SAMPLE_MS) != 0) {
        t->on_quiet = NULL;
        return false;
    }
    return true;
}

void traffic_free(struct traffic *t)
{
    if (t == NULL)
        return;
    if (t->timer > 0)
        loop_timer_cancel(t->loop, t->timer);
    if (t->in_flight)
        dump_end(t);
    dump_close(&t->d);
    free(t->prev);
    free(t);
}
