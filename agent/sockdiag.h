/* sockdiag: the kernel's table of TCP sockets, read as bytes. Two sources:
 * a NETLINK_SOCK_DIAG (inet_diag) dump, which also gives each socket's
 * tcp_info (bytes received), and the text of /proc/net/tcp and tcp6, which
 * gives only the sockets. Everything here is pure (bytes in, sockets out):
 * the module that opens the socket and reads the files is traffic.c.
 *
 * The wire structures are spelled out here (the kernel ABI is stable and the
 * static build has no kernel headers); names follow linux/inet_diag.h. */
#ifndef PI_SOCKDIAG_H
#define PI_SOCKDIAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* TCP states (include/net/tcp_states.h) and the dump's state mask: a
 * connection's whole life on the server side after accept, so bytes that
 * arrived just before a close are still seen and a connection that closed
 * between two samples leaves a trace (TIME_WAIT, no tcp_info) for 60 s. */
#define SOCKDIAG_TCP_ESTABLISHED 1
#define SOCKDIAG_TCP_TIME_WAIT 6
#define SOCKDIAG_STATES ((1u << 1) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 8) | \
                         (1u << 9) | (1u << 11))
#define SOCKDIAG_REQUEST_SIZE 92   /* nlmsghdr + inet_diag_req_v2 + port filter */

/* One socket as a source reports it. Addresses are 16 bytes, IPv4 as
 * IPv4-mapped IPv6 (::ffff:a.b.c.d), so both families compare alike. */
struct sockdiag_conn {
    uint8_t family;            /* AF_INET or AF_INET6 as the kernel gave it */
    uint8_t state;             /* TCP state number (1 = established) */
    uint16_t local_port, remote_port;
    uint8_t local_addr[16], remote_addr[16];
    uint32_t inode;            /* 0 for a socket no process holds */
    uint64_t cookie;           /* netlink only: unique for the socket's life */
    bool has_bytes;            /* netlink with tcp_info long enough */
    uint64_t bytes_received;   /* tcpi_bytes_received */
};

typedef void (*sockdiag_conn_cb)(const struct sockdiag_conn *c, void *ctx);

/* Pure: writes a SOCK_DIAG_BY_FAMILY dump request for the TCP sockets in
 * SOCKDIAG_STATES of family (AF_INET or AF_INET6) whose local port is port,
 * asking for tcp_info. Returns the request's length (SOCKDIAG_REQUEST_SIZE), or 0
 * when cap is too small. */
size_t sockdiag_build_request(void *buf, size_t cap, int family, uint16_t port, uint32_t seq);

enum sockdiag_status {
    SOCKDIAG_MORE = 0,       /* the dump goes on: read the next datagram */
    SOCKDIAG_DONE = 1,       /* NLMSG_DONE seen */
    SOCKDIAG_FAILED = -1,    /* the kernel answered an error: *kernel_errno */
    SOCKDIAG_MALFORMED = -2, /* a message that does not fit its datagram */
};

/* Pure: walks one datagram of a dump. Calls cb for every socket message
 * whose sequence number is seq (others are left-overs of an earlier dump and
 * skipped). On SOCKDIAG_FAILED, *kernel_errno is the positive errno. */
enum sockdiag_status sockdiag_parse(const void *buf, size_t len, uint32_t seq,
                                    sockdiag_conn_cb cb, void *ctx, int *kernel_errno);

/* Pure: one line of /proc/net/tcp (family AF_INET) or /proc/net/tcp6
 * (AF_INET6), without its line feed. Returns 1 and fills *out for a socket
 * line, 0 for the header or a line that does not parse. */
int sockdiag_proc_line(const char *line, size_t len, int family, struct sockdiag_conn *out);

/* Pure: every complete line in buf (up to its last line feed) through
 * sockdiag_proc_line, cb for each socket. Returns the bytes consumed, so a
 * reader keeps the rest for its next read. */
size_t sockdiag_proc_parse(const char *buf, size_t len, int family, sockdiag_conn_cb cb, void *ctx);

#endif
