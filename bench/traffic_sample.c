/* The cost of one traffic sample (traffic.h) with 10, 1,000 and 10,000
 * established loopback connections to one port: wall time and CPU time per
 * sample, for the netlink dump the agent uses and, in the same run, for the
 * /proc/net/tcp reading it falls back to (the peer). Also checks that both
 * count every connection. Bounded: SAMPLES samples per size, connections
 * opened once and closed at the end. RLIMIT_NOFILE is raised here, and the
 * client ends live in a forked process, so each process holds one end of
 * each connection. It runs in a network namespace of its own (when it may
 * create one), so sockets of other programs on the machine neither add to
 * the figures nor to the counts.
 *
 *   build/bench/traffic_sample [MAX_CONNECTIONS]   (default 10000) */
#include <arpa/inet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "traffic.h"

#define SAMPLES 20

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

struct cost {
    double wall_ms, cpu_ms;
    uint64_t connections, bytes;
};

static int measure(enum traffic_source src, uint16_t port, struct cost *c)
{
    struct traffic_sample s;
    double w0 = now_s(), c0 = cpu_s();
    for (int i = 0; i < SAMPLES; i++)
        if (traffic_sample_once(src, port, NULL, 0, &s) != 0)
            return -1;
    c->wall_ms = (now_s() - w0) * 1000.0 / SAMPLES;
    c->cpu_ms = (cpu_s() - c0) * 1000.0 / SAMPLES;
    c->connections = s.connections;
    c->bytes = s.bytes;
    return 0;
}

/* A network namespace of our own with its loopback up; false when the
 * process may not create one (then the machine's is used). */
static bool isolate(void)
{
    struct ifreq ifr;
    if (unshare(CLONE_NEWNET) != 0)
        return false;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    bool up = fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 &&
              (ifr.ifr_flags |= IFF_UP, ioctl(fd, SIOCSIFFLAGS, &ifr) == 0);
    if (fd >= 0)
        close(fd);
    return up;
}

int main(int argc, char **argv)
{
    long max = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
    const long sizes[] = { 10, 1000, 10000 };
    if (max < 10 || max > 20000) {
        fprintf(stderr, "traffic_sample: MAX_CONNECTIONS must be 10-20000\n");
        return 2;
    }

    bool own_netns = isolate();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1;
    rlim_t need = (rlim_t)max + 64;
    if (rl.rlim_max < need)
        rl.rlim_max = need; /* needs CAP_SYS_RESOURCE; fails clearly below otherwise */
    rl.rlim_cur = need > rl.rlim_cur ? need : rl.rlim_cur;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        fprintf(stderr, "traffic_sample: cannot raise RLIMIT_NOFILE to %lu: %s\n",
                (unsigned long)need, strerror(errno));
        return 1;
    }

    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 1024) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) != 0) {
        perror("traffic_sample: listener");
        return 1;
    }
    uint16_t port = ntohs(a.sin_port);
    int *fds = calloc((size_t)max, sizeof *fds);
    int to_client[2], from_client[2];
    if (fds == NULL || pipe(to_client) != 0 || pipe(from_client) != 0)
        return 1;
    pid_t client = fork();
    if (client < 0)
        return 1;
    if (client == 0) {
        /* The client ends: open connections up to each count asked for,
         * send a request head on each, say so; exit when the pipe closes. */
        long target, have = 0;
        close(lfd);
        close(to_client[1]);
        close(from_client[0]);
        while (read(to_client[0], &target, sizeof target) == (ssize_t)sizeof target) {
            for (; have < target; have++) {
                int c = socket(AF_INET, SOCK_STREAM, 0);
                if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) != 0 ||
                    send(c, "GET / HTTP/1.1\r\n\r\n", 18, 0) != 18) {
                    perror("traffic_sample: client");
                    _exit(1);
                }
            }
            if (write(from_client[1], "k", 1) != 1)
                _exit(1);
        }
        _exit(0);
    }
    close(to_client[0]);
    close(from_client[1]);
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("traffic sample: one sample = IPv4 + IPv6 dump of the connections to port %u\n"
           "(mean of %d samples per size; CPU = this process's user+system time; %s)\n\n",
           port, SAMPLES, own_netns ? "a network namespace of its own"
                                    : "the machine's network namespace: other sockets count too");
    printf("%12s | %14s %14s | %14s %14s | %9s\n", "connections", "netlink ms", "netlink CPU ms",
           "/proc ms", "/proc CPU ms", "/proc / nl");
    long open_n = 0;
    int rc = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0] && sizes[k] <= max; k++) {
        long target = sizes[k];
        char ack;
        if (write(to_client[1], &target, sizeof target) != (ssize_t)sizeof target)
            return 1;
        while (open_n < target) {
            int fd = accept(lfd, NULL, NULL);
            if (fd < 0) {
                perror("traffic_sample: accept");
                return 1;
            }
            fds[open_n++] = fd;
        }
        if (read(from_client[0], &ack, 1) != 1) {
            fprintf(stderr, "traffic_sample: the client process failed\n");
            return 1;
        }
        struct cost nl, pr;
        if (measure(TRAFFIC_NETLINK, port, &nl) != 0 || measure(TRAFFIC_PROC, port, &pr) != 0) {
            perror("traffic_sample: sample");
            return 1;
        }
        printf("%12ld | %14.3f %14.3f | %14.3f %14.3f | %8.1fx\n", open_n, nl.wall_ms, nl.cpu_ms,
               pr.wall_ms, pr.cpu_ms, nl.wall_ms > 0 ? pr.wall_ms / nl.wall_ms : 0.0);
        if (nl.connections != (uint64_t)open_n || pr.connections != (uint64_t)open_n ||
            nl.bytes != (uint64_t)open_n * 18) {
            printf("  MISCOUNT: netlink %llu connections %llu bytes, /proc %llu connections\n",
                   (unsigned long long)nl.connections, (unsigned long long)nl.bytes,
                   (unsigned long long)pr.connections);
            rc = 1;
        }
    }
    close(to_client[1]);
    waitpid(client, NULL, 0);
    for (long i = 0; i < open_n; i++)
        close(fds[i]);
    close(lfd);
    free(fds);
    if (rc == 0)
        printf("\nboth sources counted every connection; netlink also every byte received\n");
    return rc;
}
