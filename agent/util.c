/* util: see util.h. */
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static struct timespec mono_now(void)
{
    struct timespec ts = { 0, 0 };
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts;
}

uint64_t util_mono_ms(void)
{
    struct timespec ts = mono_now();
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t util_mono_us(void)
{
    struct timespec ts = mono_now();
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

double util_mono_s(void)
{
    struct timespec ts = mono_now();
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

long util_read_fd(int fd, char *buf, size_t cap)
{
    if (cap == 0) {
        errno = EINVAL;
        return -1;
    }
    size_t n = 0;
    for (;;) {
        if (n == cap - 1) {
            /* full: one more byte tells a file of exactly cap - 1 from a bigger one */
            char probe;
            ssize_t r = read(fd, &probe, 1);
            if (r < 0 && errno == EINTR)
                continue;
            buf[n] = '\0';
            if (r < 0)
                return -1;
            if (r > 0) {
                errno = EFBIG;
                return -1;
            }
            return (long)n;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            buf[n] = '\0';
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    return (long)n;
}

long util_read_at(int dirfd, const char *name, char *buf, size_t cap)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0)
        return -1;
    long n = util_read_fd(fd, buf, cap);
    int saved = errno;
    close(fd);
    errno = saved;
    return n;
}

int util_sockaddr_from_ip(const char *ip, uint16_t port, struct sockaddr_storage *out,
                          socklen_t *len)
{
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *s4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        *len = sizeof(*s4);
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        *len = sizeof(*s6);
        return 0;
    }
    errno = EINVAL;
    return -1;
}

uint64_t util_random64(void)
{
    uint64_t r;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == (ssize_t)sizeof(r))
        return r;
    /* pool not ready (early boot): spread, not secrecy, is what callers need */
    return (util_mono_us() ^ ((uint64_t)getpid() << 32)) * 0x9E3779B97F4A7C15ull;
}

uint64_t util_jitter_ms(uint64_t base_ms, uint64_t r)
{
    uint64_t spread = base_ms / 5;
    return base_ms - base_ms / 10 + (spread ? r % spread : 0);
}

void util_first_error_add(struct util_first_error *e, const char *fmt, ...)
{
    if (e->count++ > 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
}
