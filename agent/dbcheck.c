/* dbcheck: see dbcheck.h. One attempt at a time: (look the name up,) connect,
 * reset. Each step is a loop callback; a one-shot timer ends an attempt that
 * has not finished within DBCHECK_TIMEOUT_MS. */
#include "dbcheck.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "state.h"
#include "util.h"
#include "util.h"
#include "worker.h"

/* ---- settings ----------------------------------------------------------- */

void dbcheck_config_parse(const char *host, const char *port, struct dbcheck_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    if (host == NULL || host[0] == '\0')
        return;
    cfg->enabled = true;
    cfg->port = DBCHECK_DEFAULT_PORT;
    if (strlen(host) >= sizeof cfg->host) {
        snprintf(cfg->problem, sizeof cfg->problem, "PI_DB_HOST is longer than %zu characters",
                 sizeof cfg->host - 1);
        return;
    }
    for (const char *c = host; *c; c++) {
        if (*c <= ' ' || *c == 0x7f || *c == '/' || *c == '@') {
            snprintf(cfg->problem, sizeof cfg->problem,
                     "PI_DB_HOST must be a host name or an IP address, without spaces, / or @");
            return;
        }
    }
    snprintf(cfg->host, sizeof cfg->host, "%s", host);
    if (port == NULL || port[0] == '\0')
        return;
    unsigned long v = 0;
    const char *c = port;
    for (; *c >= '0' && *c <= '9' && v <= 65535; c++)
        v = v * 10 + (unsigned long)(*c - '0');
    if (*c != '\0' || v < 1 || v > 65535) {
        cfg->port = 0;
        snprintf(cfg->problem, sizeof cfg->problem, "PI_DB_PORT: expected a port 1-65535, got "
                 "\"%.20s\"", port);
        return;
    }
    cfg->port = (unsigned)v;
}

void dbcheck_config_load(struct dbcheck_config *cfg)
{
    dbcheck_config_parse(config_env_str("PI_DB_HOST"), config_env_str("PI_DB_PORT"), cfg);
}

/* ---- the check ---------------------------------------------------------- */

struct db_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

struct dbcheck {
    struct loop *loop;
    const struct dbcheck_config *cfg;
    struct agent_state *state;
    bool literal;                     /* PI_DB_HOST is an IP address: no lookup */
    struct db_addr addrs[DBCHECK_ADDRS_MAX];
    int naddrs, cur;
    uint64_t resolved_ms;             /* monotonic, 0 = never */
    bool resolving;
    bool last_failed;
    int fd;                           /* -1 when no connect is in flight */
    long timeout_timer;
    uint64_t started_us;
};

static const char *const database_status_names[DATABASE_STATUS_COUNT] = {
    "unknown", "starting", "ok", "failing", "misconfigured",
};

const char *database_status_name(enum database_status s)
{
    return (unsigned)s < DATABASE_STATUS_COUNT ? database_status_names[s] : "unknown";
}

static void set_result(struct dbcheck *c, bool up, const char *reason)
{
    struct database_state *ds = &c->state->database;
    ds->measured = true;
    ds->last_latency_s = (double)(util_mono_us() - c->started_us) / 1e6;
    if (up)
        ds->passes++;
    else
        ds->failures++;
    c->last_failed = !up;
    enum database_status now = up ? DATABASE_OK : DATABASE_FAILING;
    bool changed = ds->status != now;
    snprintf(ds->reason, sizeof ds->reason, "%s", reason);
    if (!changed) {
        if (!up)
            log_debug("database check failed", LF_STR("target", ds->target),
                      LF_STR("reason", reason));
        return;
    }
    ds->status = now;
    ds->since_ms = wall_now_ms();
    if (up)
        log_info("database reachable", LF_STR("target", ds->target),
                 LF_DOUBLE("connect_s", ds->last_latency_s));
    else
        log_warn("database unreachable", LF_STR("target", ds->target), LF_STR("reason", reason));
}

static void attempt_end(struct dbcheck *c, bool up, const char *reason)
{
    if (c->fd >= 0) {
        loop_del_fd(c->loop, c->fd);
        close(c->fd); /* SO_LINGER 0: a reset, never an accepted connection */
        c->fd = -1;
    }
    if (c->timeout_timer > 0) {
        loop_timer_cancel(c->loop, c->timeout_timer);
        c->timeout_timer = 0;
    }
    if (!up && c->naddrs > 1)
        c->cur = (c->cur + 1) % c->naddrs; /* try the next address next time */
    set_result(c, up, reason);
    state_changed(c->state);
}

static void attempt_fail_errno(struct dbcheck *c, const char *what, int err)
{
    char reason[STATE_REASON_MAX];
    snprintf(reason, sizeof reason, "%s to %.120s: %.100s", what, c->state->database.target,
             strerror(err));
    attempt_end(c, false, reason);
}

static void on_timeout(struct loop *loop, void *ctx)
{
    struct dbcheck *c = ctx;
    (void)loop;
    c->timeout_timer = 0;
    char reason[STATE_REASON_MAX];
    snprintf(reason, sizeof reason, "no answer from %.120s within %d s (a firewall or security "
             "group dropping the connection?)", c->state->database.target,
             DBCHECK_TIMEOUT_MS / 1000);
    attempt_end(c, false, reason);
}

static void on_connect_event(struct loop *loop, int fd, uint32_t events, void *ctx)
{
    struct dbcheck *c = ctx;
    (void)loop;
    (void)events;
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        attempt_fail_errno(c, "TCP connect", err);
        return;
    }
    attempt_end(c, true, "accepts TCP connections");
}

static void connect_now(struct dbcheck *c)
{
    const struct db_addr *a = &c->addrs[c->cur];
    c->started_us = util_mono_us(); /* the connect alone: a lookup is not its latency */
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        attempt_fail_errno(c, "socket for", errno);
        return;
    }
    c->fd = fd;
    /* Hold back the handshake's last ACK and reset on close: the server
     * never sees a connection to count as aborted. Best effort: without
     * them the check still works, as a plain connect and close. */
    int off = 0;
    struct linger reset = { .l_onoff = 1, .l_linger = 0 };
    (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &off, sizeof off);
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0) {
        attempt_end(c, true, "accepts TCP connections");
        return;
    }
    if (errno != EINPROGRESS) {
        attempt_fail_errno(c, "TCP connect", errno);
        return;
    }
    if (loop_add_fd(c->loop, fd, EPOLLOUT, on_connect_event, c) != 0) {
        attempt_fail_errno(c, "epoll for", errno);
        return;
    }
    c->timeout_timer = loop_timer_add(c->loop, DBCHECK_TIMEOUT_MS, 0, on_timeout, c);
    if (c->timeout_timer < 0) {
        c->timeout_timer = 0;
        attempt_end(c, false, "cannot arm the database check's time limit");
    }
}

/* ---- name lookup (worker) ----------------------------------------------- */

struct lookup_report {
    int32_t rc;                 /* 0, or a getaddrinfo error */
    int32_t n;
    char why[128];
    struct db_addr addrs[DBCHECK_ADDRS_MAX];
};

static int lookup_work(void *arg, int out_fd)
{
    const struct dbcheck_config *cfg = arg;
    struct lookup_report rep;
    memset(&rep, 0, sizeof rep);
    char port[8];
    snprintf(port, sizeof port, "%u", cfg->port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_ADDRCONFIG };
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(cfg->host, port, &hints, &res);
    if (rc != 0) {
        rep.rc = rc;
        snprintf(rep.why, sizeof rep.why, "%s",
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
    }
    for (struct addrinfo *ai = res; ai && rep.n < DBCHECK_ADDRS_MAX; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof rep.addrs[0].ss)
            continue;
        memcpy(&rep.addrs[rep.n].ss, ai->ai_addr, ai->ai_addrlen);
        rep.addrs[rep.n].len = ai->ai_addrlen;
        rep.n++;
    }
    if (res)
        freeaddrinfo(res);
    return worker_write_all(out_fd, &rep, sizeof rep) == 0 ? 0 : 1;
}

static void on_lookup_done(struct loop *loop, const struct worker_result *res, void *ctx)
{
    struct dbcheck *c = ctx;
    (void)loop;
    c->resolving = false;
    char reason[STATE_REASON_MAX];
    struct lookup_report rep;
    if (res->data == NULL || res->len != sizeof rep) {
        snprintf(reason, sizeof reason, "DNS lookup of %.120s did not finish within %d s",
                 c->cfg->host, DBCHECK_TIMEOUT_MS / 1000);
        set_result(c, false, reason);
        return;
    }
    memcpy(&rep, res->data, sizeof rep);
    rep.why[sizeof rep.why - 1] = '\0';
    if (rep.rc != 0 || rep.n <= 0 || rep.n > DBCHECK_ADDRS_MAX) {
        snprintf(reason, sizeof reason, "DNS lookup of %.120s failed: %.100s", c->cfg->host,
                 rep.rc != 0 ? rep.why : "no address");
        set_result(c, false, reason);
        return;
    }
    memcpy(c->addrs, rep.addrs, sizeof rep.addrs);
    c->naddrs = rep.n;
    c->cur = 0;
    c->resolved_ms = loop_now_ms();
    connect_now(c);
}

/* ---- the timer ---------------------------------------------------------- */

static bool lookup_due(const struct dbcheck *c)
{
    if (c->literal)
        return false;
    return c->naddrs == 0 || c->last_failed ||
           loop_now_ms() - c->resolved_ms >= DBCHECK_RESOLVE_EVERY_MS;
}

static void on_tick(struct loop *loop, void *ctx)
{
    struct dbcheck *c = ctx;
    if (c->fd >= 0 || c->resolving)
        return; /* the previous attempt is still within its time limit */
    c->started_us = util_mono_us();
    if (!lookup_due(c)) {
        connect_now(c);
        return;
    }
    c->resolving = true;
    if (worker_start(loop, "db-lookup", lookup_work, (void *)c->cfg, DBCHECK_TIMEOUT_MS,
                     on_lookup_done, c) < 0) {
        c->resolving = false;
        set_result(c, false, "cannot start the DNS lookup worker");
    }
}

/* An IP literal needs no lookup. */
static bool parse_literal(const struct dbcheck_config *cfg, struct db_addr *out)
{
    return util_sockaddr_from_ip(cfg->host, (uint16_t)cfg->port, &out->ss, &out->len) == 0;
}

int dbcheck_start(struct loop *loop, const struct dbcheck_config *cfg, unsigned interval_s,
                  struct agent_state *state, struct dbcheck **out)
{
    *out = NULL;
    struct database_state *ds = &state->database;
    memset(ds, 0, sizeof *ds);
    if (!cfg->enabled)
        return 0;
    ds->configured = true;
    ds->since_ms = wall_now_ms();
    if (cfg->problem[0]) {
        ds->status = DATABASE_MISCONFIGURED;
        snprintf(ds->reason, sizeof ds->reason, "%s", cfg->problem);
        snprintf(ds->target, sizeof ds->target, "%s", cfg->host[0] ? cfg->host : "?");
        log_warn("database check off: a setting is wrong", LF_STR("reason", cfg->problem));
        return 0;
    }
    bool v6 = strchr(cfg->host, ':') != NULL;
    snprintf(ds->target, sizeof ds->target, v6 ? "[%s]:%u" : "%s:%u", cfg->host, cfg->port);
    ds->status = DATABASE_STARTING;
    snprintf(ds->reason, sizeof ds->reason, "waiting for the first check");

    struct dbcheck *c = calloc(1, sizeof *c);
    if (c == NULL) {
        log_error("cannot start the database check: out of memory");
        return -1;
    }
    c->loop = loop;
    c->cfg = cfg;
    c->state = state;
    c->fd = -1;
    c->literal = parse_literal(cfg, &c->addrs[0]);
    c->naddrs = c->literal ? 1 : 0;
    uint64_t every = (uint64_t)interval_s * 1000u;
    if (loop_timer_add(loop, 0, every, on_tick, c) < 0) {
        log_error("cannot start the database check timer");
        free(c);
        return -1;
    }
    *out = c;
    log_info("database check started", LF_STR("target", ds->target),
             LF_INT("interval_s", interval_s), LF_INT("timeout_ms", DBCHECK_TIMEOUT_MS));
    return 0;
}
