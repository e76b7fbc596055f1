/* libFuzzer target for the health endpoint's request parser. Besides "no
 * crash, no UB", it checks two properties: feeding the bytes in two pieces
 * gives the same answer as feeding them at once (the incremental scan is
 * resumable), and every pointer in a parsed request lies inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_parser.h"

static void check_inside(const uint8_t *data, size_t size, const char *p, size_t len)
{
    const char *base = (const char *)data;
    if (len == 0)
        return;
    if (p < base || p + len > base + size)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_parser whole, split;
    struct http_request a, b;

    http_parser_reset(&whole);
    enum http_parse_result ra = http_parse(&whole, (const char *)data, size, &a);

    size_t cut = size ? data[0] % (size + 1) : 0;
    http_parser_reset(&split);
    enum http_parse_result rb = http_parse(&split, (const char *)data, cut, &b);
    if (rb == HTTP_PARSE_INCOMPLETE)
        rb = http_parse(&split, (const char *)data, size, &b);
    else if (rb == HTTP_PARSE_DONE && b.head_len != a.head_len)
        abort(); /* a complete head in the prefix is the same head */

    if (ra != rb)
        abort();
    if (ra == HTTP_PARSE_ERROR) {
        if (a.error_status != b.error_status || !a.error_reason)
            abort();
        if (a.error_status != 400 && a.error_status != 431 && a.error_status != 501 &&
            a.error_status != 505)
            abort();
        if (a.error_status == 431 && size < HTTP_MAX_HEAD_BYTES)
            abort();
    }
    if (ra == HTTP_PARSE_DONE) {
        if (a.head_len == 0 || a.head_len > size || a.head_len > HTTP_MAX_HEAD_BYTES)
            abort();
        if (a.path_len == 0 || a.method_len == 0)
            abort();
        /* An absolute-form target without a path gets the static "/". */
        if (!(a.path_len == 1 && a.path[0] == '/'))
            check_inside(data, a.head_len, a.path, a.path_len);
        check_inside(data, a.head_len, a.method_name, a.method_len);
        if (a.version_minor < 0 || a.version_minor > 9)
            abort();
        if (memchr(a.path, '?', a.path_len) || memchr(a.path, ' ', a.path_len))
            abort();
    }
    return 0;
}
