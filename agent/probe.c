/* probe: see probe.h. One probe at a time: connect, send, read the status
 * line, close. Each step is a callback of the loop; a one-shot timer ends a
 * probe that has not finished within PROBE_TIMEOUT_MS. */
#include "probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "state.h"
#include "util.h"

static const char *const probe_status_names[PROBE_STATUS_COUNT] = { "none", "starting", "ok",
                                                                     "failing" };

const char *probe_status_name(enum probe_status s)
{
    return (unsigned)s < PROBE_STATUS_COUNT ? probe_status_names[s] : "unknown";
}

/* ---- settings ----------------------------------------------------------- */

int probe_config_load(struct probe_config *cfg, struct config_error *err)
{
    unsigned long long v;
    memset(cfg, 0, sizeof *cfg);
    const char *url = config_env_str("PI_AGENT_PROBE_URL");
    if (url == NULL)
        url = PROBE_DEFAULT_URL;
    if (strlen(url) >= sizeof cfg->url)
        return config_fail(err, "PI_AGENT_PROBE_URL", "is longer than %zu characters",
                           sizeof cfg->url - 1);
    snprintf(cfg->url, sizeof cfg->url, "%s", url);
    cfg->enabled = strcmp(url, "off") != 0;
    if (cfg->enabled && strchr(url, '@') != NULL)
        /* Never echo it: the part before @ could be a password. */
        return config_fail(err, "PI_AGENT_PROBE_URL", "must not hold user:password@ (the probe "
                           "asks Tomcat on the task's own address, without credentials)");
    if (cfg->enabled) {
        const char *why = NULL;
        if (probe_parse_url(url, &cfg->target, &why) != 0)
            return config_fail(err, "PI_AGENT_PROBE_URL", "%s (expected http://IP:PORT/PATH, "
                               "for example %s, or off), got \"%.100s\"",
                               why, PROBE_DEFAULT_URL, url);
    }
    if (config_env_uint("PI_AGENT_PROBE_INTERVAL_SECONDS", 5, 1, 3600, &v, err))
        return -1;
    cfg->interval_s = (unsigned)v;
    return 0;
}

/* ---- pure helpers ------------------------------------------------------- */

int probe_parse_url(const char *url, struct probe_target *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    if (strncasecmp(url, "https://", 8) == 0) {
        *why = "https is not supported: the probe speaks plain HTTP to Tomcat inside the task";
        return -1;
    }
    if (strncasecmp(url, "http://", 7) != 0) {
        *why = "not an http:// URL";
        return -1;
    }
    const char *p = url + 7;
    char host[64];
    size_t hlen;
    bool v6 = false;
    if (*p == '[') {
        const char *end = strchr(p, ']');
        if (end == NULL) {
            *why = "unterminated [IPv6] host";
            return -1;
        }
        hlen = (size_t)(end - p - 1);
        if (hlen == 0 || hlen >= sizeof host) {
            *why = "bad [IPv6] host";
            return -1;
        }
        memcpy(host, p + 1, hlen);
        p = end + 1;
        v6 = true;
    } else {
        hlen = strcspn(p, ":/?#");
        if (hlen == 0 || hlen >= sizeof host) {
            *why = "missing or overlong host";
            return -1;
        }
        memcpy(host, p, hlen);
        p += hlen;
    }
    host[hlen] = '\0';

    unsigned long port = 80;
    if (*p == ':') {
        char *end;
        p++;
        if (*p < '0' || *p > '9') {
            *why = "bad port";
            return -1;
        }
        errno = 0;
        port = strtoul(p, &end, 10);
        if (errno || port == 0 || port > 65535 || (end - p) > 5) {
            *why = "port must be 1-65535";
            return -1;
        }
        p = end;
    }
    if (*p != '\0' && *p != '/') {
        *why = "expected a path starting with / after the host and port";
        return -1;
    }
    const char *path = *p ? p : "/";
    for (const char *q = path; *q; q++) {
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f || *q == '#') {
            *why = "the path holds a space, control character or fragment";
            return -1;
        }
    }
    if (strlen(path) >= sizeof out->path) {
        *why = "path too long";
        return -1;
    }

    /* IPv6 only in brackets, IPv4 (or localhost) only without. */
    const char *ip = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    if (util_sockaddr_from_ip(ip, (uint16_t)port, &out->addr, &out->addr_len) != 0 ||
        (out->addr.ss_family == AF_INET6) != v6) {
        memset(&out->addr, 0, sizeof out->addr);
        out->addr_len = 0;
        *why = "the host must be an IP address or localhost (the probe never resolves names)";
        return -1;
    }
    snprintf(out->host_header, sizeof out->host_header, v6 ? "[%s]:%lu" : "%s:%lu", host, port);
    snprintf(out->path, sizeof out->path, "%s", path);
    return 0;
}

int probe_status_code(const char *buf, size_t len)
{
    static const char prefix[] = "HTTP/1.";
    size_t plen = sizeof prefix - 1;
    size_t cmp = len < plen ? len : plen;
    if (memcmp(buf, prefix, cmp) != 0)
        return -1;
    /* "HTTP/1.x NNN" then SP, CR or LF */
    const size_t need = plen + 1 + 1 + 3 + 1;
    for (size_t i = plen; i < len && i < need; i++) {
        char ch = buf[i];
        bool ok;
        if (i == plen)
            ok = ch >= '0' && ch <= '9';
        else if (i == plen + 1)
            ok = ch == ' ';
        else if (i < plen + 5)
            ok = ch >= '0' && ch <= '9';
        else
            ok = ch == ' ' || ch == '\r' || ch == '\n';
        if (!ok)
            return -1;
    }
    if (len < need)
        return 0;
    return (buf[plen + 2] - '0') * 100 + (buf[plen + 3] - '0') * 10 + (buf[plen + 4] - '0');
}

/* ---- the probe in the loop ---------------------------------------------- */

struct probe {
    struct loop *loop;
    const struct probe_config *cfg;
    struct agent_state *state;
    int fd;                  /* -1 when no probe is in flight */
    bool connected;
    long timeout_timer;
    long tick_timer;
    uint64_t started_us;
    char request[700];
    size_t request_len, sent;
    char response[256];
    size_t response_len;
    pid_t pid_at_start;      /* the child this probe is asking */
    pid_t result_pid;        /* the child the current status is about */
    bool started;
};

static void set_probe_state(struct probe *pr, bool passed, const char *reason)
{
    struct probe_state *ps = &pr->state->probe;
    pr->result_pid = pr->pid_at_start;
    ps->last_latency_s = (double)(util_mono_us() - pr->started_us) / 1e6;
    enum probe_status now;
    if (passed) {
        ps->passes++;
        now = PROBE_OK;
    } else {
        ps->failures++;
        /* Before the first pass Tomcat is still starting, not failing. */
        now = ps->status == PROBE_STARTING || ps->status == PROBE_UNSET ? PROBE_STARTING
                                                                      : PROBE_FAILING;
    }
    bool changed = ps->status != now;
    if (changed) {
        ps->status = now;
        ps->since_ms = wall_now_ms();
    }
    if (strcmp(ps->reason, reason) != 0)
        snprintf(ps->reason, sizeof ps->reason, "%s", reason);

    if (changed && passed)
        log_info("Tomcat probe passing", LF_STR("url", pr->cfg->url),
                 LF_DOUBLE("latency_s", ps->last_latency_s));
    else if (changed)
        log_warn("Tomcat probe failing", LF_STR("url", pr->cfg->url),
                 LF_STR("reason", reason));
    else if (!passed)
        log_debug("Tomcat probe failed", LF_STR("url", pr->cfg->url),
                  LF_STR("reason", reason), LF_STR("status", probe_status_name(now)));
    state_changed(pr->state);
}

static void probe_end(struct probe *pr, bool passed, const char *reason)
{
    if (pr->fd >= 0) {
        loop_del_fd(pr->loop, pr->fd);
        close(pr->fd);
        pr->fd = -1;
    }
    if (pr->timeout_timer > 0) {
        loop_timer_cancel(pr->loop, pr->timeout_timer);
        pr->timeout_timer = 0;
    }
    set_probe_state(pr, passed, reason);
}

static void probe_fail_errno(struct probe *pr, const char *what, int err)
{
    char reason[STATE_REASON_MAX];
    snprintf(reason, sizeof reason, "%s: %s", what, strerror(err));
    probe_end(pr, false, reason);
}

static void on_probe_timeout(struct loop *loop, void *ctx)
{
    struct probe *pr = ctx;
    (void)loop;
    pr->timeout_timer = 0; /* fired: already forgotten by the loop */
    probe_end(pr, false, pr->connected ? "no response within 2 s" : "no connection within 2 s");
}

static void on_probe_event(struct loop *loop, int fd, uint32_t events, void *ctx)
{
    struct probe *pr = ctx;
    (void)events;

    if (!pr->connected) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err != 0) {
            probe_fail_errno(pr, "connect", err);
            return;
        }
        pr->connected = true;
    }
    while (pr->sent < pr->request_len) {
        ssize_t n = send(fd, pr->request + pr->sent, pr->request_len - pr->sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            probe_fail_errno(pr, "send", errno);
            return;
        }
        pr->sent += (size_t)n;
        if (pr->sent == pr->request_len && loop_mod_fd(loop, fd, EPOLLIN) != 0) {
            probe_fail_errno(pr, "epoll", errno);
            return;
        }
    }
    for (;;) {
        size_t space = sizeof pr->response - pr->response_len;
        ssize_t n = read(fd, pr->response + pr->response_len, space);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            probe_fail_errno(pr, "read", errno);
            return;
        }
        if (n == 0) {
            probe_end(pr, false, "connection closed before a status line");
            return;
        }
        pr->response_len += (size_t)n;
        int code = probe_status_code(pr->response, pr->response_len);
        if (code < 0) {
            probe_end(pr, false, "the answer is not HTTP/1.x");
            return;
        }
        if (code > 0) {
            char reason[64];
            snprintf(reason, sizeof reason, "HTTP %d", code);
            probe_end(pr, code >= 200 && code <= 299, reason);
            return;
        }
        if (pr->response_len == sizeof pr->response) {
            probe_end(pr, false, "no status line in the answer");
            return;
        }
    }
}

/* The traffic count leaves the probe's connections out: it knows them on
 * Tomcat's side by their remote end, which is this socket's local end (bound
 * by connect). The last minute's are kept: Tomcat's end of a probe's
 * connection outlives the probe, in TIME_WAIT when Tomcat closed first. */
static void remember_own_end(struct agent_state *state, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    struct probe_state *ps = &state->probe;
    struct probe_peer *peer = &ps->recent[ps->recent_next % PROBE_RECENT_PEERS];

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    memset(peer, 0, sizeof *peer);
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
        peer->addr[10] = 0xff;
        peer->addr[11] = 0xff;
        memcpy(peer->addr + 12, &s4->sin_addr, 4);
        peer->port = ntohs(s4->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
        memcpy(peer->addr, &s6->sin6_addr, 16);
        peer->port = ntohs(s6->sin6_port);
    } else {
        return;
    }
    ps->recent_next = (ps->recent_next + 1) % PROBE_RECENT_PEERS;
}

static void on_probe_tick(struct loop *loop, void *ctx)
{
    struct probe *pr = ctx;
    if (pr->fd >= 0)
        return; /* the previous probe is still within its time limit */

    pr->started_us = util_mono_us();
    pr->pid_at_start = pr->state->child_pid;
    pr->connected = false;
    pr->sent = 0;
    pr->response_len = 0;
    const struct probe_target *t = &pr->cfg->target;
    int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        probe_fail_errno(pr, "socket", errno);
        return;
    }
    pr->fd = fd;
    if (connect(fd, (const struct sockaddr *)&t->addr, t->addr_len) != 0 && errno != EINPROGRESS) {
        probe_fail_errno(pr, "connect", errno);
        return;
    }
    remember_own_end(pr->state, fd);
    if (loop_add_fd(loop, fd, EPOLLOUT, on_probe_event, pr) != 0) {
        int saved = errno;
        close(fd);
        pr->fd = -1;
        probe_fail_errno(pr, "epoll", saved);
        return;
    }
    pr->timeout_timer = loop_timer_add(loop, PROBE_TIMEOUT_MS, 0, on_probe_timeout, pr);
    if (pr->timeout_timer < 0) {
        pr->timeout_timer = 0;
        probe_end(pr, false, "cannot arm the probe's time limit");
    }
}

void probe_sync_child(struct probe *pr)
{
    if (pr == NULL || !pr->started)
        return;
    struct agent_state *state = pr->state;
    struct probe_state *ps = &state->probe;
    if (!state->child_running ||
        state->child_pid == pr->result_pid || ps->status == PROBE_STARTING)
        return;
    /* A result about the previous process says nothing about this one. */
    ps->status = PROBE_STARTING;
    snprintf(ps->reason, sizeof ps->reason,
             "the dashboard process was restarted: waiting for its first probe to pass");
    ps->since_ms = wall_now_ms();
    pr->result_pid = state->child_pid;
    log_info("Tomcat probe reset: the dashboard process was restarted",
             LF_INT("pid", state->child_pid));
}

struct probe *probe_start(struct loop *loop, const struct probe_config *cfg,
                          struct agent_state *state)
{
    struct probe_state *ps = &state->probe;
    struct probe *pr = calloc(1, sizeof *pr);
    if (pr == NULL) {
        log_error("cannot start the Tomcat probe: out of memory");
        return NULL;
    }
    pr->fd = -1;
    pr->state = state;

    ps->since_ms = wall_now_ms();
    if (!cfg->enabled) {
        ps->status = PROBE_OK;
        snprintf(ps->reason, sizeof ps->reason, "probe disabled (PI_AGENT_PROBE_URL=off)");
        log_info("Tomcat probe disabled (PI_AGENT_PROBE_URL=off)");
        return pr;
    }
    ps->status = PROBE_STARTING;
    snprintf(ps->reason, sizeof ps->reason, "waiting for the first probe to pass");

    pr->loop = loop;
    pr->cfg = cfg;
    pr->result_pid = state->child_pid;
    int n = snprintf(pr->request, sizeof pr->request,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pi-agent-probe\r\n"
                     "Accept: */*\r\nConnection: close\r\n\r\n",
                     cfg->target.path, cfg->target.host_header);
    if (n < 0 || (size_t)n >= sizeof pr->request) {
        log_error("PI_AGENT_PROBE_URL is too long for a request line");
        free(pr);
        return NULL;
    }
    pr->request_len = (size_t)n;
    uint64_t every = (uint64_t)cfg->interval_s * 1000u;
    pr->tick_timer = loop_timer_add(loop, 0, every, on_probe_tick, pr);
    if (pr->tick_timer < 0) {
        log_error("cannot start the Tomcat probe timer");
        free(pr);
        return NULL;
    }
    pr->started = true;
    log_info("Tomcat probe started", LF_STR("url", cfg->url),
             LF_INT("interval_s", cfg->interval_s), LF_INT("timeout_ms", PROBE_TIMEOUT_MS));
    return pr;
}

void probe_free(struct probe *pr)
{
    if (pr == NULL)
        return;
    if (pr->started) {
        if (pr->fd >= 0) {
            loop_del_fd(pr->loop, pr->fd);
            close(pr->fd);
        }
        if (pr->timeout_timer > 0)
            loop_timer_cancel(pr->loop, pr->timeout_timer);
        if (pr->tick_timer > 0)
            loop_timer_cancel(pr->loop, pr->tick_timer);
    }
    free(pr);
}
