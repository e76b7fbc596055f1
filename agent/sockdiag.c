/* sockdiag: see sockdiag.h. Every read of the input is bounds-checked
 * against the datagram or line: the bytes come from the kernel, but the
 * parser is fuzzed as if they came from anyone. */
#include "sockdiag.h"

#include <string.h>
#include <sys/socket.h>

/* linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h */
#define NLMSG_HDRLEN_ 16
#define NLMSG_ERROR_ 2
#define NLMSG_DONE_ 3
#define NLM_F_REQUEST_ 0x1
#define NLM_F_DUMP_ 0x300
#define SOCK_DIAG_BY_FAMILY_ 20
#define INET_DIAG_REQ_BYTECODE_ 1
#define INET_DIAG_INFO_ 2
#define INET_DIAG_BC_S_GE_ 2
#define INET_DIAG_BC_S_LE_ 3
#define INET_DIAG_MSG_LEN_ 72   /* family, state, timer, retrans, sockid (48), 5 x u32 */
#define INET_DIAG_REQ_V2_LEN_ 56
#define RTA_HDRLEN_ 4
#define TCPI_BYTES_RECEIVED_OFF 128 /* struct tcp_info, Linux 4.1 and later */
#define IPPROTO_TCP_ 6

/* A negative errno the kernel put in a reply; anything outside errno's range
 * (a forged or corrupt reply, INT32_MIN included) reads as EIO. */
static int errno_of(int32_t e)
{
    return e < 0 && e > -4096 ? -e : 5 /* EIO */;
}

static size_t align4(size_t n)
{
    return (n + 3u) & ~(size_t)3u;
}

static void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, sizeof v);
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, sizeof v);
}

static uint16_t get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

/* v4 as ::ffff:a.b.c.d */
static void map_v4(uint8_t out[16], const uint8_t v4[4])
{
    memset(out, 0, 10);
    out[10] = 0xff;
    out[11] = 0xff;
    memcpy(out + 12, v4, 4);
}

size_t sockdiag_build_request(void *buf, size_t cap, int family, uint16_t port, uint32_t seq)
{
    uint8_t *p = buf;
    if (cap < SOCKDIAG_REQUEST_SIZE)
        return 0;
    memset(p, 0, SOCKDIAG_REQUEST_SIZE);
    /* nlmsghdr */
    put32(p, SOCKDIAG_REQUEST_SIZE);
    put16(p + 4, SOCK_DIAG_BY_FAMILY_);
    put16(p + 6, NLM_F_REQUEST_ | NLM_F_DUMP_);
    put32(p + 8, seq);
    /* inet_diag_req_v2: family, protocol, ext, pad, states, sockid (zero) */
    uint8_t *r = p + NLMSG_HDRLEN_;
    r[0] = (uint8_t)family;
    r[1] = IPPROTO_TCP_;
    r[2] = 1u << (INET_DIAG_INFO_ - 1);
    put32(r + 4, SOCKDIAG_STATES);
    /* The kernel keeps only sockets whose local port is >= port and <= port.
     * Each comparison is two ops: {code, yes, no} then {0, 0, port}; a jump
     * to exactly the end accepts, past it rejects (as ss builds it). */
    uint8_t *a = r + INET_DIAG_REQ_V2_LEN_;
    put16(a, RTA_HDRLEN_ + 16);
    put16(a + 2, INET_DIAG_REQ_BYTECODE_);
    uint8_t *bc = a + RTA_HDRLEN_;
    bc[0] = INET_DIAG_BC_S_GE_;
    bc[1] = 8;
    put16(bc + 2, 16 + 4);
    put16(bc + 6, port);
    bc[8] = INET_DIAG_BC_S_LE_;
    bc[9] = 8;
    put16(bc + 10, 8 + 4);
    put16(bc + 14, port);
    return SOCKDIAG_REQUEST_SIZE;
}

/* One inet_diag_msg with its attributes (payload of len bytes). */
static int parse_diag_msg(const uint8_t *m, size_t len, sockdiag_conn_cb cb, void *ctx)
{
    if (len < INET_DIAG_MSG_LEN_)
        return -1;
    struct sockdiag_conn c;
    memset(&c, 0, sizeof c);
    c.family = m[0];
    c.state = m[1];
    const uint8_t *id = m + 4;
    c.local_port = get_be16(id);
    c.remote_port = get_be16(id + 2);
    if (c.family == AF_INET) {
        map_v4(c.local_addr, id + 4);
        map_v4(c.remote_addr, id + 20);
    } else if (c.family == AF_INET6) {
        memcpy(c.local_addr, id + 4, 16);
        memcpy(c.remote_addr, id + 20, 16);
    } else {
        return 0; /* not an inet socket: nothing to report */
    }
    c.cookie = (uint64_t)get32(id + 40) | ((uint64_t)get32(id + 44) << 32);
    c.inode = get32(m + 68);

    size_t off = align4(INET_DIAG_MSG_LEN_);
    while (off + RTA_HDRLEN_ <= len) {
        size_t alen = get16(m + off);
        uint16_t type = get16(m + off + 2);
        if (alen < RTA_HDRLEN_ || alen > len - off)
            return -1;
        if ((type & 0x3fff) == INET_DIAG_INFO_ &&
            alen - RTA_HDRLEN_ >= TCPI_BYTES_RECEIVED_OFF + 8) {
            memcpy(&c.bytes_received, m + off + RTA_HDRLEN_ + TCPI_BYTES_RECEIVED_OFF, 8);
            c.has_bytes = true;
        }
        off += align4(alen);
    }
    cb(&c, ctx);
    return 0;
}

enum sockdiag_status sockdiag_parse(const void *buf, size_t len, uint32_t seq,
                                    sockdiag_conn_cb cb, void *ctx, int *kernel_errno)
{
    const uint8_t *p = buf;
    size_t off = 0;

    *kernel_errno = 0;
    while (len - off >= NLMSG_HDRLEN_) {
        const uint8_t *h = p + off;
        uint32_t mlen = get32(h);
        uint16_t type = get16(h + 4);
        uint32_t mseq = get32(h + 8);
        if (mlen < NLMSG_HDRLEN_ || mlen > len - off)
            return SOCKDIAG_MALFORMED;
        const uint8_t *payload = h + NLMSG_HDRLEN_;
        size_t plen = mlen - NLMSG_HDRLEN_;
        off += align4(mlen) < len - off ? align4(mlen) : len - off;
        if (mseq != seq)
            continue;
        if (type == NLMSG_DONE_) {
            /* A dump that failed part-way puts a negative errno here. */
            if (plen >= 4 && (int32_t)get32(payload) < 0) {
                *kernel_errno = errno_of((int32_t)get32(payload));
                return SOCKDIAG_FAILED;
            }
            return SOCKDIAG_DONE;
        }
        if (type == NLMSG_ERROR_) {
            if (plen < 4)
                return SOCKDIAG_MALFORMED;
            int32_t e = (int32_t)get32(payload);
            if (e == 0)
                continue; /* an acknowledgement */
            *kernel_errno = errno_of(e);
            return SOCKDIAG_FAILED;
        }
        if (type != SOCK_DIAG_BY_FAMILY_)
            continue;
        if (parse_diag_msg(payload, plen, cb, ctx) != 0)
            return SOCKDIAG_MALFORMED;
    }
    return off == len ? SOCKDIAG_MORE : SOCKDIAG_MALFORMED;
}

/* ---- /proc/net/tcp ------------------------------------------------------ */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* Reads exactly n hex digits at *p into *v. */
static int hex_n(const char **p, const char *end, int n, uint32_t *v)
{
    uint32_t x = 0;
    if (end - *p < n)
        return -1;
    for (int i = 0; i < n; i++) {
        int d = hexval((*p)[i]);
        if (d < 0)
            return -1;
        x = (x << 4) | (uint32_t)d;
    }
    *p += n;
    *v = x;
    return 0;
}

static void skip_spaces(const char **p, const char *end)
{
    while (*p < end && **p == ' ')
        (*p)++;
}

/* "0100007F:1F90": the address as the kernel's %08X of each 32-bit word in
 * host order, then the port. */
static int proc_endpoint(const char **p, const char *end, int family, uint8_t addr[16],
                         uint16_t *port)
{
    int words = family == AF_INET ? 1 : 4;
    uint8_t raw[16];
    for (int i = 0; i < words; i++) {
        uint32_t w;
        if (hex_n(p, end, 8, &w) != 0)
            return -1;
        memcpy(raw + 4 * i, &w, 4);
    }
    if (family == AF_INET)
        map_v4(addr, raw);
    else
        memcpy(addr, raw, 16);
    uint32_t pv;
    if (*p >= end || **p != ':')
        return -1;
    (*p)++;
    if (hex_n(p, end, 4, &pv) != 0)
        return -1;
    *port = (uint16_t)pv;
    return 0;
}

/* Skips one field of non-space characters. */
static int skip_field(const char **p, const char *end)
{
    skip_spaces(p, end);
    const char *start = *p;
    while (*p < end && **p != ' ')
        (*p)++;
    return *p > start ? 0 : -1;
}

int sockdiag_proc_line(const char *line, size_t len, int family, struct sockdiag_conn *out)
{
    const char *p = line, *end = line + len;
    uint32_t st;

    if (family != AF_INET && family != AF_INET6)
        return 0;
    memset(out, 0, sizeof *out);
    out->family = (uint8_t)family;
    /* "   0: " slot number */
    skip_spaces(&p, end);
    const char *slot = p;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    if (p == slot || p >= end || *p != ':')
        return 0;
    p++;
    skip_spaces(&p, end);
    if (proc_endpoint(&p, end, family, out->local_addr, &out->local_port) != 0)
        return 0;
    skip_spaces(&p, end);
    if (proc_endpoint(&p, end, family, out->remote_addr, &out->remote_port) != 0)
        return 0;
    skip_spaces(&p, end);
    if (hex_n(&p, end, 2, &st) != 0)
        return 0;
    out->state = (uint8_t)st;
    /* tx:rx, tr:when, retrnsmt, uid, timeout, then the inode */
    for (int i = 0; i < 5; i++)
        if (skip_field(&p, end) != 0)
            return 0;
    skip_spaces(&p, end);
    uint64_t inode = 0;
    const char *digits = p;
    while (p < end && *p >= '0' && *p <= '9' && p - digits < 10)
        inode = inode * 10 + (uint64_t)(*p++ - '0');
    if (p == digits || inode > UINT32_MAX || (p < end && *p != ' '))
        return 0;
    out->inode = (uint32_t)inode;
    return 1;
}

size_t sockdiag_proc_parse(const char *buf, size_t len, int family, sockdiag_conn_cb cb, void *ctx)
{
    size_t off = 0;
    for (;;) {
        const char *nl = memchr(buf + off, '\n', len - off);
        if (nl == NULL)
            return off;
        size_t llen = (size_t)(nl - (buf + off));
        struct sockdiag_conn c;
        if (sockdiag_proc_line(buf + off, llen, family, &c))
            cb(&c, ctx);
        off += llen + 1;
    }
}
