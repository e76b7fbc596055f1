/* Unit tests for the health endpoint's request parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_parser.h"

static enum http_parse_result parse_all(const char *s, struct http_request *req)
{
    struct http_parser p;
    http_parser_reset(&p);
    return http_parse(&p, s, strlen(s), req);
}

static void assert_path(const struct http_request *req, const char *want)
{
    assert_int_equal(req->path_len, strlen(want));
    assert_memory_equal(req->path, want, strlen(want));
}

static void test_simple_get(void **state)
{
    (void)state;
    const char *s = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    struct http_request req;
    assert_int_equal(parse_all(s, &req), HTTP_PARSE_DONE);
    assert_int_equal(req.method, HTTP_METHOD_GET);
    assert_path(&req, "/health");
    assert_int_equal(req.version_minor, 1);
    assert_true(req.keep_alive);
    assert_int_equal(req.head_len, strlen(s));
    assert_int_equal(req.content_length, 0);
}

static void test_head_and_other_methods(void **state)
{
    (void)state;
    struct http_request req;
    assert_int_equal(parse_all("HEAD /live HTTP/1.1\r\nHost: x\r\n\r\n", &req), HTTP_PARSE_DONE);
    assert_int_equal(req.method, HTTP_METHOD_HEAD);
    assert_int_equal(parse_all("POST /live HTTP/1.1\r\nHost: x\r\n\r\n", &req), HTTP_PARSE_DONE);
    assert_int_equal(req.method, HTTP_METHOD_OTHER);
    assert_int_equal(req.method_len, 4);
    assert_memory_equal(req.method_name, "POST", 4);
    /* Methods are case-sensitive: "get" is some other method. */
    assert_int_equal(parse_all("get / HTTP/1.1\r\nHost: x\r\n\r\n", &req), HTTP_PARSE_DONE);
    assert_int_equal(req.method, HTTP_METHOD_OTHER);
}

static void test_query_string_and_absolute_form(void **state)
{
    (void)state;
    struct http_request req;
    assert_int_equal(parse_all("GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", &req),
                     HTTP_PARSE_DONE);
    assert_path(&req, "/metrics");
    assert_int_equal(parse_all("GET http://a:8225/health?q HTTP/1.1\r\nHost: a\r\n\r\n", &req),
                     HTTP_PARSE_DONE);
    assert_path(&req, "/health");
    assert_int_equal(parse_all("GET HTTP://a HTTP/1.1\r\nHost: a\r\n\r\n", &req),
                     HTTP_PARSE_DONE);
    assert_path(&req, "/");
    assert_int_equal(parse_all("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &req), HTTP_PARSE_DONE);
    assert_path(&req, "*");
}

static void test_keep_alive_rules(void **state)
{
    (void)state;
    struct http_request req;
    assert_int_equal(parse_all("GET / HTTP/1.0\r\n\r\n", &req), HTTP_PARSE_DONE);
    assert_false(req.keep_alive);
    assert_int_equal(req.version_minor, 0);
    assert_int_equal(parse_all("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &req),
                     HTTP_PARSE_DONE);
    assert_true(req.keep_alive);
    assert_int_equal(parse_all("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &req),
                     HTTP_PARSE_DONE);
    assert_false(req.keep_alive);
    assert_int_equal(
        parse_all("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade, CLOSE\r\n\r\n", &req),
        HTTP_PARSE_DONE);
    assert_false(req.keep_alive);
}

static void test_bare_lf_and_leading_empty_lines(void **state)
{
    (void)state;
    struct http_request req;
    const char *s = "\r\n\nGET /live HTTP/1.1\nHost: x\n\n";
    assert_int_equal(parse_all(s, &req), HTTP_PARSE_DONE);
    assert_path(&req, "/live");
    assert_int_equal(req.head_len, strlen(s));
}

static void test_incremental_byte_by_byte(void **state)
{
    (void)state;
    const char *s = "GET /health HTTP/1.1\r\nHost: example\r\nUser-Agent: t\r\n\r\nGET /x";
    size_t head = strlen("GET /health HTTP/1.1\r\nHost: example\r\nUser-Agent: t\r\n\r\n");
    struct http_parser p;
    struct http_request req;
    http_parser_reset(&p);
    for (size_t n = 0; n < head; n++)
        assert_int_equal(http_parse(&p, s, n, &req), HTTP_PARSE_INCOMPLETE);
    assert_int_equal(http_parse(&p, s, head, &req), HTTP_PARSE_DONE);
    assert_int_equal(req.head_len, head);
    assert_path(&req, "/health");
}

static void test_pipelined_requests(void **state)
{
    (void)state;
    const char *s = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\n";
    struct http_parser p;
    struct http_request req;
    http_parser_reset(&p);
    assert_int_equal(http_parse(&p, s, strlen(s), &req), HTTP_PARSE_DONE);
    assert_path(&req, "/a");
    size_t off = req.head_len;
    http_parser_reset(&p);
    assert_int_equal(http_parse(&p, s + off, strlen(s) - off, &req), HTTP_PARSE_DONE);
    assert_path(&req, "/b");
    assert_int_equal(req.method, HTTP_METHOD_HEAD);
    assert_int_equal(off + req.head_len, strlen(s));
}

static void test_content_length(void **state)
{
    (void)state;
    struct http_request req;
    assert_int_equal(
        parse_all("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n", &req),
        HTTP_PARSE_DONE);
    assert_int_equal(req.content_length, 12);
    assert_int_equal(parse_all("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                               "Content-Length: 5\r\n\r\n",
                               &req),
                     HTTP_PARSE_DONE);
    assert_int_equal(req.content_length, 5);
}

static void expect_error(const char *s, int status)
{
    struct http_request req;
    enum http_parse_result r = parse_all(s, &req);
    if (r != HTTP_PARSE_ERROR || req.error_status != status)
        fail_msg("expected %d for \"%s\", got result %d status %d", status, s, (int)r,
                 req.error_status);
    assert_non_null(req.error_reason);
}

static void test_malformed_is_400(void **state)
{
    (void)state;
    expect_error("GET /x HTTP/1.1\r\n\r\n", 400);                        /* no Host */
    expect_error("GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);  /* two Hosts */
    expect_error("GET  /x HTTP/1.1\r\nHost: a\r\n\r\n", 400);            /* double space */
    expect_error("GET /x\r\nHost: a\r\n\r\n", 400);                      /* HTTP/0.9 */
    expect_error("GET /x HTTP/1.1 \r\nHost: a\r\n\r\n", 400);            /* trailing space */
    expect_error("GET /x HTTP/1.x\r\nHost: a\r\n\r\n", 400);
    expect_error("GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400);              /* no leading / */
    expect_error("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400);      /* empty authority */
    expect_error("GET /x#f HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    expect_error("G(T /x HTTP/1.1\r\nHost: a\r\n\r\n", 400);             /* not a token */
    expect_error("GET /x HTTP/1.1\r\nHost : a\r\n\r\n", 400);            /* space before : */
    expect_error("GET /x HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400);
    expect_error("GET /x HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400);
    expect_error("GET /x HTTP/1.1\r\nHost: a\r\nX: a\001b\r\n\r\n", 400);
    expect_error("GET /x HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400);
    expect_error("GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400);
    expect_error("GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1,1\r\n\r\n", 400);
    expect_error("GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
                 400);
    expect_error("GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                 400);
    expect_error("\x01GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

static void test_nul_byte_is_400(void **state)
{
    (void)state;
    static const char s[] = "GET /x HTTP/1.1\r\nHost: a\0b\r\n\r\n";
    struct http_parser p;
    struct http_request req;
    http_parser_reset(&p);
    assert_int_equal(http_parse(&p, s, sizeof(s) - 1, &req), HTTP_PARSE_ERROR);
    assert_int_equal(req.error_status, 400);
}

static void test_version_and_encoding_errors(void **state)
{
    (void)state;
    expect_error("GET /x HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    expect_error("GET /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
}

static void test_head_limit_431(void **state)
{
    (void)state;
    size_t n = HTTP_MAX_HEAD_BYTES + 100;
    char *buf = malloc(n);
    assert_non_null(buf);
    const char *start = "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ";
    memcpy(buf, start, strlen(start));
    memset(buf + strlen(start), 'a', n - strlen(start));

    struct http_parser p;
    struct http_request req;
    http_parser_reset(&p);
    assert_int_equal(http_parse(&p, buf, HTTP_MAX_HEAD_BYTES - 1, &req), HTTP_PARSE_INCOMPLETE);
    assert_int_equal(http_parse(&p, buf, HTTP_MAX_HEAD_BYTES, &req), HTTP_PARSE_ERROR);
    assert_int_equal(req.error_status, 431);
    http_parser_reset(&p);
    assert_int_equal(http_parse(&p, buf, n, &req), HTTP_PARSE_ERROR);
    assert_int_equal(req.error_status, 431);

    /* A head of exactly the limit is accepted; one byte more is not. */
    size_t fixed = strlen(start) + 4; /* "\r\n\r\n" */
    memset(buf + strlen(start), 'a', HTTP_MAX_HEAD_BYTES - fixed);
    memcpy(buf + HTTP_MAX_HEAD_BYTES - 4, "\r\n\r\n", 4);
    http_parser_reset(&p);
    assert_int_equal(http_parse(&p, buf, HTTP_MAX_HEAD_BYTES, &req), HTTP_PARSE_DONE);
    assert_int_equal(req.head_len, HTTP_MAX_HEAD_BYTES);

    memset(buf + strlen(start), 'a', HTTP_MAX_HEAD_BYTES - fixed + 1);
    memcpy(buf + HTTP_MAX_HEAD_BYTES - 3, "\r\n\r\n", 4);
    http_parser_reset(&p);
    assert_int_equal(http_parse(&p, buf, HTTP_MAX_HEAD_BYTES + 1, &req), HTTP_PARSE_ERROR);
    assert_int_equal(req.error_status, 431);
    free(buf);
}

static void test_status_text(void **state)
{
    (void)state;
    assert_string_equal(http_status_text(200), "OK");
    assert_string_equal(http_status_text(431), "Request Header Fields Too Large");
    assert_string_equal(http_status_text(503), "Service Unavailable");
    assert_string_equal(http_status_text(299), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_head_and_other_methods),
        cmocka_unit_test(test_query_string_and_absolute_form),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_bare_lf_and_leading_empty_lines),
        cmocka_unit_test(test_incremental_byte_by_byte),
        cmocka_unit_test(test_pipelined_requests),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_malformed_is_400),
        cmocka_unit_test(test_nul_byte_is_400),
        cmocka_unit_test(test_version_and_encoding_errors),
        cmocka_unit_test(test_head_limit_431),
        cmocka_unit_test(test_status_text),
    };
    return cmocka_run_group_tests_name("http_parser", tests, NULL, NULL);
}
