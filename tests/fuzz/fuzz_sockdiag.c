/* libFuzzer target over the traffic count's pure parsers: a NETLINK_SOCK_DIAG
 * datagram and /proc/net/tcp{,6} text. Each must accept any bytes without
 * crashing or reading out of bounds, and keep its invariants. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sockdiag.h"

static void check_conn(const struct sockdiag_conn *c, void *ctx)
{
    size_t *count = ctx;
    if (c->family != AF_INET && c->family != AF_INET6)
        abort();
    (*count)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy, so ASan sees the exact bounds. */
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);

    size_t count = 0;
    int err = -1;
    uint32_t seq = 0;
    if (size >= 12)
        memcpy(&seq, copy + 8, 4); /* the first message's: so its socket messages count */
    enum sockdiag_status st = sockdiag_parse(copy, size, seq, check_conn, &count, &err);
    if (st == SOCKDIAG_FAILED ? err <= 0 || err >= 4096 : err != 0)
        abort();
    if (st != SOCKDIAG_MORE && st != SOCKDIAG_DONE && st != SOCKDIAG_FAILED &&
        st != SOCKDIAG_MALFORMED)
        abort();

    for (int family = AF_INET; family <= AF_INET6; family += AF_INET6 - AF_INET) {
        size_t used = sockdiag_proc_parse((const char *)copy, size, family, check_conn, &count);
        if (used > size || memchr(copy + used, '\n', size - used) != NULL)
            abort();
        if (used > 0 && copy[used - 1] != '\n')
            abort();
    }
    free(copy);
    return 0;
}
