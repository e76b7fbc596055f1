/* health_client: see health_client.h. Blocking socket calls are fine here:
 * this runs as its own short-lived process, never inside PID 1's loop; every
 * wait is bounded by poll against one overall deadline. */
#include "health_client.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "health.h"
#include "log.h"
#include "loop.h"
#include "util.h"

#define RESPONSE_MAX (64 * 1024)

/* ---- summary (pure) ----------------------------------------------------- */

static const char *find_body(const char *resp, size_t len, size_t *body_len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (resp[i] != '\n')
            continue;
        size_t j = i + 1;
        if (j < len && resp[j] == '\r')
            j++;
        if (j < len && resp[j] == '\n') {
            *body_len = len - (j + 1);
            return resp + j + 1;
        }
    }
    *body_len = 0;
    return NULL;
}

int health_client_summary(const char *resp, size_t len, char *line, size_t cap)
{
    if (cap == 0)
        return -1;
    line[0] = '\0';
    if (len < 12 || memcmp(resp, "HTTP/1.", 7) != 0 || resp[8] != ' ' || resp[9] < '1' ||
        resp[9] > '5' || resp[10] < '0' || resp[10] > '9' || resp[11] < '0' || resp[11] > '9') {
        snprintf(line, cap, "no HTTP response from the health endpoint");
        return -1;
    }
    int code = (resp[9] - '0') * 100 + (resp[10] - '0') * 10 + (resp[11] - '0');

    size_t body_len;
    const char *body = find_body(resp, len, &body_len);
    cJSON *doc = body ? cJSON_ParseWithLength(body, body_len) : NULL;
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(doc, "status");
    if (!cJSON_IsString(status)) {
        snprintf(line, cap, "%d %s", code, code == 200 ? "ok" : "unexpected answer");
        cJSON_Delete(doc);
        return code;
    }
    size_t n = (size_t)snprintf(line, cap, "%d %s", code, status->valuestring);
    const cJSON *failing = cJSON_GetObjectItemCaseSensitive(doc, "failing");
    const cJSON *checks = cJSON_GetObjectItemCaseSensitive(doc, "checks");
    const cJSON *name;
    bool first = true;
    cJSON_ArrayForEach(name, failing)
    {
        if (!cJSON_IsString(name) || n >= cap)
            continue;
        const cJSON *check = cJSON_GetObjectItemCaseSensitive(checks, name->valuestring);
        const cJSON *reason = cJSON_GetObjectItemCaseSensitive(check, "reason");
        const cJSON *cstatus = cJSON_GetObjectItemCaseSensitive(check, "status");
        n += (size_t)snprintf(line + n, cap - n, "%s%s", first ? ": " : "; ", name->valuestring);
        if (n < cap && cJSON_IsString(cstatus))
            n += (size_t)snprintf(line + n, cap - n, " %s", cstatus->valuestring);
        if (n < cap && cJSON_IsString(reason) && reason->valuestring[0])
            n += (size_t)snprintf(line + n, cap - n, " (%s)", reason->valuestring);
        first = false;
    }
    /* /live says why in one reason. */
    const cJSON *why = cJSON_GetObjectItemCaseSensitive(doc, "reason");
    if (first && code != 200 && n < cap && cJSON_IsString(why) && why->valuestring[0])
        snprintf(line + n, cap - n, ": %s", why->valuestring);
    cJSON_Delete(doc);
    return code;
}

/* ---- the command -------------------------------------------------------- */

static int remaining_ms(uint64_t deadline)
{
    uint64_t now = loop_now_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        struct pollfd p = { .fd = fd, .events = events };
        int ms = remaining_ms(deadline);
        if (ms == 0)
            return 0;
        int r = poll(&p, 1, ms);
        if (r < 0 && errno == EINTR)
            continue;
        return r;
    }
}

static int fail_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail_line(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
    return 1;
}

/* Sends the request on a connected socket and reads the whole response
 * (Connection: close) into buf. Closes fd. */
static int exchange(int fd, uint64_t deadline, const char *host, const char *label,
                    const char *path, char *buf, size_t cap, size_t *len)
{
    char req[256];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pi-agent-health\r\n"
                     "Connection: close\r\n\r\n",
                     path, host);
    size_t sent = 0;
    while (sent < (size_t)n) {
        ssize_t w = send(fd, req + sent, (size_t)n - sent, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN && wait_fd(fd, POLLOUT, deadline) > 0)
            continue;
        if (w <= 0) {
            close(fd);
            return fail_line("unhealthy: cannot send to %s", label);
        }
        sent += (size_t)w;
    }
    *len = 0;
    for (;;) {
        if (*len == cap)
            break;
        ssize_t r = read(fd, buf + *len, cap - *len);
        if (r > 0) {
            *len += (size_t)r;
            continue;
        }
        if (r == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            if (wait_fd(fd, POLLIN, deadline) > 0)
                continue;
            close(fd);
            if (*len > 0)
                return 0; /* keep what came: the status line decides */
            return fail_line("unhealthy: no answer from %s within 2 s", label);
        }
        int e = errno;
        close(fd);
        return fail_line("unhealthy: reading from %s: %s", label, strerror(e));
    }
    close(fd);
    return 0;
}

/* Over TCP to the endpoint's address and port. */
static int fetch(const struct sockaddr *sa, socklen_t salen, const char *hostport,
                 const char *path, char *buf,
                 size_t cap, size_t *len)
{
    uint64_t deadline = loop_now_ms() + HEALTH_CLIENT_TIMEOUT_MS;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail_line("unhealthy: cannot create a socket: %s", strerror(errno));
    if (connect(fd, sa, salen) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return fail_line("unhealthy: cannot connect to %s: %s", hostport, strerror(e));
    }
    if (wait_fd(fd, POLLOUT, deadline) <= 0) {
        close(fd);
        return fail_line("unhealthy: no connection to %s within 2 s", hostport);
    }
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0) {
        close(fd);
        return fail_line("unhealthy: cannot connect to %s: %s", hostport,
                         strerror(err ? err : errno));
    }
    return exchange(fd, deadline, hostport, hostport, path, buf, cap, len);
}

/* Over the agent's unix socket, PI_AGENT_RUN_DIR/health.sock, which remote
 * clients cannot reach or fill. Returns -2 when there is no such socket to
 * talk to (no agent there, an older agent, no permission): the caller then
 * asks over TCP. Once connected, its answer (or silence) decides. */
static int fetch_local(const char *path, char *buf, size_t cap, size_t *len)
{
    char dir[CONFIG_RUN_DIR_MAX + 1];
    struct config_error err;
    if (config_run_dir(dir, sizeof dir, &err) != 0)
        return -2; /* no agent could run with that setting: ask over TCP */
    uint64_t deadline = loop_now_ms() + HEALTH_CLIENT_TIMEOUT_MS;
    /* Through the directory's descriptor: any length of PI_AGENT_RUN_DIR fits. */
    int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -2;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s", dfd, HEALTH_SOCKET_NAME);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        close(dfd);
        return -2;
    }
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    close(dfd);
    if (rc != 0) {
        close(fd);
        return -2;
    }
    char label[300];
    snprintf(label, sizeof label, "%s/%s", dir, HEALTH_SOCKET_NAME);
    return exchange(fd, deadline, "localhost", label, path, buf, cap, len);
}

static void usage(void)
{
    printf("usage: pi-agent health [--live] [--port N]\n"
           "Asks GET /health (readiness) on the local endpoint, or GET /live (liveness:\n"
           "the container check ECS acts on) with --live; exits 0 on 200, 1 otherwise.\n"
           "It asks the agent's unix socket (PI_AGENT_RUN_DIR/health.sock) first, then\n"
           "TCP on loopback; the port defaults to PI_AGENT_HEALTH_PORT (8225). --port N\n"
           "asks that TCP port only.\n");
}

int health_command(int argc, char **argv)
{
    const char *port_arg = NULL;
    const char *port_name = "PI_AGENT_HEALTH_PORT";
    const char *path = "/health";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--live") == 0) {
            path = "/live";
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port_arg = argv[++i];
            port_name = "--port";
        } else if (strncmp(argv[i], "--port=", 7) == 0) {
            port_arg = argv[i] + 7;
            port_name = "--port";
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage();
            return 0;
        } else {
            return fail_line("unhealthy: unknown argument %s (usage: pi-agent health [--live] [--port N])",
                             argv[i]);
        }
    }
    struct config_error err = { "" };
    unsigned long long port;
    if (config_parse_uint(port_name, port_arg ? port_arg : getenv("PI_AGENT_HEALTH_PORT"),
                          HEALTH_DEFAULT_PORT, 0, 65535, &port, &err) != 0)
        return fail_line("unhealthy: %s", err.msg);
    if (port == 0)
        return fail_line("unhealthy: the health endpoint is disabled (%s=0)", port_name);

    /* Ask where the server listens; a wildcard means loopback will do. */
    const char *addr = config_env_str("PI_AGENT_HEALTH_ADDR");
    if (addr == NULL || strcmp(addr, "0.0.0.0") == 0)
        addr = "127.0.0.1";
    else if (strcmp(addr, "::") == 0)
        addr = "::1";
    struct sockaddr_storage ss;
    socklen_t salen;
    char hostport[96];
    if (util_sockaddr_from_ip(addr, (uint16_t)port, &ss, &salen) != 0)
        return fail_line("unhealthy: PI_AGENT_HEALTH_ADDR is not an IP address: %.64s", addr);
    snprintf(hostport, sizeof hostport, ss.ss_family == AF_INET6 ? "[%s]:%llu" : "%s:%llu", addr,
             port);

    char *buf = malloc(RESPONSE_MAX);
    if (buf == NULL)
        return fail_line("unhealthy: out of memory");
    size_t len = 0;
    /* --port names one endpoint; without it the unix socket comes first. */
    int rc = port_arg != NULL ? -2 : fetch_local(path, buf, RESPONSE_MAX, &len);
    if (rc == -2)
        rc = fetch((struct sockaddr *)&ss, salen, hostport, path, buf, RESPONSE_MAX, &len);
    if (rc != 0) {
        free(buf);
        return 1;
    }
    char line[1024];
    int code = health_client_summary(buf, len, line, sizeof line);
    free(buf);
    printf("%s\n", line);
    fflush(stdout);
    return code == 200 ? 0 : 1;
}
