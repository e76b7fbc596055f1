/* health: settings and the HTTP server. See health.h.
 *
 * Connection life: accept -> read into a per-connection 8 KiB buffer ->
 * parse every complete request in it (pipelining) -> append responses to the
 * output buffer -> write what the socket takes, wait for EPOLLOUT for the
 * rest. A connection that must close after its response first half-closes
 * and drains what the client still sends (bounded), so the client reads the
 * response instead of a reset. */
#include "health.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "health_server.h"
#include "http_parser.h"
#include "log.h"
#include "loop.h"
#include "readiness.h"
#include "state.h"
#include "util.h"

#define HEALTH_BODY_MAX (16 * 1024)
#define METRICS_BODY_MAX (64 * 1024)
#define OUT_HIGH_WATER (16 * 1024)      /* stop parsing until the client reads */
#define OUT_KEEP_MAX (32 * 1024)        /* larger output buffers are freed once sent */
#define BODY_DISCARD_MAX (64 * 1024)    /* larger request bodies get 413 */
#define LINGER_MS 2000                  /* drain after an error before closing */
#define SWEEP_MS 500
#define ACCEPT_PAUSE_MS 100             /* after EMFILE/ENFILE */
#define ACCEPTS_PER_WAKE 64             /* per listener per loop turn */
#define READS_PER_WAKE 4                /* per connection per loop turn */

/* ---- settings ----------------------------------------------------------- */

int health_config_load(struct health_config *cfg, struct config_error *err)
{
    unsigned long long v;
    memset(cfg, 0, sizeof(*cfg));

    const char *addr = config_env_str("PI_AGENT_HEALTH_ADDR");
    if (addr == NULL)
        addr = "0.0.0.0";
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (strlen(addr) >= sizeof cfg->addr || util_sockaddr_from_ip(addr, 0, &ss, &sslen) != 0)
        return config_fail(err, "PI_AGENT_HEALTH_ADDR",
                           "expected an IPv4 or IPv6 address such as 0.0.0.0 or ::, got \"%.64s\"",
                           addr);
    snprintf(cfg->addr, sizeof cfg->addr, "%s", addr);

    if (config_env_uint("PI_AGENT_HEALTH_PORT", HEALTH_DEFAULT_PORT, 0, 65535, &v, err))
        return -1;
    cfg->port = (unsigned)v;
    if (config_env_uint("PI_AGENT_HEALTH_MAX_CONNECTIONS", 256, 1, 65536, &v, err))
        return -1;
    cfg->max_connections = (unsigned)v;
    /* One address may hold an eighth of the table, but at least 16
     * connections (all of a small table): enough for any honest client. */
    unsigned per_addr = cfg->max_connections / 8 > 16 ? cfg->max_connections / 8 : 16;
    if (config_env_uint("PI_AGENT_HEALTH_MAX_PER_ADDRESS", per_addr, 1, 65536, &v, err))
        return -1;
    cfg->max_per_peer = v < cfg->max_connections ? (unsigned)v : cfg->max_connections;
    if (config_env_uint("PI_AGENT_HEALTH_IDLE_TIMEOUT_SECONDS", 5, 1, 3600, &v, err))
        return -1;
    cfg->idle_timeout_s = (unsigned)v;
    if (config_run_dir(cfg->run_dir, sizeof cfg->run_dir, err) != 0)
        return -1;

    return 0;
}

static void conn_close(struct conn *c);

/* The /health body for the cached verdict, rendered at most once per state
 * change, and only when asked: an idle agent never touches the buffer. */
static int render_health(struct health_server *srv)
{
    if (srv->health_len >= 0 && srv->rendered_version == srv->state->version)
        return 0;
    if (srv->health_body == NULL && (srv->health_body = malloc(HEALTH_BODY_MAX)) == NULL)
        return -1;
    const struct health_verdict *v = readiness_verdict(srv->readiness);
    srv->rendered_version = srv->state->version;
    srv->health_len = health_render_json(srv->state, v, srv->health_body, HEALTH_BODY_MAX);
    if (srv->health_len < 0)
        srv->health_len = snprintf(srv->health_body, HEALTH_BODY_MAX,
                                   "{\"status\":\"%s\",\"ready\":%s}",
                                   health_status_name(v->status), v->ready ? "true" : "false");
    return 0;
}

static const char *http_date(struct health_server *srv)
{
    time_t now = time(NULL);
    if (now != srv->date_secs || srv->date[0] == '\0') {
        struct tm tm;
        if (gmtime_r(&now, &tm) == NULL ||
            strftime(srv->date, sizeof srv->date, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
            snprintf(srv->date, sizeof srv->date, "Thu, 01 Jan 1970 00:00:00 GMT");
        srv->date_secs = now;
    }
    return srv->date;
}

/* ---- responses ---------------------------------------------------------- */

static int out_reserve(struct conn *c, size_t more)
{
    if (c->out_len + more <= c->out_cap)
        return 0;
    size_t cap = c->out_cap ? c->out_cap : 1024;
    while (cap < c->out_len + more)
        cap *= 2;
    char *grown = realloc(c->out, cap);
    if (grown == NULL)
        return -1;
    c->out = grown;
    c->out_cap = cap;
    return 0;
}

static void respond(struct conn *c, int status, const char *content_type, const char *body,
                    size_t body_len, bool head_only, bool keep_alive, const char *extra)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nServer: pi-agent\r\nDate: %s\r\n"
                     "Content-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
                     "%sConnection: %s\r\n\r\n",
                     status, http_status_text(status), http_date(c->srv), content_type, body_len,
                     extra ? extra : "", keep_alive ? "keep-alive" : "close");
    if (n < 0 || (size_t)n >= sizeof head) {
        c->close_after_write = true;
        return;
    }
    size_t total = (size_t)n + (head_only ? 0 : body_len);
    if (out_reserve(c, total) != 0) {
        log_warn("health: out of memory for a response; closing the connection");
        c->close_after_write = true;
        return;
    }
    memcpy(c->out + c->out_len, head, (size_t)n);
    c->out_len += (size_t)n;
    if (!head_only) {
        memcpy(c->out + c->out_len, body, body_len);
        c->out_len += body_len;
    }
    if (!keep_alive)
        c->close_after_write = true;
}

static void respond_text(struct conn *c, int status, bool head_only, bool keep_alive,
                         const char *extra)
{
    char body[96];
    int n = snprintf(body, sizeof body, "%d %s\n", status, http_status_text(status));
    respond(c, status, "text/plain; charset=utf-8", body, (size_t)n, head_only, keep_alive, extra);
}

static bool path_is(const struct http_request *req, const char *p)
{
    size_t n = strlen(p);
    return req->path_len == n && memcmp(req->path, p, n) == 0;
}

static void route(struct conn *c, const struct http_request *req)
{
    struct health_server *srv = c->srv;
    bool head_only = req->method == HTTP_METHOD_HEAD;
    bool known = path_is(req, "/health") || path_is(req, "/live") || path_is(req, "/metrics");

    if (!known) {
        respond_text(c, 404, head_only, req->keep_alive, NULL);
        return;
    }
    if (req->method == HTTP_METHOD_OTHER) {
        respond_text(c, 405, false, req->keep_alive, "Allow: GET, HEAD\r\n");
        return;
    }
    if (path_is(req, "/health")) {
        const struct health_verdict *v = readiness_verdict(srv->readiness);
        if (render_health(srv) != 0) {
            log_warn("health: out of memory for the /health answer");
            respond_text(c, 500, head_only, false, NULL);
            return;
        }
        respond(c, v->ready ? 200 : 503, "application/json", srv->health_body,
                (size_t)srv->health_len, head_only, req->keep_alive, NULL);
    } else if (path_is(req, "/live")) {
        char body[160 + 2 * STATE_REASON_MAX];
        int n = health_render_live(srv->state, body, sizeof body);
        bool alive = health_live(srv->state);
        if (n < 0)
            n = snprintf(body, sizeof body, "{\"status\":\"%s\"}", alive ? "alive" : "not-alive");
        respond(c, alive ? 200 : 503, "application/json", body, (size_t)n, head_only,
                req->keep_alive, NULL);
    } else {
        const struct health_verdict *v = readiness_verdict(srv->readiness);
        if (srv->metrics_body == NULL && (srv->metrics_body = malloc(METRICS_BODY_MAX)) == NULL) {
            log_warn("health: out of memory for the /metrics answer");
            respond_text(c, 500, head_only, false, NULL);
            return;
        }
        int n = health_render_metrics(srv->state, v, wall_now_ms(), srv->metrics_body,
                                      METRICS_BODY_MAX);
        if (n < 0) {
            log_error("health: /metrics did not fit its buffer");
            respond_text(c, 500, head_only, req->keep_alive, NULL);
            return;
        }
        respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", srv->metrics_body,
                (size_t)n, head_only, req->keep_alive, NULL);
    }
}

/* ---- connection I/O ----------------------------------------------------- */

static void consume(struct conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Parses and answers every complete request in the input buffer. Returns
 * true when it stopped because the client is not reading its answers. */
static bool process_input(struct conn *c)
{
    while (c->in_len > 0 && !c->close_after_write) {
        if (c->body_left > 0) {
            size_t drop = c->in_len < c->body_left ? c->in_len : (size_t)c->body_left;
            consume(c, drop);
            c->body_left -= drop;
            continue;
        }
        if (c->out_len - c->out_off > OUT_HIGH_WATER)
            return true;
        struct http_request req;
        enum http_parse_result r = http_parse(&c->parser, c->in, c->in_len, &req);
        if (r == HTTP_PARSE_INCOMPLETE)
            return false;
        if (r == HTTP_PARSE_ERROR) {
            log_debug("health: bad request", LF_INT("status", req.error_status),
                      LF_STR("reason", req.error_reason));
            respond_text(c, req.error_status, false, false, NULL);
            return false;
        }
        if (req.content_length > BODY_DISCARD_MAX) {
            respond_text(c, 413, false, false, NULL);
            return false;
        }
        route(c, &req);
        c->renewed = true;
        consume(c, req.head_len);
        http_parser_reset(&c->parser);
        c->body_left = req.content_length;
        /* The next request gets a full timeout of its own. */
        c->deadline_ms = loop_now_ms() + (uint64_t)c->srv->cfg->idle_timeout_s * 1000u;
    }
    return false;
}

/* ---- connection I/O ----------------------------------------------------- */

/* Returns -1 when the connection had to be closed. */
static int set_events(struct conn *c, uint32_t events)
{
    if (loop_mod_fd(c->srv->loop, c->fd, events) != 0) {
        log_warn("health: epoll_ctl failed; closing the connection",
                 LF_STR("error", strerror(errno)));
        conn_close(c);
        return -1;
    }
    return 0;
}

enum flush_result { FLUSH_DONE, FLUSH_BLOCKED, FLUSH_CLOSED };

static enum flush_result write_out(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return FLUSH_BLOCKED;
        conn_close(c); /* EPIPE, ECONNRESET: the client is gone */
        return FLUSH_CLOSED;
    }
    c->out_off = c->out_len = 0;
    if (c->out_cap > OUT_KEEP_MAX) {
        /* A burst of pipelined answers must not stay resident in PID 1. */
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    return FLUSH_DONE;
}

/* After the last response: close at once when the client has nothing more
 * in flight; otherwise half-close and drop what it still sends, so close()
 * does not send a reset that could destroy the response on its way.
 * Returns -1 when the connection was closed. */
static int finish(struct conn *c)
{
    if (c->peer_eof || (c->in_len == 0 && c->body_left == 0)) {
        conn_close(c);
        return -1;
    }
    shutdown(c->fd, SHUT_WR);
    c->lingering = true;
    c->in_len = 0;
    uint64_t until = loop_now_ms() + LINGER_MS;
    if (until < c->deadline_ms)
        c->deadline_ms = until;
    if (c->writing) {
        c->writing = false;
        return set_events(c, EPOLLIN | EPOLLRDHUP);
    }
    return 0;
}

/* Answers buffered requests and writes until done or the socket is full.
 * Returns -1 when the connection was closed. */
static int drive(struct conn *c)
{
    for (;;) {
        bool held = process_input(c);
        if (c->peer_eof && !held)
            c->close_after_write = true; /* nothing more will come */
        enum flush_result fr = write_out(c);
        if (fr == FLUSH_CLOSED)
            return -1;
        if (fr == FLUSH_BLOCKED) {
            if (!c->writing) {
                c->writing = true;
                return set_events(c, EPOLLOUT);
            }
            return 0;
        }
        if (c->close_after_write)
            return finish(c);
        if (c->writing) {
            c->writing = false;
            if (set_events(c, EPOLLIN | EPOLLRDHUP) != 0)
                return -1;
        }
        if (!held)
            return 0;
    }
}

/* Drops what a half-closed client still sends. Returns -1 when closed. */
static int linger_read(struct conn *c)
{
    char scratch[4096];
    for (int i = 0; i < READS_PER_WAKE; i++) {
        ssize_t n = read(c->fd, scratch, sizeof scratch);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        conn_close(c); /* EOF or error: done */
        return -1;
    }
    return 0; /* more to drop: the loop reports it again next turn */
}

/* Reads what the client sent (a bounded number of reads per turn: the loop
 * is level-triggered and comes back for the rest) and answers it. Returns
 * -1 when the connection was closed. */
static int conn_read(struct conn *c)
{
    for (int i = 0; i < READS_PER_WAKE; i++) {
        if (c->in == NULL && (c->in = malloc(HTTP_MAX_HEAD_BYTES)) == NULL) {
            log_warn("health: out of memory for a connection; closing it");
            conn_close(c);
            return -1;
        }
        size_t space = HTTP_MAX_HEAD_BYTES - c->in_len;
        if (space == 0)
            break; /* full of answered-but-held requests: write first */
        ssize_t n = read(c->fd, c->in + c->in_len, space);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n == 0) {
            /* The client half-closed: answer what it sent, then close. */
            c->peer_eof = true;
            break;
        }
        if (n < 0) {
            conn_close(c); /* reset: nobody to answer */
            return -1;
        }
        c->in_len += (size_t)n;
        if (process_input(c) || c->close_after_write)
            break;
        /* A short read drained the socket: epoll is level-triggered and says
         * when more arrives, so skip the read that would only say EAGAIN. */
        if ((size_t)n < space)
            break;
    }
    return drive(c);
}

static void on_conn_event(struct loop *loop, int fd, uint32_t events, void *ctx)
{
    struct conn *c = ctx;
    int rc;
    (void)loop;
    (void)fd;

    if (c->lingering) {
        rc = linger_read(c);
    } else if (c->writing) {
        if (events & EPOLLERR) {
            conn_close(c);
            return;
        }
        rc = drive(c);
    } else {
        rc = conn_read(c);
    }
    if (rc == 0)
        conn_settle(c);
}

static void conn_close(struct conn *c)
{
    struct health_server *srv = c->srv;
    struct pool *p = c->pool;
    loop_del_fd(srv->loop, c->fd);
    close(c->fd);
    class_unlink(c);
    p->n--;
    peer_release(srv, c->peer);
    free(c->in);
    free(c->out);
    free(c);
    if (srv->tcp.n + srv->local.n == 0 && srv->sweep_timer > 0) {
        loop_timer_cancel(srv->loop, srv->sweep_timer);
        srv->sweep_timer = 0;
    }
}

/* Drops connections past their deadline: slow or idle clients hold nothing. */
static void sweep_pool(struct pool *p, uint64_t now)
{
    for (int cls = 0; cls < CLASS_COUNT; cls++) {
        struct conn *c = p->head[cls];
        while (c) {
            struct conn *next = c->next;
            if (now >= c->deadline_ms)
                conn_close(c);
            c = next;
        }
    }
}

static void on_sweep(struct loop *loop, void *ctx)
{
    struct health_server *srv = ctx;
    uint64_t now = loop_now_ms();
    (void)loop;
    sweep_pool(&srv->tcp, now);
    sweep_pool(&srv->local, now);
}

/* ---- accepting ---------------------------------------------------------- */

static void on_accept_resume(struct loop *loop, void *ctx)
{
    struct pool *p = ctx;
    (void)loop;
    p->accept_timer = 0;
    if (p->listen_fd >= 0 && p->accept_paused &&
        loop_mod_fd(p->srv->loop, p->listen_fd, EPOLLIN) == 0)
        p->accept_paused = false;
}

static void log_evictions(struct health_server *srv, uint64_t now)
{
    if (srv->evicted != srv->evicted_logged && now - srv->last_evict_log_ms > 10000) {
        log_warn("health: connection table full; closed connections waiting longest for a "
                 "request to make room",
                 LF_INT("evicted", (long long)(srv->evicted - srv->evicted_logged)),
                 LF_INT("max_connections", srv->cfg->max_connections));
        srv->evicted_logged = srv->evicted;
        srv->last_evict_log_ms = now;
    }
}

/* Makes room for one more connection in p (from peer, NULL on the unix
 * socket, already counted). Returns false when nothing can go: then every
 * candidate is busy answering and the new connection must be refused. */
static bool make_room(struct pool *p, struct peer *peer)
{
    struct health_server *srv = p->srv;
    uint64_t now = loop_now_ms();
    /* A share as large as the table is no share: the table's rule decides. */
    if (peer != NULL && srv->cfg->max_per_peer < p->max && peer->count > srv->cfg->max_per_peer) {
        struct conn *v = pick_victim(p, peer);
        if (v == NULL)
            return false;
        conn_close(v);
        srv->peer_evicted++;
        if (now - srv->last_peer_log_ms > 10000) {
            char name[INET6_ADDRSTRLEN + 4];
            peer_name(peer, name, sizeof name);
            log_warn("health: one address holds its share of connections; closed its own "
                     "connections waiting longest for a request",
                     LF_STR("address", name), LF_INT("max_per_address", srv->cfg->max_per_peer),
                     LF_INT("evicted", (long long)(srv->peer_evicted - srv->peer_evicted_logged)));
            srv->peer_evicted_logged = srv->peer_evicted;
            srv->last_peer_log_ms = now;
        }
    }
    if (p->n >= p->max) {
        struct conn *v = pick_victim(p, NULL);
        if (v == NULL)
            return false;
        conn_close(v);
        srv->evicted++;
        log_evictions(srv, now);
    }
    return true;
}

static void refuse(struct pool *p, int cfd)
{
    struct health_server *srv = p->srv;
    close(cfd);
    uint64_t now = loop_now_ms();
    if (now - srv->last_limit_log_ms > 10000) {
        log_warn("health: connection limit reached; closing new connections",
                 LF_STR("listener", p->name), LF_INT("max_connections", p->max));
        srv->last_limit_log_ms = now;
    }
}

static void on_accept(struct loop *loop, int fd, uint32_t events, void *ctx)
{
    struct pool *p = ctx;
    struct health_server *srv = p->srv;
    (void)events;

    /* A bounded number per turn: a storm of connections must leave room for
     * timers, signals, the child and the connections already open. */
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof ss;
        int cfd = accept4(fd, (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop polling the listener for a moment
                 * rather than spin on a socket that stays readable. */
                log_warn("health: cannot accept", LF_STR("error", strerror(errno)));
                if (loop_mod_fd(loop, fd, 0) == 0) {
                    p->accept_paused = true;
                    p->accept_timer = loop_timer_add(loop, ACCEPT_PAUSE_MS, 0,
                                                     on_accept_resume, p);
                }
            }
            return; /* EAGAIN: all accepted */
        }
        struct peer *peer = NULL;
        if (p == &srv->tcp && (peer = peer_hold(srv, &ss)) == NULL) {
            close(cfd);
            continue;
        }
        if (!make_room(p, peer)) {
            peer_release(srv, peer);
            refuse(p, cfd);
            continue;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            peer_release(srv, peer);
            close(cfd);
            continue;
        }
        c->fd = cfd;
        c->srv = srv;
        c->pool = p;
        c->peer = peer;
        http_parser_reset(&c->parser);
        c->deadline_ms = loop_now_ms() + (uint64_t)srv->cfg->idle_timeout_s * 1000u;
        if (loop_add_fd(loop, cfd, EPOLLIN | EPOLLRDHUP, on_conn_event, c) != 0) {
            peer_release(srv, peer);
            close(cfd);
            free(c);
            continue;
        }
        class_append(c, CLASS_WAITING);
        p->n++;
        if (srv->sweep_timer == 0) {
            srv->sweep_timer = loop_timer_add(loop, SWEEP_MS, SWEEP_MS, on_sweep, srv);
            if (srv->sweep_timer < 0)
                srv->sweep_timer = 0;
        }
    }
}

static int open_listener(const struct health_config *cfg)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (util_sockaddr_from_ip(cfg->addr, (uint16_t)cfg->port, &ss, &len) != 0)
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 1024) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static void pool_init(struct pool *p, struct health_server *srv, const char *name, unsigned max)
{
    p->srv = srv;
    p->name = name;
    p->listen_fd = -1;
    p->max = max;
}

static int pool_listen(struct pool *p, int fd)
{
    if (loop_add_fd(p->srv->loop, fd, EPOLLIN, on_accept, p) != 0) {
        log_error("health: cannot watch a listening socket", LF_STR("listener", p->name),
                  LF_STR("error", strerror(errno)));
        close(fd);
        return -1;
    }
    p->listen_fd = fd;
    return 0;
}

static void pool_free(struct pool *p)
{
    for (int cls = 0; cls < CLASS_COUNT; cls++)
        while (p->head[cls])
            conn_close(p->head[cls]);
    if (p->accept_timer > 0)
        loop_timer_cancel(p->srv->loop, p->accept_timer);
    if (p->listen_fd >= 0) {
        loop_del_fd(p->srv->loop, p->listen_fd);
        close(p->listen_fd);
        p->listen_fd = -1;
    }
}

struct health_server *health_server_start(struct loop *loop, const struct health_config *cfg,
                                          struct agent_state *state,
                                          const struct readiness *readiness)
{
    struct health_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL) {
        log_error("health: out of memory");
        return NULL;
    }
    srv->loop = loop;
    srv->cfg = cfg;
    srv->state = state;
    srv->readiness = readiness;
    srv->run_dir_fd = -1;
    srv->health_len = -1;
    pool_init(&srv->tcp, srv, "tcp", cfg->max_connections);
    pool_init(&srv->local, srv, "unix", HEALTH_LOCAL_MAX_CONNECTIONS);

    if (cfg->port != 0) {
        int fd = open_listener(cfg);
        if (fd < 0) {
            log_error("cannot listen for health checks: check PI_AGENT_HEALTH_ADDR and "
                      "PI_AGENT_HEALTH_PORT",
                      LF_STR("addr", cfg->addr), LF_INT("port", cfg->port),
                      LF_STR("error", strerror(errno)));
            free(srv);
            return NULL;
        }
        if (pool_listen(&srv->tcp, fd) != 0) {
            free(srv);
            return NULL;
        }
        int lfd = health_local_open(srv);
        if (lfd >= 0 && pool_listen(&srv->local, lfd) != 0)
            health_local_close(srv);
        log_info("health endpoint listening", LF_STR("addr", cfg->addr), LF_INT("port", cfg->port),
                 LF_INT("max_connections", cfg->max_connections),
                 LF_INT("max_per_address", cfg->max_per_peer),
                 LF_STR("socket", srv->local.listen_fd >= 0 ? HEALTH_SOCKET_NAME : "none"));
    } else {
        log_info("health endpoint disabled (PI_AGENT_HEALTH_PORT=0)");
    }
    return srv;
}

void health_server_free(struct health_server *srv)
{
    if (srv == NULL)
        return;
    pool_free(&srv->tcp);
    pool_free(&srv->local);
    health_local_close(srv);
    if (srv->sweep_timer > 0)
        loop_timer_cancel(srv->loop, srv->sweep_timer);
    free(srv->peers);
    free(srv->health_body);
    free(srv->metrics_body);
    free(srv);
}
