/* Unit tests for the readiness decision, the /health JSON, the Prometheus
 * text, the probe's URL and status-line parsing, the settings, the
 * `pi-agent health` summary line, and the HTTP server itself run in-process
 * (so under ASan and UBSan) against a forked client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "loop.h"

#include "config.h"
#include "emf.h"
#include "health.h"
#include "health_client.h"
#include "licence_config.h"
#include "probe.h"
#include "readiness.h"
#include "health_report.h"
#include "state.h"

static void healthy_state(struct agent_state *st)
{
    memset(st, 0, sizeof(*st));
    st->started_ms = 1764060000000ull;
    st->child_pid = 42;
    st->child_running = true;
    st->probe.status = PROBE_OK;
    snprintf(st->probe.reason, sizeof st->probe.reason, "HTTP 200");
    st->probe.passes = 3;
    st->probe.last_latency_s = 0.004;
    st->probe.since_ms = 1764060005000ull;
    st->licence.status = LS_VALID;
    snprintf(st->licence.source, sizeof st->licence.source, "inline");
    st->licence.has_days_left = true;
    st->licence.days_left = 120;
    st->efs.status = EFS_STATUS_OK;
    snprintf(st->efs.mode, sizeof st->efs.mode, "managed");
}

static const struct health_policy default_policy = { false, false };

static void test_all_good_is_ok(void **state)
{
    (void)state;
    struct agent_state st;
    struct health_verdict v;
    healthy_state(&st);
    health_evaluate(&st, &default_policy, &v);
    assert_int_equal(v.status, HEALTH_OK);
    assert_true(v.ready);
    for (int i = 0; i < HEALTH_CHECK_COUNT; i++) {
        assert_true(v.checks[i].ok);
        assert_false(v.checks[i].blocking);
    }
    assert_string_equal(health_status_name(v.status), "ok");
}

static void test_starting_until_first_probe_passes(void **state)
{
    (void)state;
    struct agent_state st;
    struct health_verdict v;
    healthy_state(&st);
    st.probe.status = PROBE_STARTING;
    snprintf(st.probe.reason, sizeof st.probe.reason, "connect: Connection refused");
    health_evaluate(&st, &default_policy, &v);
    assert_int_equal(v.status, HEALTH_STARTING);
    assert_false(v.ready);
    assert_true(v.checks[CHECK_TOMCAT].blocking);
    assert_string_equal(v.checks[CHECK_TOMCAT].reason, "connect: Connection refused");

    /* Empty probe state (probe not started yet) is starting as well. */
    st.probe.status = PROBE_UNSET;
    health_evaluate(&st, &default_policy, &v);
    assert_int_equal(v.status, HEALTH_STARTING);
}

static void test_probe_failing_after_ready_is_unhealthy(void **state)
{
    (void)state;
    struct agent_state st;
    struct health_verdict v;
    healthy_state(&st);
    st.ready_once = true;
    st.probe.status = PROBE_FAILING;
    health_evaluate(&st, &default_policy, &v);
    assert_int_equal(v.status, HEALTH_UNHEALTHY);
    assert_string_equal(v.checks[CHECK_TOMCAT].status, "failing");
}

static void test_child_not_running(void **state)
{
    (void)state;
    struct agent_state st;
    struct health_verdict v;
    healthy_state(&st);
    st.child_running = false;
    health_evaluate(&st, &default_policy, &v);
    assert_int_equal(v.status, HEALTH_STARTING);
    assert_string_equal(v.checks[CHECK_TOMCAT].status, "not-running");
    assert_true(v.checks[CHECK_TOMCAT].blocking);
    st.ready_once = true;
    health_evaluate(&st, &default_policy, &v);
    assert_int_equal(v.status, HEALTH_UNHEALTHY);
}

static void test_draining_wins(void **state)
{
    (void)state;
    struct agent_state st;
    struct health_verdict v;
    healthy_state(&st);
    st.draining = true;
    health_evaluate(&st, &default_policy, &v);
    assert_int_equal(v.status, HEALTH_DRAINING);
    assert_false(v.ready);
    st.efs.status = EFS_STATUS_FAILED;
    health_evaluate(&st, &default_policy, &v);
    assert_int_equal(v.status, HEALTH_DRAINING);
}

static void test_efs_rules(void **state)
{
    (void)state;
    struct agent_state st;
    struct health_verdict v;
    struct health_policy over_fails = { false, true };
    healthy_state(&st);

    st.efs.status = EFS_STATUS_FAILED;
    snprintf(st.efs.reason, sizeof st.efs.reason, "EFS root is not mounted");
    health_evaluate(&st, &default_policy, &v);
    assert_int_equal(v.status, HEALTH_UNHEALTHY);
    assert_true(v.checks[CHECK_EFS].blocking);
    assert_string_equal(v.checks[CHECK_EFS].reason, "EFS root is not mounted");

    st.efs.status = EFS_STATUS_OVER;
    health_evaluate(&st, &default_policy, &v);
    assert_int_equal(v.status, HEALTH_OK); /* reported, not fatal by default */
    assert_false(v.checks[CHECK_EFS].ok);
    assert_false(v.checks[CHECK_EFS].blocking);
    health_evaluate(&st, &over_fails, &v);
    assert_int_equal(v.status, HEALTH_UNHEALTHY);
    assert_true(v.checks[CHECK_EFS].blocking);

    const enum efs_status fine[] = { EFS_STATUS_WARN, EFS_STATUS_EPHEMERAL, EFS_STATUS_OFF,
                                     EFS_STATUS_PENDING, EFS_STATUS_UNKNOWN };
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        st.efs.status = fine[i];
        health_evaluate(&st, &over_fails, &v);
        assert_int_equal(v.status, HEALTH_OK);
    }
}

static void test_licence_rules(void **state)
{
    (void)state;
    struct agent_state st;
    struct health_verdict v;
    struct health_policy required = { true, false };
    healthy_state(&st);

    st.licence.status = LS_EXPIRED;
    snprintf(st.licence.reason, sizeof st.licence.reason, "expired on 2026-01-01");
    health_evaluate(&st, &default_policy, &v);
    assert_int_equal(v.status, HEALTH_OK);
    assert_false(v.checks[CHECK_LICENCE].ok);
    assert_false(v.checks[CHECK_LICENCE].blocking);

    health_evaluate(&st, &required, &v);
    assert_int_equal(v.status, HEALTH_UNHEALTHY);
    assert_true(v.checks[CHECK_LICENCE].blocking);

    const enum licence_status acceptable[] = { LS_VALID, LS_EXPIRING, LS_UNVERIFIED };
    for (size_t i = 0; i < 3; i++) {
        st.licence.status = acceptable[i];
        health_evaluate(&st, &required, &v);
        assert_int_equal(v.status, HEALTH_OK);
    }
    const enum licence_status bad[] = { LS_MISSING, LS_BAD_SIGNATURE, LS_UNREACHABLE, LS_UNKNOWN };
    for (size_t i = 0; i < 4; i++) {
        st.licence.status = bad[i];
        health_evaluate(&st, &required, &v);
        assert_int_equal(v.status, HEALTH_UNHEALTHY);
    }
    /* A licence problem is not "starting" even before the first ready. */
    st.probe.status = PROBE_STARTING;
    health_evaluate(&st, &required, &v);
    assert_int_equal(v.status, HEALTH_UNHEALTHY);
}

static cJSON *render_json(const struct agent_state *st, const struct health_policy *pol,
                          struct health_verdict *v, char *buf, size_t cap)
{
    health_evaluate(st, pol, v);
    int n = health_render_json(st, v, buf, cap);
    assert_true(n > 0);
    assert_int_equal((size_t)n, strlen(buf));
    cJSON *doc = cJSON_Parse(buf);
    if (doc == NULL)
        fail_msg("not JSON: %s", buf);
    return doc;
}

static const cJSON *get(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (v == NULL)
        fail_msg("missing member %s", k);
    return v;
}

static void test_health_json(void **state)
{
    (void)state;
    struct agent_state st;
    struct health_verdict v;
    char buf[16384];
    healthy_state(&st);
    /* Things that must never reach the output. */
    snprintf(st.licence.subject, sizeof st.licence.subject, "customer-key-SECRET");
    st.efs.status = EFS_STATUS_FAILED;
    snprintf(st.efs.reason, sizeof st.efs.reason, "mount \"/mnt/efs\" missing\nsee docs");
    st.efs.scanned = true;
    st.efs.total_bytes = 12345;
    st.efs.budget_bytes = 1000000000ull;

    cJSON *doc = render_json(&st, &default_policy, &v, buf, sizeof buf);
    assert_null(strstr(buf, "SECRET"));
    assert_string_equal(get(doc, "status")->valuestring, "unhealthy");
    assert_true(cJSON_IsFalse(get(doc, "ready")));
    const cJSON *failing = get(doc, "failing");
    assert_int_equal(cJSON_GetArraySize(failing), 1);
    assert_string_equal(cJSON_GetArrayItem(failing, 0)->valuestring, "efs");

    const cJSON *checks = get(doc, "checks");
    const cJSON *efs = get(checks, "efs");
    assert_string_equal(get(efs, "status")->valuestring, "failed");
    assert_string_equal(get(efs, "reason")->valuestring, "mount \"/mnt/efs\" missing\nsee docs");
    assert_int_equal((int)get(efs, "used_bytes")->valuedouble, 12345);
    assert_true(get(efs, "budget_bytes")->valuedouble == 1e9);
    assert_true(cJSON_IsTrue(get(efs, "blocking")));

    const cJSON *lic = get(checks, "licence");
    assert_string_equal(get(lic, "status")->valuestring, "valid");
    assert_int_equal(get(lic, "days_left")->valueint, 120);
    assert_true(cJSON_IsNull(get(lic, "expires")));

    const cJSON *tomcat = get(checks, "tomcat");
    assert_string_equal(get(tomcat, "status")->valuestring, "ok");
    assert_string_equal(get(tomcat, "since")->valuestring, "2025-11-25T08:40:05.000Z");
    assert_true(get(tomcat, "latency_seconds")->valuedouble > 0.003);

    const cJSON *child = get(doc, "child");
    assert_int_equal(get(child, "pid")->valueint, 42);
    assert_true(cJSON_IsNull(get(get(doc, "hooks"), "last_failure")));
    cJSON_Delete(doc);

    /* Too small a buffer is reported, never truncated JSON. */
    assert_int_equal(health_render_json(&st, &v, buf, 100), -1);
}

/* Strict check of the text exposition format: every line is a comment
 * (# HELP/# TYPE) or `name{label="value",...} number`. */
static void assert_prometheus_text(const char *text)
{
    const char *line = text;
    int samples = 0;
    while (*line) {
        const char *end = strchr(line, '\n');
        if (end == NULL)
            fail_msg("last line has no newline");
        size_t len = (size_t)(end - line);
        char l[1024];
        assert_true(len < sizeof l);
        memcpy(l, line, len);
        l[len] = '\0';
        if (l[0] == '#') {
            if (strncmp(l, "# HELP pi_agent_", 16) != 0 && strncmp(l, "# TYPE pi_agent_", 16) != 0 &&
                strncmp(l, "# HELP pi_tomcat_", 17) != 0 && strncmp(l, "# TYPE pi_tomcat_", 17) != 0)
                fail_msg("bad comment line: %s", l);
            if (strncmp(l, "# TYPE", 6) == 0 && !strstr(l, " gauge") && !strstr(l, " counter"))
                fail_msg("bad type: %s", l);
        } else {
            size_t i = 0;
            while (l[i] == '_' || (l[i] >= 'a' && l[i] <= 'z') || (l[i] >= '0' && l[i] <= '9'))
                i++;
            if (i == 0)
                fail_msg("no metric name: %s", l);
            if (l[i] == '{') {
                i++;
                for (;;) {
                    while (l[i] == '_' || (l[i] >= 'a' && l[i] <= 'z'))
                        i++;
                    if (l[i] != '=' || l[i + 1] != '"')
                        fail_msg("bad label: %s", l);
                    i += 2;
                    while (l[i] && l[i] != '"') {
                        if (l[i] == '\\') {
                            if (l[i + 1] != '\\' && l[i + 1] != '"' && l[i + 1] != 'n')
                                fail_msg("bad escape: %s", l);
                            i++;
                        }
                        i++;
                    }
                    if (l[i] != '"')
                        fail_msg("unterminated label: %s", l);
                    i++;
                    if (l[i] == ',') {
                        i++;
                        continue;
                    }
                    if (l[i] != '}')
                        fail_msg("bad label list: %s", l);
                    i++;
                    break;
                }
            }
            if (l[i] != ' ')
                fail_msg("no space before value: %s", l);
            char *num_end;
            strtod(l + i + 1, &num_end);
            if (num_end == l + i + 1 || *num_end != '\0')
                fail_msg("bad value: %s", l);
            samples++;
        }
        line = end + 1;
    }
    assert_true(samples > 10);
}

static void test_metrics_text(void **state)
{
    (void)state;
    struct agent_state st;
    struct health_verdict v;
    char buf[65536];
    healthy_state(&st);
    st.child_restarts = 2;
    st.licence.expires = 1806536807; /* ten digits: every one must survive */
    st.efs.scanned = true;
    st.efs.total_bytes = 2048;
    st.efs.budget_bytes = 4096;
    st.efs.scan_seconds = 0.25;
    st.efs.nfolders = 2;
    snprintf(st.efs.folders[0].name, sizeof st.efs.folders[0].name, "themes");
    st.efs.folders[0].bytes = 1024;
    snprintf(st.efs.folders[1].name, sizeof st.efs.folders[1].name, "we\"ird\\");
    st.efs.folders[1].bytes = 7;
    health_evaluate(&st, &default_policy, &v);
    int n = health_render_metrics(&st, &v, st.started_ms + 90500, buf, sizeof buf);
    assert_true(n > 0);
    assert_prometheus_text(buf);
    assert_non_null(strstr(buf, "\npi_agent_up 1\n"));
    assert_non_null(strstr(buf, "\npi_agent_uptime_seconds 90.5\n"));
    assert_non_null(strstr(buf, "\npi_agent_child_restarts_total 2\n"));
    assert_non_null(strstr(buf, "\npi_agent_ready 1\n"));
    assert_non_null(strstr(buf, "pi_agent_health_state{state=\"ok\"} 1\n"));
    assert_non_null(strstr(buf, "pi_agent_health_state{state=\"starting\"} 0\n"));
    assert_non_null(strstr(buf, "pi_agent_licence_state{status=\"valid\"} 1\n"));
    /* Base units: seconds left, from the expiry and the time of the request. */
    assert_non_null(strstr(buf, "\npi_agent_licence_remaining_seconds 42476717\n"));
    assert_non_null(strstr(buf, "\npi_agent_licence_expiry_timestamp_seconds 1806536807\n"));
    assert_null(strstr(buf, "days"));
    assert_non_null(strstr(buf, "pi_agent_efs_folder_bytes{folder=\"themes\"} 1024\n"));
    assert_non_null(strstr(buf, "pi_agent_efs_folder_bytes{folder=\"we\\\"ird\\\\\"} 7\n"));
    assert_non_null(strstr(buf, "\npi_agent_efs_budget_bytes 4096\n"));
    assert_non_null(strstr(buf, "\npi_agent_efs_scan_duration_seconds 0.25\n"));
    assert_non_null(strstr(buf, "\npi_agent_probe_latency_seconds 0.004\n"));

    /* A status out of the table shows up as "unknown", the current one. */
    st.licence.status = (enum licence_status)LS_COUNT;
    st.licence.has_days_left = false;
    st.licence.expires = 0;
    health_evaluate(&st, &default_policy, &v);
    n = health_render_metrics(&st, &v, st.started_ms, buf, sizeof buf);
    assert_true(n > 0);
    assert_prometheus_text(buf);
    assert_non_null(strstr(buf, "pi_agent_licence_state{status=\"unknown\"} 1\n"));
    assert_non_null(strstr(buf, "pi_agent_licence_state{status=\"valid\"} 0\n"));
    assert_null(strstr(buf, "pi_agent_licence_remaining_seconds"));
    assert_null(strstr(buf, "pi_agent_licence_expiry_timestamp_seconds"));

    /* After the expiry the figure goes negative rather than vanishing. */
    st.licence.expires = 1764060000;
    n = health_render_metrics(&st, &v, 1764060090000ull, buf, sizeof buf);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "\npi_agent_licence_remaining_seconds -90\n"));
    assert_int_equal(health_render_metrics(&st, &v, st.started_ms, buf, 200), -1);
}

static void test_numbers_keep_every_digit(void **state)
{
    (void)state;
    static const struct {
        double in;
        const char *out;
    } cases[] = {
        { 1806536807.0, "1806536807" },           /* a Unix time, not 1.80653681e+09 */
        { 9007199254740992.0, "9007199254740992" }, /* 2^53: the last exact integer */
        { -90.0, "-90" },
        { 0.0, "0" },
        { 90.5, "90.5" },
        { 0.004, "0.004" },
        { 0.1, "0.1" },                           /* shortest, not 0.10000000000000001 */
        { 1764060000.123, "1764060000.123" },
        { 0.1 + 0.2, "0.30000000000000004" },    /* needs all 17 digits */
        { 1e300, "1e+300" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char mem[64];
        struct outbuf b;
        outbuf_init(&b, mem, sizeof mem);
        outbuf_number(&b, cases[i].in);
        assert_false(b.overflow);
        assert_string_equal(mem, cases[i].out);
        assert_true(strtod(mem, NULL) == cases[i].in);
    }
}

static void test_client_summary(void **state)
{
    (void)state;
    char line[256];
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n{\"status\":\"ok\",\"failing\":[]}";
    assert_int_equal(health_client_summary(ok, strlen(ok), line, sizeof line), 200);
    assert_string_equal(line, "200 ok");

    const char *bad =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\r\n"
        "{\"status\":\"unhealthy\",\"failing\":[\"tomcat\",\"efs\"],\"checks\":{"
        "\"tomcat\":{\"status\":\"failing\",\"reason\":\"HTTP 500\"},"
        "\"efs\":{\"status\":\"failed\",\"reason\":\"\"}}}";
    assert_int_equal(health_client_summary(bad, strlen(bad), line, sizeof line), 503);
    assert_string_equal(line, "503 unhealthy: tomcat failing (HTTP 500); efs failed");

    const char *nobody = "HTTP/1.0 404 Not Found\r\n\r\n";
    assert_int_equal(health_client_summary(nobody, strlen(nobody), line, sizeof line), 404);
    assert_string_equal(line, "404 unexpected answer");

    assert_int_equal(health_client_summary("SSH-2.0-x\r\n", 11, line, sizeof line), -1);
    assert_non_null(strstr(line, "no HTTP response"));

    /* A tiny buffer truncates the line but stays terminated. */
    char tiny[8];
    assert_int_equal(health_client_summary(bad, strlen(bad), tiny, sizeof tiny), 503);
    assert_int_equal(strlen(tiny), 7);
}

static void test_probe_url(void **state)
{
    (void)state;
    struct probe_target t;
    const char *why = NULL;
    assert_int_equal(probe_parse_url("http://127.0.0.1:8224/pi/version", &t, &why), 0);
    assert_string_equal(t.host_header, "127.0.0.1:8224");
    assert_string_equal(t.path, "/pi/version");
    assert_int_equal(t.addr.ss_family, AF_INET);
    assert_int_equal(probe_parse_url("HTTP://localhost", &t, &why), 0);
    assert_string_equal(t.path, "/");
    assert_string_equal(t.host_header, "localhost:80");
    assert_int_equal(probe_parse_url("http://[::1]:9/x?y=1", &t, &why), 0);
    assert_int_equal(t.addr.ss_family, AF_INET6);
    assert_string_equal(t.host_header, "[::1]:9");
    assert_string_equal(t.path, "/x?y=1");

    const char *bad[] = { "https://127.0.0.1/", "ftp://x/", "http://tomcat:8224/",
                          "http://127.0.0.1:0/", "http://127.0.0.1:70000/", "http://:80/",
                          "http://[::1/", "http://127.0.0.1:80x", "http://127.0.0.1/a b",
                          "http://127.0.0.1/#f", "127.0.0.1:8224" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        if (probe_parse_url(bad[i], &t, &why) != -1 || why == NULL)
            fail_msg("accepted %s", bad[i]);
    }
}

static void test_probe_status_line(void **state)
{
    (void)state;
    assert_int_equal(probe_status_code("HTTP/1.1 200 OK\r\n", 17), 200);
    assert_int_equal(probe_status_code("HTTP/1.0 503\r\n", 14), 503);
    assert_int_equal(probe_status_code("HTTP/1.1 20", 11), 0);
    assert_int_equal(probe_status_code("HTT", 3), 0);
    assert_int_equal(probe_status_code("", 0), 0);
    assert_int_equal(probe_status_code("SSH-2.0", 7), -1);
    assert_int_equal(probe_status_code("HTTP/2 200 ", 11), -1);
    assert_int_equal(probe_status_code("HTTP/1.1 2x0 ", 13), -1);
    assert_int_equal(probe_status_code("HTTP/1.1 2000", 13), -1);
}

static void clear_health_env(void);

static void test_probe_result_dropped_when_child_restarts(void **state)
{
    (void)state;
    struct agent_state st;
    struct probe_config cfg;
    struct config_error err = { "" };
    struct health_verdict v;
    clear_health_env();
    assert_int_equal(probe_config_load(&cfg, &err), 0);
    healthy_state(&st);
    st.child_pid = 100;
    struct loop *loop = loop_new();
    assert_non_null(loop);
    struct probe *pr = probe_start(loop, &cfg, &st);
    assert_non_null(pr);
    assert_int_equal(st.probe.status, PROBE_STARTING);

    /* As if a probe of pid 100 had passed. */
    st.probe.status = PROBE_OK;
    st.ready_once = true;
    probe_sync_child(pr);
    assert_int_equal(st.probe.status, PROBE_OK);

    /* The child was restarted: the old result no longer counts. */
    st.child_pid = 101;
    probe_sync_child(pr);
    assert_int_equal(st.probe.status, PROBE_STARTING);
    assert_non_null(strstr(st.probe.reason, "restarted"));
    health_evaluate(&st, &default_policy, &v);
    assert_int_equal(v.status, HEALTH_UNHEALTHY);
    assert_true(v.checks[CHECK_TOMCAT].blocking);
    probe_free(pr);
    loop_free(loop);
}

static int first_ready_calls;
static void count_first_ready(void *ctx)
{
    (void)ctx;
    first_ready_calls++;
}

/* Readiness is decided when the state changes, never when it is read: the
 * verdict is cached, every state_changed() moves the version and derives it
 * again, and the first ready moment fires once. */
static void test_readiness_derived_on_change(void **state)
{
    (void)state;
    struct agent_state st;
    struct readiness r;
    memset(&r, 0, sizeof r);
    healthy_state(&st);
    st.child_running = false;
    first_ready_calls = 0;

    readiness_attach(&r, &st, &default_policy, count_first_ready, NULL);
    assert_int_equal(readiness_verdict(&r)->status, HEALTH_STARTING);
    assert_int_equal(r.derived_version, st.version);
    uint64_t v0 = st.version;

    /* A write without state_changed() is not seen: the verdict is cached. */
    st.child_running = true;
    assert_int_equal(readiness_verdict(&r)->status, HEALTH_STARTING);
    assert_int_equal(first_ready_calls, 0);

    state_changed(&st);
    assert_int_equal(st.version, v0 + 1);
    assert_int_equal(readiness_verdict(&r)->status, HEALTH_OK);
    assert_true(readiness_verdict(&r)->ready);
    assert_true(st.ready_once);
    assert_int_equal(first_ready_calls, 1);

    /* Ready again after a failure: the first ready moment stays the first. */
    st.probe.status = PROBE_FAILING;
    state_changed(&st);
    assert_int_equal(readiness_verdict(&r)->status, HEALTH_UNHEALTHY);
    st.probe.status = PROBE_OK;
    state_changed(&st);
    assert_int_equal(readiness_verdict(&r)->status, HEALTH_OK);
    assert_int_equal(first_ready_calls, 1);

    st.draining = true;
    state_changed(&st);
    assert_int_equal(readiness_verdict(&r)->status, HEALTH_DRAINING);

    /* Detached: changes only move the version. */
    readiness_detach(&r);
    st.draining = false;
    uint64_t v1 = st.version;
    state_changed(&st);
    assert_int_equal(st.version, v1 + 1);
    assert_int_equal(readiness_verdict(&r)->status, HEALTH_DRAINING);
}

static void clear_health_env(void)
{
    const char *vars[] = { "PI_AGENT_HEALTH_ADDR", "PI_AGENT_HEALTH_PORT",
                           "PI_AGENT_HEALTH_MAX_CONNECTIONS", "PI_AGENT_HEALTH_IDLE_TIMEOUT_SECONDS",
                           "PI_AGENT_DRAIN_SECONDS", "PI_AGENT_PROBE_URL",
                           "PI_AGENT_PROBE_INTERVAL_SECONDS", "PI_AGENT_LICENCE_REQUIRED",
                           "PI_EFS_OVER_BUDGET", "PI_AGENT_EMF", "PI_AGENT_EMF_INTERVAL_SECONDS",
                           "PI_AGENT_EMF_NAMESPACE", "ECS_CONTAINER_METADATA_URI_V4",
                           "PI_AGENT_HEALTH_MAX_PER_ADDRESS", "PI_AGENT_RUN_DIR" };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
}

/* Every module's settings that were once the health settings: each
 * variable is read by the module that owns it. */
struct all_settings {
    struct health_config health;
    struct probe_config probe;
    struct emf_config emf;
    struct health_policy policy;
    struct agent_config agent;
    struct licence_config licence;
};

static int load_all(struct all_settings *a, struct config_error *err)
{
    const char *over = getenv("PI_EFS_OVER_BUDGET");
    memset(a, 0, sizeof *a);
    int rc = health_config_load(&a->health, err) || probe_config_load(&a->probe, err) ||
             emf_config_load(&a->emf, err) || licence_config_load(&a->licence, err) ||
             agent_config_load(&a->agent, NULL, err);
    /* readiness reads no variable: its policy comes from the licence and
     * storage settings */
    readiness_policy_make(&a->policy, a->licence.required, over && strcmp(over, "fail") == 0);
    agent_config_free(&a->agent);
    licence_config_free(&a->licence);
    return rc ? -1 : 0;
}

static void test_config_defaults(void **state)
{
    (void)state;
    static struct all_settings a;
    struct health_config *cfg = &a.health;
    struct config_error err = { "" };
    clear_health_env();
    assert_int_equal(load_all(&a, &err), 0);
    assert_string_equal(cfg->addr, "0.0.0.0");
    assert_int_equal(cfg->port, 8225);
    assert_int_equal(cfg->max_connections, 256);
    assert_int_equal(cfg->max_per_peer, 32);
    assert_string_equal(cfg->run_dir, "/run/pi-agent");
    assert_int_equal(cfg->idle_timeout_s, 5);
    assert_int_equal(a.agent.drain_s, 5);
    assert_true(a.probe.enabled);
    assert_string_equal(a.probe.target.path, "/pi/version");
    assert_int_equal(a.probe.interval_s, 5);
    assert_false(a.policy.licence_required);
    assert_false(a.policy.efs_over_fails);
    assert_false(a.emf.enabled);
    assert_int_equal(a.emf.interval_s, 60);
    assert_string_equal(a.emf.ns, "Panintelligence/Agent");

    setenv("ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4/x", 1);
    setenv("PI_EFS_OVER_BUDGET", "fail", 1);
    setenv("PI_AGENT_LICENCE_REQUIRED", "true", 1);
    setenv("PI_AGENT_PROBE_URL", "off", 1);
    setenv("PI_AGENT_HEALTH_ADDR", "::", 1);
    assert_int_equal(load_all(&a, &err), 0);
    assert_true(a.emf.enabled);
    assert_true(a.policy.efs_over_fails);
    assert_true(a.policy.licence_required);
    assert_false(a.probe.enabled);
    assert_string_equal(cfg->addr, "::");
    setenv("PI_AGENT_EMF", "false", 1);
    assert_int_equal(load_all(&a, &err), 0);
    assert_false(a.emf.enabled);
    clear_health_env();
}

static void expect_config_error(const char *var, const char *value)
{
    static struct all_settings a;
    struct config_error err = { "" };
    clear_health_env();
    setenv(var, value, 1);
    if (load_all(&a, &err) != -1)
        fail_msg("%s=%s accepted", var, value);
    if (strncmp(err.msg, var, strlen(var)) != 0)
        fail_msg("error does not name %s: %s", var, err.msg);
    clear_health_env();
}

static void test_config_errors_name_the_variable(void **state)
{
    (void)state;
    expect_config_error("PI_AGENT_HEALTH_ADDR", "localhost");
    expect_config_error("PI_AGENT_HEALTH_ADDR", "300.1.1.1");
    expect_config_error("PI_AGENT_HEALTH_PORT", "65536");
    expect_config_error("PI_AGENT_HEALTH_PORT", "http");
    expect_config_error("PI_AGENT_HEALTH_MAX_CONNECTIONS", "0");
    expect_config_error("PI_AGENT_HEALTH_IDLE_TIMEOUT_SECONDS", "0");
    expect_config_error("PI_AGENT_HEALTH_MAX_PER_ADDRESS", "0");
    expect_config_error("PI_AGENT_RUN_DIR", "run/pi-agent");
    expect_config_error("PI_AGENT_DRAIN_SECONDS", "-1");
    expect_config_error("PI_AGENT_PROBE_URL", "https://127.0.0.1:8443/pi/version");
    expect_config_error("PI_AGENT_PROBE_URL", "http://dashboard:8224/");
    expect_config_error("PI_AGENT_PROBE_INTERVAL_SECONDS", "0");
    {
        struct probe_config cfg;
        struct config_error err = { "" };
        clear_health_env();
        setenv("PI_AGENT_PROBE_URL", "http://admin:s3cret-pw@127.0.0.1:8224/pi/version", 1);
        assert_int_equal(probe_config_load(&cfg, &err), -1);
        assert_non_null(strstr(err.msg, "PI_AGENT_PROBE_URL"));
        assert_null(strstr(err.msg, "s3cret-pw"));
        clear_health_env();
    }
    expect_config_error("PI_AGENT_LICENCE_REQUIRED", "maybe");
    expect_config_error("PI_AGENT_EMF", "yes please");
    expect_config_error("PI_AGENT_EMF_INTERVAL_SECONDS", "0");
    expect_config_error("PI_AGENT_EMF_NAMESPACE", "AWS/Mine");
}

/* ---- the server in-process, with a forked client ------------------------ */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static int client_port;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "client check failed at line %d: %s\n", __LINE__, #cond);   \
            _exit(1);                                                                   \
        }                                                                               \
    } while (0)

static char client_run_dir[64];

static void send_all(int fd, const char *s, size_t n);

/* From a chosen loopback source address (127.0.0.src): one "client host". */
static int client_connect_from(int src)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)client_port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    struct sockaddr_in from = { .sin_family = AF_INET,
                                .sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)src) };
    CHECK(fd >= 0);
    CHECK(bind(fd, (struct sockaddr *)&from, sizeof from) == 0);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    return fd;
}

static int client_connect(void)
{
    return client_connect_from(1);
}

static int client_connect_unix(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/%s", client_run_dir, HEALTH_SOCKET_NAME);
    CHECK(fd >= 0);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    return fd;
}

/* True when the server has closed fd (EOF or reset) within 10 s. */
static bool closed_by_server(int fd)
{
    char b[4096];
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        CHECK(poll(&p, 1, 10000) == 1);
        ssize_t r = recv(fd, b, sizeof b, 0);
        if (r <= 0)
            return true;
    }
}

static bool still_open(int fd)
{
    char b;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return poll(&p, 1, 0) == 0 || recv(fd, &b, 1, MSG_DONTWAIT | MSG_PEEK) > 0;
}

static void served_once(int fd)
{
    char b[4096];
    send_all(fd, "GET /live HTTP/1.1\r\nHost: t\r\n\r\n", 31);
    struct pollfd p = { .fd = fd, .events = POLLIN };
    CHECK(poll(&p, 1, 10000) == 1);
    CHECK(recv(fd, b, sizeof b, 0) > 0);
    CHECK(strncmp(b, "HTTP/1.1 200 OK\r\n", 17) == 0);
}

static void send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        CHECK(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

/* Reads until EOF (or 10 s of silence) into buf; returns the length. */
static size_t read_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        CHECK(poll(&p, 1, 10000) == 1);
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
        CHECK(len < cap - 1);
    }
    buf[len] = '\0';
    return len;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void client_scenarios(void)
{
    static char buf[4 << 20];
    int fd;

    /* Pipelined: three answers in order, the last one closes. */
    fd = client_connect();
    const char *three = "GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
                        "HEAD /live HTTP/1.1\r\nHost: t\r\n\r\n"
                        "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    send_all(fd, three, strlen(three));
    read_all(fd, buf, sizeof buf);
    CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(count(buf, "HTTP/1.1 200 OK\r\n") == 3);
    CHECK(strstr(buf, "\"status\":\"ok\"") != NULL);
    CHECK(strstr(buf, "pi_agent_up 1\n") != NULL);
    CHECK(strstr(buf, "\"status\":\"alive\"") == NULL); /* HEAD: no body */
    close(fd);

    /* Errors, each on its own connection, each closing it. */
    struct { const char *req; const char *status; } errs[] = {
        { "GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "HTTP/1.1 404 " },
        { "PATCH /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "HTTP/1.1 405 " },
        { "GET /health HTTP/1.1\r\n\r\n", "HTTP/1.1 400 " },
        { "GET /health HTTP/3.0\r\nHost: t\r\n\r\n", "HTTP/1.1 505 " },
        { "PUT /live HTTP/1.1\r\nHost: t\r\nContent-Length: 999999\r\n\r\n", "HTTP/1.1 413 " },
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        fd = client_connect();
        send_all(fd, errs[i].req, strlen(errs[i].req));
        read_all(fd, buf, sizeof buf);
        CHECK(strncmp(buf, errs[i].status, strlen(errs[i].status)) == 0);
        close(fd);
    }

    /* 431: the client keeps sending past the limit; it still gets the answer
     * (the server half-closes and drains instead of resetting). */
    fd = client_connect();
    static char big[20000];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET /health HTTP/1.1\r\nHost: t\r\nX: ", 34);
    send_all(fd, big, sizeof big);
    shutdown(fd, SHUT_WR);
    read_all(fd, buf, sizeof buf);
    CHECK(strncmp(buf, "HTTP/1.1 431 ", 13) == 0);
    close(fd);

    /* A body is skipped and the connection kept; half-close still answers. */
    fd = client_connect();
    const char *body = "PUT /live HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                       "GET /live HTTP/1.1\r\nHost: t\r\n\r\n";
    send_all(fd, body, strlen(body));
    shutdown(fd, SHUT_WR);
    read_all(fd, buf, sizeof buf);
    CHECK(strncmp(buf, "HTTP/1.1 405 ", 13) == 0);
    CHECK(strstr(buf, "HTTP/1.1 200 OK") != NULL);
    close(fd);

    /* Back-pressure: 400 pipelined /metrics while not reading, then read all. */
    fd = client_connect();
    static char many[400 * 40 + 64];
    size_t n = 0;
    for (int i = 0; i < 400; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    n += (size_t)snprintf(many + n, sizeof many - n, "GET /live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    send_all(fd, many, n);
    usleep(200000);
    read_all(fd, buf, sizeof buf);
    CHECK(count(buf, "HTTP/1.1 200 OK\r\n") == 401);
    close(fd);

    /* Slow and idle clients are dropped after the idle timeout (1 s). */
    int idle = client_connect();
    int slow = client_connect();
    send_all(slow, "GET /health HTTP/1.1\r\n", 22);
    CHECK(read_all(idle, buf, sizeof buf) == 0);
    CHECK(read_all(slow, buf, sizeof buf) == 0);
    close(idle);
    close(slow);

    /* The container check's own socket answers the same. */
    fd = client_connect_unix();
    send_all(fd, "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 52);
    read_all(fd, buf, sizeof buf);
    CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(buf, "\"status\":\"ok\"") != NULL);
    close(fd);

    /* One address holds at most 4 (PI_AGENT_HEALTH_MAX_PER_ADDRESS): its
     * fifth connection closes its own connection waiting longest. */
    int a[5];
    for (int i = 0; i < 5; i++)
        a[i] = client_connect_from(2);
    CHECK(closed_by_server(a[0]));
    for (int i = 1; i < 5; i++)
        CHECK(still_open(a[i]));

    /* A full table (8) makes room: the connection waiting longest for a
     * request goes (a[1]), not those answered since, and the new one is
     * served. */
    int held[4];
    for (int i = 0; i < 4; i++) {
        held[i] = client_connect_from(1);
        served_once(held[i]);
    }
    fd = client_connect_from(3);
    send_all(fd, "GET /live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 50);
    read_all(fd, buf, sizeof buf);
    CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    close(fd);
    CHECK(closed_by_server(a[1]));
    for (int i = 0; i < 4; i++)
        served_once(held[i]);
    for (int i = 2; i < 5; i++)
        CHECK(still_open(a[i]));
    for (int i = 0; i < 4; i++)
        close(held[i]);
    for (int i = 0; i < 5; i++)
        close(a[i]);
    _exit(0);
}

struct server_run {
    pid_t client;
    int status;
    int ready_calls;
};

static void on_ready(void *ctx)
{
    ((struct server_run *)ctx)->ready_calls++;
}

static void poll_client(struct loop *loop, void *ctx)
{
    struct server_run *r = ctx;
    if (waitpid(r->client, &r->status, WNOHANG) == r->client) {
        r->client = 0;
        loop_stop(loop, 0);
    }
}

static void give_up(struct loop *loop, void *ctx)
{
    (void)ctx;
    loop_stop(loop, 1);
}

static void test_server_in_process(void **state)
{
    (void)state;
    struct agent_state st;
    struct health_config cfg;
    struct config_error err = { "" };
    char port[16];
    healthy_state(&st);
    clear_health_env();
    client_port = free_port();
    snprintf(port, sizeof port, "%d", client_port);
    setenv("PI_AGENT_HEALTH_ADDR", "127.0.0.1", 1);
    setenv("PI_AGENT_HEALTH_PORT", port, 1);
    setenv("PI_AGENT_HEALTH_IDLE_TIMEOUT_SECONDS", "1", 1);
    setenv("PI_AGENT_HEALTH_MAX_CONNECTIONS", "8", 1);
    setenv("PI_AGENT_HEALTH_MAX_PER_ADDRESS", "4", 1);
    snprintf(client_run_dir, sizeof client_run_dir, "/tmp/pi-agent-unit-XXXXXX");
    assert_non_null(mkdtemp(client_run_dir));
    setenv("PI_AGENT_RUN_DIR", client_run_dir, 1);
    assert_int_equal(health_config_load(&cfg, &err), 0);
    assert_int_equal(cfg.max_per_peer, 4);
    clear_health_env();
    unsetenv("PI_AGENT_HEALTH_IDLE_TIMEOUT_SECONDS");
    unsetenv("PI_AGENT_HEALTH_MAX_CONNECTIONS");

    struct loop *loop = loop_new();
    assert_non_null(loop);
    struct server_run run = { 0 };
    struct readiness ready;
    memset(&ready, 0, sizeof ready);
    struct health_server *srv = health_server_start(loop, &cfg, &st, &ready);
    readiness_attach(&ready, &st, &default_policy, on_ready, &run);
    assert_non_null(srv);

    fflush(NULL);
    run.client = fork();
    assert_true(run.client >= 0);
    if (run.client == 0)
        client_scenarios();
    assert_true(loop_timer_add(loop, 50, 50, poll_client, &run) > 0);
    assert_true(loop_timer_add(loop, 60000, 0, give_up, &run) > 0);
    int rc = loop_run(loop);
    if (run.client > 0) {
        kill(run.client, SIGKILL);
        waitpid(run.client, &run.status, 0);
    }
    readiness_detach(&ready);
    health_server_free(srv);
    loop_free(loop);
    assert_int_equal(rc, 0);
    assert_true(WIFEXITED(run.status));
    assert_int_equal(WEXITSTATUS(run.status), 0);
    assert_int_equal(run.ready_calls, 1);
    assert_true(st.ready_once);

    /* A port in use: start fails (and says so) instead of half-working. */
    int busy = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)client_port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int one = 1;
    setsockopt(busy, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    assert_int_equal(bind(busy, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(busy, 1), 0);
    loop = loop_new();
    assert_null(health_server_start(loop, &cfg, &st, &ready));
    loop_free(loop);
    close(busy);

    /* The agent removed its socket on the way out. */
    char sock[128];
    struct stat sst;
    snprintf(sock, sizeof sock, "%s/%s", client_run_dir, HEALTH_SOCKET_NAME);
    assert_int_equal(lstat(sock, &sst), -1);
    assert_int_equal(rmdir(client_run_dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_good_is_ok),
        cmocka_unit_test(test_starting_until_first_probe_passes),
        cmocka_unit_test(test_probe_failing_after_ready_is_unhealthy),
        cmocka_unit_test(test_child_not_running),
        cmocka_unit_test(test_draining_wins),
        cmocka_unit_test(test_efs_rules),
        cmocka_unit_test(test_licence_rules),
        cmocka_unit_test(test_health_json),
        cmocka_unit_test(test_metrics_text),
        cmocka_unit_test(test_numbers_keep_every_digit),
        cmocka_unit_test(test_client_summary),
        cmocka_unit_test(test_probe_url),
        cmocka_unit_test(test_probe_status_line),
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_errors_name_the_variable),
        cmocka_unit_test(test_server_in_process),
        cmocka_unit_test(test_probe_result_dropped_when_child_restarts),
        cmocka_unit_test(test_readiness_derived_on_change),
    };
    return cmocka_run_group_tests_name("health_report", tests, NULL, NULL);
}
