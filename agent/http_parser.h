/* http_parser: a pure, incremental HTTP/1.1 request-head parser for the
 * health endpoint. Bytes in, result out: no allocation, no I/O. The caller
 * keeps the bytes of a connection in one buffer and calls http_parse each
 * time more arrive; the parser remembers how far it has already looked so a
 * client sending one byte at a time costs linear work, not quadratic.
 *
 * What it accepts (RFC 9112, strict where laxness would only help attackers):
 *   - request-line `METHOD SP target SP HTTP/1.x`, single spaces;
 *   - CRLF or bare LF line ends, empty lines before the request-line;
 *   - header fields `name: value` (no space before the colon, no obs-fold);
 *   - HTTP/1.1 requests must carry exactly one Host;
 *   - Content-Length (one value, digits only) is reported so the caller can
 *     skip a body; Transfer-Encoding is refused with 501.
 * The whole head (request-line, fields and the empty line) must fit in
 * HTTP_MAX_HEAD_BYTES, otherwise the answer is 431. */
#ifndef PI_HTTP_PARSER_H
#define PI_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEAD_BYTES 8192

enum http_method { HTTP_METHOD_GET, HTTP_METHOD_HEAD, HTTP_METHOD_OTHER };

enum http_parse_result {
    HTTP_PARSE_INCOMPLETE, /* need more bytes */
    HTTP_PARSE_DONE,       /* one request head parsed: see http_request */
    HTTP_PARSE_ERROR,      /* answer error_status with Connection: close */
};

/* Pointers point into the buffer given to http_parse: they are valid until
 * the caller moves or changes those bytes. */
struct http_request {
    enum http_method method;
    const char *method_name;   /* the method token as sent */
    size_t method_len;
    const char *path;          /* target path, without the query string */
    size_t path_len;
    int version_minor;         /* 0 or 1 (HTTP/1.x) */
    bool keep_alive;           /* after the version's default and Connection */
    uint64_t content_length;   /* body bytes that follow the head */
    size_t head_len;           /* bytes of the head, leading empty lines included */
    int error_status;          /* on HTTP_PARSE_ERROR: 400, 431, 501 or 505 */
    const char *error_reason;  /* on HTTP_PARSE_ERROR: a short static phrase */
};

struct http_parser {
    size_t scanned;      /* bytes already searched for the end of the head */
    size_t line_start;   /* offset where the current line begins */
    size_t head_start;   /* offset of the request-line (after empty lines) */
    bool seen_content;   /* a non-empty line has been seen */
};

/* Readies the parser for a new request head starting at offset 0 of the
 * buffer (call again after consuming a request). */
void http_parser_reset(struct http_parser *p);

/* buf holds every byte received for this request so far, starting at the
 * request's first byte; len may only grow between calls for one request.
 * Pure apart from *p and *req. */
enum http_parse_result http_parse(struct http_parser *p, const char *buf, size_t len,
                                  struct http_request *req);

/* The reason phrase for a status code this server sends ("Not Found"). */
const char *http_status_text(int status);

#endif
