/* wait_tcp: see wait_tcp.h. */
#include "wait_tcp.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static bool all_digits(const char *s, size_t max_len)
{
    size_t n = strlen(s);

    if (n == 0 || n > max_len)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

int wait_tcp_parse_args(int argc, char **argv, struct wait_tcp_args *out, char *err,
                              size_t errcap)
{
    memset(out, 0, sizeof *out);
    if (argc != 4) {
        snprintf(err, errcap, "usage: pi-agent wait-tcp HOST PORT SECONDS");
        return -1;
    }
    if (argv[1][0] == '\0' || strlen(argv[1]) >= sizeof out->host) {
        snprintf(err, errcap, "wait-tcp: HOST must be a host name or address of 1 to %zu bytes",
                 sizeof out->host - 1);
        return -1;
    }
    if (!all_digits(argv[2], 5) || atoi(argv[2]) < 1 || atoi(argv[2]) > 65535) {
        snprintf(err, errcap, "wait-tcp: PORT must be a number from 1 to 65535, got \"%.20s\"",
                 argv[2]);
        return -1;
    }
    if (!all_digits(argv[3], 5) || atol(argv[3]) > 86400) {
        snprintf(err, errcap, "wait-tcp: SECONDS must be a number from 0 to 86400, got \"%.20s\"",
                 argv[3]);
        return -1;
    }
    memcpy(out->host, argv[1], strlen(argv[1]) + 1);
    snprintf(out->port, sizeof out->port, "%d", atoi(argv[2]));
    out->seconds = (unsigned)atol(argv[3]);
    return 0;
}

/* One attempt at every address HOST resolves to. */
static int try_connect(const struct wait_tcp_args *a, int timeout_ms, char *why, size_t cap)
{
    struct addrinfo hints, *res, *ai;
    int rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rc = getaddrinfo(a->host, a->port, &hints, &res);
    if (rc != 0) {
        snprintf(why, cap, "cannot resolve the host: %s", gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        int soerr = 0;
        socklen_t len = sizeof soerr;
        struct pollfd p;

        if (fd < 0) {
            snprintf(why, cap, "socket: %s", strerror(errno));
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            close(fd);
            freeaddrinfo(res);
            return 0;
        }
        if (errno != EINPROGRESS) {
            snprintf(why, cap, "%s", strerror(errno));
            close(fd);
            continue;
        }
        p.fd = fd;
        p.events = POLLOUT;
        p.revents = 0;
        do
            rc = poll(&p, 1, timeout_ms);
        while (rc < 0 && errno == EINTR);
        if (rc == 0) {
            snprintf(why, cap, "no answer within %d ms", timeout_ms);
            close(fd);
            continue;
        }
        if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
            soerr = errno;
        close(fd);
        if (soerr == 0) {
            freeaddrinfo(res);
            return 0;
        }
        snprintf(why, cap, "%s", strerror(soerr));
    }
    freeaddrinfo(res);
    return -1;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int wait_tcp_main(int argc, char **argv)
{
    struct wait_tcp_args a;
    char err[160];
    char why[160] = "not tried";
    uint64_t start, deadline, next_note;
    unsigned attempts = 0;

    if (wait_tcp_parse_args(argc, argv, &a, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 64; /* EX_USAGE */
    }
    start = util_mono_ms();
    deadline = start + (uint64_t)a.seconds * 1000u;
    next_note = start;
    for (;;) {
        uint64_t now = util_mono_ms();
        uint64_t left = deadline > now ? deadline - now : 0;
        /* Each attempt waits at most 3 s, and not past the deadline. */
        int timeout = 3000;

        if (a.seconds > 0 && left < 3000)
            timeout = left < 100 ? 100 : (int)left;
        attempts++;
        if (try_connect(&a, timeout, why, sizeof why) == 0) {
            printf("wait-tcp: %s:%s is reachable (attempt %u, after %.1f s)\n", a.host, a.port,
                   attempts, (double)(util_mono_ms() - start) / 1000.0);
            fflush(stdout);
            return 0;
        }
        now = util_mono_ms();
        if (now >= deadline)
            break;
        if (now >= next_note) {
            printf("wait-tcp: waiting for %s:%s (%s); %llu s left\n", a.host, a.port, why,
                   (unsigned long long)((deadline - now + 999) / 1000u));
            fflush(stdout);
            next_note = now + 10000;
        }
        sleep_ms(deadline - now < 1000 ? deadline - now : 1000);
    }
    fprintf(stderr, "wait-tcp: %s:%s not reachable within %u s after %u attempts: %s\n", a.host,
            a.port, a.seconds, attempts, why);
    return 1;
}
