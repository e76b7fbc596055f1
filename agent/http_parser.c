/* http_parser: see http_parser.h. Two passes: a cheap incremental search for
 * the end of the head (resumable, so dribbled bytes cost O(n)), then one
 * strict parse of the complete head. */
#include "http_parser.h"

#include <string.h>

static const char *const ERR_431 = "request head larger than 8 KiB";

void http_parser_reset(struct http_parser *p)
{
    memset(p, 0, sizeof(*p));
}

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-value bytes: VCHAR, obs-text, SP and HTAB. */
static bool is_field_char(unsigned char c)
{
    return c == ' ' || c == '\t' || (c >= 0x21 && c != 0x7f);
}

static bool is_target_char(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e;
}

static bool ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

static enum http_parse_result fail(struct http_request *req, int status, const char *reason)
{
    req->error_status = status;
    req->error_reason = reason;
    return HTTP_PARSE_ERROR;
}

/* One line of the head: [start, end) without its CR LF. */
struct line {
    const char *s;
    size_t len;
};

/* Next line from *pos within [.., end); the head always ends with LF, so a
 * line without one cannot occur here. */
static struct line next_line(const char *buf, size_t *pos, size_t end)
{
    struct line l = { buf + *pos, 0 };
    const char *nl = memchr(buf + *pos, '\n', end - *pos);
    size_t stop = nl ? (size_t)(nl - buf) : end;
    l.len = stop - *pos;
    if (l.len > 0 && l.s[l.len - 1] == '\r')
        l.len--;
    *pos = nl ? stop + 1 : end;
    return l;
}

/* Extracts the path of an absolute-form target ("http://host/p?q"). */
static bool absolute_path(const char *t, size_t len, const char **path, size_t *path_len)
{
    size_t skip;
    if (len >= 7 && ieq(t, 7, "http://"))
        skip = 7;
    else if (len >= 8 && ieq(t, 8, "https://"))
        skip = 8;
    else
        return false;
    const char *slash = memchr(t + skip, '/', len - skip);
    if (slash == t + skip)
        return false; /* empty authority */
    if (!slash) {
        *path = "/";
        *path_len = 1;
        return true;
    }
    *path = slash;
    *path_len = len - (size_t)(slash - t);
    return true;
}

static enum http_parse_result parse_request_line(struct line l, struct http_request *req)
{
    size_t i = 0;
    while (i < l.len && is_tchar((unsigned char)l.s[i]))
        i++;
    if (i == 0 || i >= l.len || l.s[i] != ' ')
        return fail(req, 400, "malformed request line");
    req->method_name = l.s;
    req->method_len = i;
    if (i == 3 && memcmp(l.s, "GET", 3) == 0)
        req->method = HTTP_METHOD_GET;
    else if (i == 4 && memcmp(l.s, "HEAD", 4) == 0)
        req->method = HTTP_METHOD_HEAD;
    else
        req->method = HTTP_METHOD_OTHER; /* methods are case-sensitive */

    size_t tstart = ++i;
    while (i < l.len && is_target_char((unsigned char)l.s[i]))
        i++;
    if (i == tstart || i >= l.len || l.s[i] != ' ')
        return fail(req, 400, "malformed request target");
    const char *target = l.s + tstart;
    size_t tlen = i - tstart;
    i++;

    /* "HTTP/" DIGIT "." DIGIT and nothing after it. */
    if (l.len - i != 8 || memcmp(l.s + i, "HTTP/", 5) != 0 || l.s[i + 6] != '.' ||
        l.s[i + 5] < '0' || l.s[i + 5] > '9' || l.s[i + 7] < '0' || l.s[i + 7] > '9')
        return fail(req, 400, "malformed HTTP version");
    if (l.s[i + 5] != '1')
        return fail(req, 505, "only HTTP/1.x is supported");
    req->version_minor = l.s[i + 7] - '0';

    if (target[0] == '/') {
        req->path = target;
        req->path_len = tlen;
    } else if (tlen == 1 && target[0] == '*') {
        req->path = target;
        req->path_len = 1;
    } else if (!absolute_path(target, tlen, &req->path, &req->path_len)) {
        return fail(req, 400, "malformed request target");
    }
    const char *q = memchr(req->path, '?', req->path_len);
    if (q)
        req->path_len = (size_t)(q - req->path);
    const char *frag = memchr(req->path, '#', req->path_len);
    if (frag)
        return fail(req, 400, "fragment in request target");
    return HTTP_PARSE_DONE;
}

/* Content-Length: 1*DIGIT, at most 18 digits so it cannot overflow. */
static bool parse_length(const char *v, size_t len, uint64_t *out)
{
    if (len == 0 || len > 18)
        return false;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    *out = n;
    return true;
}

/* Connection: a comma-separated list of tokens. */
static void parse_connection(const char *v, size_t len, bool *close, bool *keep_alive)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (ieq(v + s, i - s, "close"))
            *close = true;
        else if (ieq(v + s, i - s, "keep-alive"))
            *keep_alive = true;
    }
}

static enum http_parse_result parse_head(const char *buf, size_t start, size_t end,
                                         struct http_request *req)
{
    size_t pos = start;
    enum http_parse_result r = parse_request_line(next_line(buf, &pos, end), req);
    if (r != HTTP_PARSE_DONE)
        return r;

    int hosts = 0;
    bool have_length = false, conn_close = false, conn_keep_alive = false;
    for (;;) {
        struct line l = next_line(buf, &pos, end);
        if (l.len == 0)
            break; /* the empty line that ends the head */
        if (l.s[0] == ' ' || l.s[0] == '\t')
            return fail(req, 400, "obsolete header line folding");
        size_t n = 0;
        while (n < l.len && is_tchar((unsigned char)l.s[n]))
            n++;
        if (n == 0 || n >= l.len || l.s[n] != ':')
            return fail(req, 400, "malformed header field");
        size_t vs = n + 1, ve = l.len;
        for (size_t k = vs; k < ve; k++)
            if (!is_field_char((unsigned char)l.s[k]))
                return fail(req, 400, "invalid character in header value");
        while (vs < ve && (l.s[vs] == ' ' || l.s[vs] == '\t'))
            vs++;
        while (ve > vs && (l.s[ve - 1] == ' ' || l.s[ve - 1] == '\t'))
            ve--;
        const char *v = l.s + vs;
        size_t vlen = ve - vs;

        if (ieq(l.s, n, "host")) {
            if (++hosts > 1)
                return fail(req, 400, "more than one Host header");
        } else if (ieq(l.s, n, "content-length")) {
            uint64_t len;
            if (!parse_length(v, vlen, &len))
                return fail(req, 400, "invalid Content-Length");
            if (have_length && len != req->content_length)
                return fail(req, 400, "conflicting Content-Length headers");
            have_length = true;
            req->content_length = len;
        } else if (ieq(l.s, n, "transfer-encoding")) {
            return fail(req, 501, "Transfer-Encoding is not supported");
        } else if (ieq(l.s, n, "connection")) {
            parse_connection(v, vlen, &conn_close, &conn_keep_alive);
        }
    }
    if (req->version_minor >= 1 && hosts == 0)
        return fail(req, 400, "HTTP/1.1 request without Host header");
    req->keep_alive = !conn_close && (req->version_minor >= 1 || conn_keep_alive);
    return HTTP_PARSE_DONE;
}

enum http_parse_result http_parse(struct http_parser *p, const char *buf, size_t len,
                                  struct http_request *req)
{
    memset(req, 0, sizeof(*req));
    size_t limit = len < HTTP_MAX_HEAD_BYTES ? len : HTTP_MAX_HEAD_BYTES;
    /* A buffer that shrank means the caller broke the contract: start over
     * rather than read stale offsets. */
    if (p->scanned > len)
        http_parser_reset(p);

    for (size_t i = p->scanned; i < limit; i++) {
        if (buf[i] != '\n')
            continue;
        size_t line_len = i - p->line_start;
        if (line_len > 0 && buf[i - 1] == '\r')
            line_len--;
        if (line_len > 0) {
            p->seen_content = true;
            p->line_start = i + 1;
            continue;
        }
        if (!p->seen_content) {
            /* RFC 9112 2.2: ignore empty lines before the request-line. */
            p->line_start = i + 1;
            p->head_start = i + 1;
            continue;
        }
        p->scanned = i + 1;
        req->head_len = i + 1;
        return parse_head(buf, p->head_start, i + 1, req);
    }
    p->scanned = limit;
    if (len >= HTTP_MAX_HEAD_BYTES)
        return fail(req, 431, ERR_431);
    return HTTP_PARSE_INCOMPLETE;
}

const char *http_status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}
