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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "emf.h"
#include "http_parser.h"
#include "log.h"
#include "loop.h"
#include "state.h"

#define HEALTH_BODY_MAX (16 * 1024)
#define METRICS_BODY_MAX (64 * 1024)
#define OUT_HIGH_WATER (16 * 1024)      /* stop parsing until the client reads */
#define OUT_KEEP_MAX (32 * 1024)        /* larger output buffers are freed once sent */
#define BODY_DISCARD_MAX (64 * 1024)    /* larger request bodies get 413 */
#define LINGER_MS 2000                  /* drain after an error before closing */
#define SWEEP_MS 500
#define ACCEPT_PAUSE_MS 100             /* after EMFILE/ENFILE */

/* ---- settings ----------------------------------------------------------- */

int health_config_load(struct health_config *cfg, struct config_error *err)
{
    unsigned long long v;
    memset(cfg, 0, sizeof(*cfg));

    const char *addr = config_env_str("PI_AGENT_HEALTH_ADDR");
    if (addr == NULL)
        addr = "0.0.0.0";
    struct in6_addr a6;
    struct in_addr a4;
    if (strlen(addr) >= sizeof cfg->addr ||
        (inet_pton(AF_INET, addr, &a4) != 1 && inet_pton(AF_INET6, addr, &a6) != 1))
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
    if (config_env_uint("PI_AGENT_HEALTH_IDLE_TIMEOUT_SECONDS", 5, 1, 3600, &v, err))
        return -1;
    cfg->idle_timeout_s = (unsigned)v;
    if (config_env_uint("PI_AGENT_DRAIN_SECONDS", 5, 0, 3600, &v, err))
        return -1;
    cfg->drain_s = (unsigned)v;

    const char *url = config_env_str("PI_AGENT_PROBE_URL");
    if (url == NULL)
        url = PROBE_DEFAULT_URL;
    if (strlen(url) >= sizeof cfg->probe_url)
        return config_fail(err, "PI_AGENT_PROBE_URL", "is longer than %zu characters",
                           sizeof cfg->probe_url - 1);
    snprintf(cfg->probe_url, sizeof cfg->probe_url, "%s", url);
    cfg->probe_enabled = strcmp(url, "off") != 0;
    if (cfg->probe_enabled && strchr(url, '@') != NULL)
        /* Never echo it: the part before @ could be a password. */
        return config_fail(err, "PI_AGENT_PROBE_URL", "must not hold user:password@ (the probe "
                           "asks Tomcat on the task's own address, without credentials)");
    if (cfg->probe_enabled) {
        const char *why = NULL;
        if (probe_parse_url(url, &cfg->probe, &why) != 0)
            return config_fail(err, "PI_AGENT_PROBE_URL", "%s (expected http://IP:PORT/PATH, "
                               "for example %s, or off), got \"%.100s\"",
                               why, PROBE_DEFAULT_URL, url);
    }
    if (config_env_uint("PI_AGENT_PROBE_INTERVAL_SECONDS", 5, 1, 3600, &v, err))
        return -1;
    cfg->probe_interval_s = (unsigned)v;

    if (config_env_bool("PI_AGENT_LICENCE_REQUIRED", false, &cfg->policy.licence_required, err))
        return -1;
    /* The EFS module validates PI_EFS_OVER_BUDGET; readiness only needs to
     * know whether "over" is fatal. */
    const char *over = config_env_str("PI_EFS_OVER_BUDGET");
    cfg->policy.efs_over_fails = over != NULL && strcmp(over, "fail") == 0;

    bool on_ecs = config_env_str("ECS_CONTAINER_METADATA_URI_V4") != NULL;
    if (config_env_bool("PI_AGENT_EMF", on_ecs, &cfg->emf, err))
        return -1;
    if (config_env_uint("PI_AGENT_EMF_INTERVAL_SECONDS", 60, 1, 86400, &v, err))
        return -1;
    cfg->emf_interval_s = (unsigned)v;
    const char *ns = config_env_str("PI_AGENT_EMF_NAMESPACE");
    if (ns == NULL)
        ns = "Panintelligence/Agent";
    if (!emf_namespace_valid(ns))
        return config_fail(err, "PI_AGENT_EMF_NAMESPACE",
                           "expected 1-255 letters, digits or . - _ / # : and spaces, not "
                           "starting with AWS/, got \"%.64s\"", ns);
    snprintf(cfg->emf_namespace, sizeof cfg->emf_namespace, "%s", ns);
    return 0;
}

/* ---- server state ------------------------------------------------------- */

struct conn {
    int fd;
    struct health_server *srv;
    struct conn *prev, *next;
    char *in;                 /* HTTP_MAX_HEAD_BYTES, allocated on first read */
    size_t in_len;
    struct http_parser parser;
    uint64_t body_left;       /* request body bytes still to discard */
    char *out;
    size_t out_len, out_off, out_cap;
    uint64_t deadline_ms;     /* monotonic: a full request must arrive by then */
    bool close_after_write;   /* last response queued */
    bool lingering;           /* half-closed, draining until EOF or deadline */
    bool writing;             /* waiting for EPOLLOUT */
    bool peer_eof;            /* the client will send nothing more */
};

struct health_server {
    struct loop *loop;
    const struct health_config *cfg;
    struct agent_state *state;
    void (*on_first_ready)(void *ctx);
    void *ctx;
    int listen_fd;
    bool accept_paused;
    long sweep_timer, accept_timer;
    struct conn *conns;
    unsigned nconns;
    uint64_t last_limit_log_ms;
    /* /health is rendered again only when the state changed. */
    bool cache_valid;
    uint64_t checked_ms;
    struct agent_state cached_state;
    struct health_verdict verdict;
    char health_body[HEALTH_BODY_MAX];
    int health_len;
    enum health_status logged_status;
    bool logged_once;
    char metrics_body[METRICS_BODY_MAX];
    time_t date_secs;
    char date[40];
};

static void conn_close(struct conn *c);

static const struct health_verdict *current_verdict(struct health_server *srv)
{
    /* Comparing the whole state costs more than answering (musl's memcmp
     * goes byte by byte), so under load look at most once per millisecond:
     * a change shows within 1 ms, and every state change is made by a loop
     * callback, never in the middle of an answer. */
    uint64_t now = loop_now_ms();
    if (srv->cache_valid && now == srv->checked_ms)
        return &srv->verdict;
    srv->checked_ms = now;
    probe_sync_child(srv->state);
    if (srv->cache_valid && memcmp(&srv->cached_state, srv->state, sizeof *srv->state) == 0)
        return &srv->verdict;
    memcpy(&srv->cached_state, srv->state, sizeof *srv->state);
    health_evaluate(srv->state, &srv->cfg->policy, &srv->verdict);
    srv->health_len = health_render_json(srv->state, &srv->verdict, srv->health_body,
                                         sizeof srv->health_body);
    if (srv->health_len < 0)
        srv->health_len = snprintf(srv->health_body, sizeof srv->health_body,
                                   "{\"status\":\"%s\",\"ready\":%s}",
                                   health_status_name(srv->verdict.status),
                                   srv->verdict.ready ? "true" : "false");
    srv->cache_valid = true;

    const struct health_verdict *v = &srv->verdict;
    if (!srv->logged_once || srv->logged_status != v->status) {
        char failing[64] = "";
        for (int i = 0; i < HEALTH_CHECK_COUNT; i++) {
            if (!v->checks[i].blocking)
                continue;
            size_t n = strlen(failing);
            snprintf(failing + n, sizeof failing - n, "%s%s", n ? "," : "", v->checks[i].name);
        }
        log_info("health status", LF_STR("status", health_status_name(v->status)),
                 LF_STR("failing", failing));
        srv->logged_status = v->status;
        srv->logged_once = true;
    }
    if (v->ready && !srv->state->ready_once) {
        srv->state->ready_once = true; /* invalidates the cache: harmless */
        log_info("ready: /health answers 200");
        if (srv->on_first_ready)
            srv->on_first_ready(srv->ctx);
    }
    return v;
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
        const struct health_verdict *v = current_verdict(srv);
        respond(c, v->ready ? 200 : 503, "application/json", srv->health_body,
                (size_t)srv->health_len, head_only, req->keep_alive, NULL);
    } else if (path_is(req, "/live")) {
        bool alive = srv->state->child_running;
        char body[160];
        int n = snprintf(body, sizeof body, "{\"status\":\"%s\",\"child_running\":%s,\"pid\":%ld}",
                         alive ? "alive" : "child-not-running", alive ? "true" : "false",
                         (long)srv->state->child_pid);
        respond(c, alive ? 200 : 503, "application/json", body, (size_t)n, head_only,
                req->keep_alive, NULL);
    } else {
        const struct health_verdict *v = current_verdict(srv);
        int n = health_render_metrics(srv->state, v, wall_now_ms(), srv->metrics_body,
                                      sizeof srv->metrics_body);
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
        consume(c, req.head_len);
        http_parser_reset(&c->parser);
        c->body_left = req.content_length;
        /* The next request gets a full timeout of its own. */
        c->deadline_ms = loop_now_ms() + (uint64_t)c->srv->cfg->idle_timeout_s * 1000u;
    }
    return false;
}

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
 * does not send a reset that could destroy the response on its way. */
static void finish(struct conn *c)
{
    if (c->peer_eof || (c->in_len == 0 && c->body_left == 0)) {
        conn_close(c);
        return;
    }
    shutdown(c->fd, SHUT_WR);
    c->lingering = true;
    c->in_len = 0;
    uint64_t until = loop_now_ms() + LINGER_MS;
    if (until < c->deadline_ms)
        c->deadline_ms = until;
    if (c->writing) {
        c->writing = false;
        set_events(c, EPOLLIN | EPOLLRDHUP);
    }
}

/* Answers buffered requests and writes until done or the socket is full. */
static void drive(struct conn *c)
{
    for (;;) {
        bool held = process_input(c);
        if (c->peer_eof && !held)
            c->close_after_write = true; /* nothing more will come */
        enum flush_result fr = write_out(c);
        if (fr == FLUSH_CLOSED)
            return;
        if (fr == FLUSH_BLOCKED) {
            if (!c->writing) {
                c->writing = true;
                set_events(c, EPOLLOUT);
            }
            return;
        }
        if (c->close_after_write) {
            finish(c);
            return;
        }
        if (c->writing) {
            c->writing = false;
            if (set_events(c, EPOLLIN | EPOLLRDHUP) != 0)
                return;
        }
        if (!held)
            return;
    }
}

static void linger_read(struct conn *c)
{
    char scratch[4096];
    for (;;) {
        ssize_t n = read(c->fd, scratch, sizeof scratch);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_close(c); /* EOF or error: done */
        return;
    }
}

static void on_conn_event(struct loop *loop, int fd, uint32_t events, void *ctx)
{
    struct conn *c = ctx;
    (void)loop;
    (void)fd;

    if (c->lingering) {
        linger_read(c);
        return;
    }
    if (c->writing) {
        if (events & EPOLLERR) {
            conn_close(c);
            return;
        }
        drive(c);
        return;
    }
    for (;;) {
        if (c->in == NULL && (c->in = malloc(HTTP_MAX_HEAD_BYTES)) == NULL) {
            log_warn("health: out of memory for a connection; closing it");
            conn_close(c);
            return;
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
            return;
        }
        c->in_len += (size_t)n;
        if (process_input(c) || c->close_after_write)
            break;
        /* A short read drained the socket: epoll is level-triggered and says
         * when more arrives, so skip the read that would only say EAGAIN. */
        if ((size_t)n < space)
            break;
    }
    drive(c);
}

static void conn_close(struct conn *c)
{
    struct health_server *srv = c->srv;
    loop_del_fd(srv->loop, c->fd);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    free(c->in);
    free(c->out);
    free(c);
    if (srv->nconns == 0 && srv->sweep_timer > 0) {
        loop_timer_cancel(srv->loop, srv->sweep_timer);
        srv->sweep_timer = 0;
    }
}

/* Drops connections past their deadline: slow or idle clients hold nothing. */
static void on_sweep(struct loop *loop, void *ctx)
{
    struct health_server *srv = ctx;
    uint64_t now = loop_now_ms();
    (void)loop;
    struct conn *c = srv->conns;
    while (c) {
        struct conn *next = c->next;
        if (now >= c->deadline_ms)
            conn_close(c);
        c = next;
    }
}

/* ---- accepting ---------------------------------------------------------- */

static void on_accept(struct loop *loop, int fd, uint32_t events, void *ctx);

static void on_accept_resume(struct loop *loop, void *ctx)
{
    struct health_server *srv = ctx;
    (void)loop;
    srv->accept_timer = 0;
    if (srv->listen_fd >= 0 && srv->accept_paused &&
        loop_mod_fd(srv->loop, srv->listen_fd, EPOLLIN) == 0)
        srv->accept_paused = false;
}

static void on_accept(struct loop *loop, int fd, uint32_t events, void *ctx)
{
    struct health_server *srv = ctx;
    (void)events;

    for (;;) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop polling the listener for a moment
                 * rather than spin on a socket that stays readable. */
                log_warn("health: cannot accept", LF_STR("error", strerror(errno)));
                if (loop_mod_fd(loop, fd, 0) == 0) {
                    srv->accept_paused = true;
                    srv->accept_timer = loop_timer_add(loop, ACCEPT_PAUSE_MS, 0,
                                                       on_accept_resume, srv);
                }
            }
            return; /* EAGAIN: all accepted */
        }
        if (srv->nconns >= srv->cfg->max_connections) {
            close(cfd);
            uint64_t now = loop_now_ms();
            if (now - srv->last_limit_log_ms > 10000) {
                log_warn("health: connection limit reached; closing new connections",
                         LF_INT("max_connections", srv->cfg->max_connections));
                srv->last_limit_log_ms = now;
            }
            continue;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            close(cfd);
            continue;
        }
        c->fd = cfd;
        c->srv = srv;
        http_parser_reset(&c->parser);
        c->deadline_ms = loop_now_ms() + (uint64_t)srv->cfg->idle_timeout_s * 1000u;
        if (loop_add_fd(loop, cfd, EPOLLIN | EPOLLRDHUP, on_conn_event, c) != 0) {
            close(cfd);
            free(c);
            continue;
        }
        c->next = srv->conns;
        if (srv->conns)
            srv->conns->prev = c;
        srv->conns = c;
        srv->nconns++;
        if (srv->sweep_timer == 0) {
            srv->sweep_timer = loop_timer_add(loop, SWEEP_MS, SWEEP_MS, on_sweep, srv);
            if (srv->sweep_timer < 0)
                srv->sweep_timer = 0;
        }
    }
}

/* Every change of state made by a loop callback ends here: the verdict is
 * recomputed at once (logging changes and announcing the first ready), so
 * nothing needs to poll. */
static void on_state_change(void *ctx)
{
    struct health_server *srv = ctx;
    srv->checked_ms = 0; /* a change within the same millisecond still counts */
    current_verdict(srv);
}

static int open_listener(const struct health_config *cfg)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, cfg->addr, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)cfg->port);
        len = sizeof *s4;
    } else if (inet_pton(AF_INET6, cfg->addr, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)cfg->port);
        len = sizeof *s6;
    } else {
        errno = EINVAL;
        return -1;
    }
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

struct health_server *health_server_start(struct loop *loop, const struct health_config *cfg,
                                          struct agent_state *state,
                                          void (*on_first_ready)(void *ctx), void *ctx)
{
    struct health_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL) {
        log_error("health: out of memory");
        return NULL;
    }
    srv->loop = loop;
    srv->cfg = cfg;
    srv->state = state;
    srv->on_first_ready = on_first_ready;
    srv->ctx = ctx;
    srv->listen_fd = -1;

    if (cfg->port != 0) {
        srv->listen_fd = open_listener(cfg);
        if (srv->listen_fd < 0) {
            log_error("cannot listen for health checks: check PI_AGENT_HEALTH_ADDR and "
                      "PI_AGENT_HEALTH_PORT",
                      LF_STR("addr", cfg->addr), LF_INT("port", cfg->port),
                      LF_STR("error", strerror(errno)));
            free(srv);
            return NULL;
        }
        if (loop_add_fd(loop, srv->listen_fd, EPOLLIN, on_accept, srv) != 0) {
            log_error("health: cannot watch the listening socket", LF_STR("error", strerror(errno)));
            close(srv->listen_fd);
            free(srv);
            return NULL;
        }
        log_info("health endpoint listening", LF_STR("addr", cfg->addr), LF_INT("port", cfg->port),
                 LF_INT("max_connections", cfg->max_connections));
    } else {
        log_info("health endpoint disabled (PI_AGENT_HEALTH_PORT=0)");
    }
    state->on_change = on_state_change;
    state->on_change_ctx = srv;
    on_state_change(srv); /* the state as it is now, after the start phases */
    return srv;
}

void health_server_free(struct health_server *srv)
{
    if (srv == NULL)
        return;
    while (srv->conns)
        conn_close(srv->conns);
    if (srv->sweep_timer > 0)
        loop_timer_cancel(srv->loop, srv->sweep_timer);
    if (srv->state->on_change_ctx == srv) {
        srv->state->on_change = NULL;
        srv->state->on_change_ctx = NULL;
    }
    if (srv->accept_timer > 0)
        loop_timer_cancel(srv->loop, srv->accept_timer);
    if (srv->listen_fd >= 0) {
        loop_del_fd(srv->loop, srv->listen_fd);
        close(srv->listen_fd);
    }
    free(srv);
}
