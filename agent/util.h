/* util: the small shared helpers every module uses, written once (in the
 * spirit of skalibs for s6). Each is a leaf: it depends on libc and the
 * kernel only, keeps no state, and reports failure the same way as the rest
 * of the agent: -1 with errno set, the caller explains it once.
 *
 * What lives here: the monotonic clock, reading a small file through a
 * descriptor, a socket address from an IP literal, +-10% jitter, random
 * numbers, and a "first error" record for walks that go on after an error. */
#ifndef PI_AGENT_UTIL_H
#define PI_AGENT_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* ---- clock --------------------------------------------------------------
 * CLOCK_MONOTONIC: never jumps with the wall clock. Cannot fail on Linux for
 * this clock id; a failure would read as 0. */
uint64_t util_mono_ms(void);
uint64_t util_mono_us(void);
double util_mono_s(void);

/* ---- small files --------------------------------------------------------
 * util_read_fd: reads all of fd (from its current offset) into buf, at most
 * cap - 1 bytes, and NUL-terminates it. Returns the length, or -1 with errno
 * (EFBIG when the content does not fit: buf then holds its first cap - 1
 * bytes). Retries EINTR. Does not close fd.
 * util_read_at: the same for NAME opened beneath DIRFD with O_NOFOLLOW (a
 * symlink there fails with ELOOP, never followed); AT_FDCWD and an absolute
 * NAME read a fixed system file such as /proc/self/mountinfo. */
long util_read_fd(int fd, char *buf, size_t cap);
long util_read_at(int dirfd, const char *name, char *buf, size_t cap);

/* ---- addresses ----------------------------------------------------------
 * An IPv4 or IPv6 literal (no brackets, no host names) and a port into a
 * socket address. Returns 0, or -1 with errno EINVAL when ip is not a
 * literal. */
int util_sockaddr_from_ip(const char *ip, uint16_t port, struct sockaddr_storage *out,
                          socklen_t *len);

/* ---- randomness and jitter ----------------------------------------------
 * util_random64: 64 random bits from getrandom(); never blocks (falls back to
 * the clock mixed with the pid when the pool is not ready yet: good enough
 * for jitter, never used for secrets).
 * util_jitter_ms: base_ms spread over [base - 10%, base + 10%) by a random
 * value r, so tasks started together do not act together. Pure. */
uint64_t util_random64(void);
uint64_t util_jitter_ms(uint64_t base_ms, uint64_t r);

/* ---- the first error of many --------------------------------------------
 * A walk that goes on after an error counts them all and keeps the first
 * message, which is the one worth reading. */
struct util_first_error {
    uint64_t count;
    char msg[256];
};
void util_first_error_add(struct util_first_error *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
