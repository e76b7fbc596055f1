/* Unit tests for alm.c and fetch.c: backoff, status rules, the request and
 * response bodies, URL helpers, and the refusals fetch makes before any
 * network traffic. (Traffic itself is covered by the integration tests with
 * a local HTTPS stub.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <cjson/cJSON.h>

#include "alm.h"
#include "fetch.h"

static void backoff_doubles_with_jitter_and_a_cap(void **s)
{
    (void)s;
    assert_int_equal(alm_backoff_ms(1, 0.0), 500);
    assert_int_equal(alm_backoff_ms(1, 0.5), 750);
    assert_in_range(alm_backoff_ms(1, 0.9999), 999, 1000);
    assert_int_equal(alm_backoff_ms(2, 0.0), 1000);
    assert_int_equal(alm_backoff_ms(3, 0.0), 2000);
    assert_int_equal(alm_backoff_ms(5, 0.0), 8000);
    assert_int_equal(alm_backoff_ms(6, 0.0), 8000);
    assert_int_equal(alm_backoff_ms(1000, 1.0), 15999);
    /* Out-of-range jitter is clamped, never a negative or huge delay. */
    assert_int_equal(alm_backoff_ms(1, -3.0), 500);
    assert_in_range(alm_backoff_ms(1, 7.0), 500, 1000);
    assert_int_equal(alm_backoff_ms(0, 0.0), 500);
}

static void status_rules(void **s)
{
    (void)s;
    long rejects[] = { 401, 403, 404 };
    long retries[] = { 429, 500, 502, 503, 504, 599 };
    long neither[] = { 200, 301, 400, 405, 410, 422, 600 };
    for (size_t i = 0; i < 3; i++) {
        assert_true(alm_status_rejects(rejects[i]));
        assert_false(alm_status_retryable(rejects[i]));
    }
    for (size_t i = 0; i < 6; i++) {
        assert_true(alm_status_retryable(retries[i]));
        assert_false(alm_status_rejects(retries[i]));
    }
    for (size_t i = 0; i < 7; i++) {
        assert_false(alm_status_retryable(neither[i]));
        assert_false(alm_status_rejects(neither[i]));
    }
}

static void request_body_has_the_four_members(void **s)
{
    (void)s;
    char *body = alm_request_body("KEY-\"quoted\"-1", "prod-eu");
    assert_non_null(body);
    cJSON *o = cJSON_Parse(body);
    assert_non_null(o);
    assert_string_equal(cJSON_GetObjectItem(o, "customer_key")->valuestring, "KEY-\"quoted\"-1");
    assert_string_equal(cJSON_GetObjectItem(o, "deployment")->valuestring, "prod-eu");
    assert_string_equal(cJSON_GetObjectItem(o, "product")->valuestring, "dashboard");
    assert_non_null(strstr(cJSON_GetObjectItem(o, "agent")->valuestring, "pi-agent/"));
    cJSON_Delete(o);
    alm_free_secret(body);

    body = alm_request_body("K", NULL);
    o = cJSON_Parse(body);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "deployment")));
    cJSON_Delete(o);
    alm_free_secret(body);
}

static void response_parsing(void **s)
{
    (void)s;
    char *lic = NULL;
    char reason[256];
    const char *ok = "{\"licence\":\"a.b.c\",\"extra\":1}";
    assert_int_equal(alm_parse_response(ok, strlen(ok), &lic, reason, sizeof(reason)), 0);
    assert_string_equal(lic, "a.b.c");
    alm_free_secret(lic);

    const char *bad[] = { "", "not json", "[\"a.b.c\"]", "{}", "{\"licence\":7}",
                          "{\"licence\":\"\"}", "{\"licence\":\"a.b.c\"", "{\"Licence\":\"a\"}" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reason[0] = '\0';
        lic = (char *)1;
        assert_int_equal(alm_parse_response(bad[i], strlen(bad[i]), &lic, reason, sizeof(reason)), -1);
        assert_null(lic);
        assert_true(reason[0] != '\0');
    }
    assert_int_equal(alm_parse_response(NULL, 0, &lic, reason, sizeof(reason)), -1);
}

static void response_reason_never_quotes_the_body(void **s)
{
    (void)s;
    char *lic;
    char reason[256];
    const char *body = "{\"licence\":42,\"echo\":\"SECRET-CUSTOMER-KEY\"}";
    assert_int_equal(alm_parse_response(body, strlen(body), &lic, reason, sizeof(reason)), -1);
    assert_null(strstr(reason, "SECRET"));
}

static void url_helpers(void **s)
{
    (void)s;
    char out[256];
    fetch_redact_url("https://user:pw@licences.example.com:8443/v1/lic?X-Amz-Signature=abc#frag", out,
                     sizeof(out));
    assert_string_equal(out, "https://licences.example.com:8443/v1/lic");
    fetch_redact_url("https://h", out, sizeof(out));
    assert_string_equal(out, "https://h");
    /* A password with an unencoded '/' or '?' (common in generated secrets)
     * ends the authority early: it must not show up as the path. */
    fetch_redact_url("https://admin:Zx9/Qw+pass@licences.example.com/v1/lic", out, sizeof(out));
    assert_null(strstr(out, "Zx9"));
    assert_null(strstr(out, "Qw+pass"));
    assert_string_equal(out, "https://(hidden)@licences.example.com/v1/lic");
    fetch_redact_url("https://admin:Zx9?Qw+pass@licences.example.com/v1/lic?sig=1", out,
                     sizeof(out));
    assert_null(strstr(out, "Zx9"));
    assert_null(strstr(out, "Qw+pass"));
    fetch_redact_url("https://admin:Zx9#Qw+pass@licences.example.com/v1/lic", out, sizeof(out));
    assert_null(strstr(out, "Zx9"));
    assert_null(strstr(out, "Qw+pass"));
    fetch_redact_url("nonsense", out, sizeof(out));
    assert_string_equal(out, "(not a URL)");

    assert_int_equal(fetch_url_host("https://a:b@host.example:99/x", out, sizeof(out)), 0);
    assert_string_equal(out, "host.example");
    assert_int_equal(fetch_url_host("https://[::1]:8443/", out, sizeof(out)), 0);
    assert_string_equal(out, "::1");
    assert_int_equal(fetch_url_host("http://127.0.0.1", out, sizeof(out)), 0);
    assert_string_equal(out, "127.0.0.1");
    assert_int_equal(fetch_url_host("https:///path", out, sizeof(out)), -1);
    assert_int_equal(fetch_url_host("https://[::1/", out, sizeof(out)), -1);
    assert_int_equal(fetch_url_host("no scheme", out, sizeof(out)), -1);

    assert_int_equal(fetch_url_is_https("HTTPS://x"), 1);
    assert_int_equal(fetch_url_is_https("http://x"), 0);
    assert_int_equal(fetch_url_is_https("ftp://x"), -1);
    assert_int_equal(fetch_url_is_https(NULL), -1);
    assert_string_equal(fetch_step_name(FETCH_STEP_DNS), "DNS lookup");
    assert_string_equal(fetch_step_name(FETCH_STEP_TLS), "TLS handshake");
}

static void fetch_refuses_plain_http_and_other_schemes(void **s)
{
    (void)s;
    struct fetch_response res;
    struct fetch_request req = { .url = "http://127.0.0.1:9/", .body = "SECRET-BODY" };
    assert_int_equal(fetch_url(&req, &res), -1);
    assert_non_null(strstr(res.error, "plain http"));
    assert_null(strstr(res.error, "SECRET"));
    assert_int_equal(res.curl_code, 0);

    req.url = "file:///etc/passwd";
    assert_int_equal(fetch_url(&req, &res), -1);
    assert_non_null(strstr(res.error, "not an http(s) URL"));

    req.url = "https://127.0.0.1:9/";
    req.method = "DELETE";
    assert_int_equal(fetch_url(&req, &res), -1);
    assert_non_null(strstr(res.error, "method"));

    enum fetch_step step;
    char error[256];
    assert_int_equal(fetch_connect_check("http://127.0.0.1:9/", NULL, false, 1000, &step, error,
                                         sizeof(error)),
                     -1);
    assert_non_null(strstr(error, "plain http"));
}

static void alm_refused_scheme_is_not_retried(void **s)
{
    (void)s;
    struct alm_settings set = { .timeout_s = 30 };
    struct alm_result res;
    assert_int_equal(alm_request_licence(&set, "http://127.0.0.1:9/", "SECRET-KEY", &res), ALM_UNREACHABLE);
    assert_int_equal(res.attempts, 1);
    assert_non_null(strstr(res.reason, "plain http"));
    assert_null(strstr(res.reason, "SECRET"));
    alm_result_free(&res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backoff_doubles_with_jitter_and_a_cap),
        cmocka_unit_test(status_rules),
        cmocka_unit_test(request_body_has_the_four_members),
        cmocka_unit_test(response_parsing),
        cmocka_unit_test(response_reason_never_quotes_the_body),
        cmocka_unit_test(url_helpers),
        cmocka_unit_test(fetch_refuses_plain_http_and_other_schemes),
        cmocka_unit_test(alm_refused_scheme_is_not_retried),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
