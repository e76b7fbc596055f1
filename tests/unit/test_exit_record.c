/* Unit tests for the run record (format, parser, how a run ended), the
 * fleet's scan record, the startup budget rule, /live and the new figures in
 * /health, /metrics and EMF. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "config.h"
#include "efs_share.h"
#include "emf.h"
#include "exit_history.h"
#include "exit_record.h"
#include "health_report.h"
#include "startup.h"
#include "state.h"

#define W_EXIT(c) ((c) << 8)
#define W_SIG(s) (s)

static struct exit_record sample(void)
{
    struct exit_record r;
    memset(&r, 0, sizeof r);
    snprintf(r.task, sizeof r.task, "0123456789abcdef");
    snprintf(r.family, sizeof r.family, "pi-dashboard");
    r.start_ms = 1796000000000ull;
    r.ready_ms = 1796000040000ull;
    r.exit_status = -1;
    snprintf(r.probe, sizeof r.probe, "ok");
    return r;
}

static void test_record_round_trip(void **s)
{
    (void)s;
    struct exit_record r = sample(), back;
    char buf[EXIT_RECORD_MAX];
    int n = exit_record_format(&r, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(buf[n - 1], '\n');
    assert_null(memchr(buf, '\n', (size_t)n - 1));
    assert_int_equal(exit_record_parse(buf, (size_t)n, &back), 0);
    assert_int_equal(back.end_ms, 0);
    assert_string_equal(back.reason, "");
    assert_int_equal(back.exit_status, -1);
    assert_string_equal(back.task, r.task);
    assert_true(back.ready_ms == r.ready_ms);

    r.end_ms = r.start_ms + 93000;
    r.stop_ms = r.start_ms + 90000;
    snprintf(r.reason, sizeof r.reason, EXIT_REASON_KILLED_AFTER_GRACE);
    r.exit_status = 137;
    snprintf(r.detail, sizeof r.detail, "a \"quoted\"\ndetail");
    n = exit_record_format(&r, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(exit_record_parse(buf, (size_t)n, &back), 0);
    assert_string_equal(back.reason, "killed-after-grace");
    assert_int_equal(back.exit_status, 137);
    assert_true(back.end_ms == r.end_ms && back.stop_ms == r.stop_ms);
    assert_string_equal(back.detail, "a \"quoted\" detail"); /* one line */
}

static void test_record_format_refuses_a_small_buffer(void **s)
{
    (void)s;
    struct exit_record r = sample();
    char buf[40];
    assert_int_equal(exit_record_format(&r, buf, sizeof buf), -1);
}

static void test_record_parse_rejects(void **s)
{
    (void)s;
    struct exit_record r;
    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"format\":\"pi-agent-run/2\",\"task\":\"t\",\"start_ms\":1}",
        "{\"format\":\"pi-agent-run/1\",\"start_ms\":1}",                      /* no task */
        "{\"format\":\"pi-agent-run/1\",\"task\":\"t\"}",                       /* no start */
        "{\"format\":\"pi-agent-run/1\",\"task\":\"t\",\"start_ms\":-5}",
        "{\"format\":\"pi-agent-run/1\",\"task\":\"t\",\"start_ms\":1.5}",
        "{\"format\":\"pi-agent-run/1\",\"task\":\"t\",\"start_ms\":1e300}",
        "{\"format\":\"pi-agent-run/1\",\"task\":7,\"start_ms\":1}",
        /* ended without a known reason */
        "{\"format\":\"pi-agent-run/1\",\"task\":\"t\",\"start_ms\":1,\"end_ms\":2,\"reason\":\"bored\"}",
        /* a reason while not ended */
        "{\"format\":\"pi-agent-run/1\",\"task\":\"t\",\"start_ms\":1,\"reason\":\"exited\"}",
        /* ended before it started */
        "{\"format\":\"pi-agent-run/1\",\"task\":\"t\",\"start_ms\":9,\"end_ms\":2,\"reason\":\"exited\",\"exit_status\":0}",
        "{\"format\":\"pi-agent-run/1\",\"task\":\"t\",\"start_ms\":1,\"end_ms\":2,\"reason\":\"exited\",\"exit_status\":256}",
        "{\"format\":\"pi-agent-run/1\",\"task\":\"t\",\"start_ms\":1,\"end_ms\":2,\"reason\":\"exited\",\"exit_status\":\"0\"}",
        "{\"format\":\"pi-agent-run/1\",\"task\":\"t\",\"start_ms\":1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (exit_record_parse(bad[i], strlen(bad[i]), &r) == 0)
            fail_msg("accepted: %s", bad[i]);
        assert_int_equal(r.exit_status, -1);
        assert_string_equal(r.task, "");
    }
    const char *good = "{\"format\":\"pi-agent-run/1\",\"task\":\"t\",\"start_ms\":1,\"end_ms\":2,"
                       "\"reason\":\"oom-killed\",\"exit_status\":137,\"extra\":[1,2]}";
    assert_int_equal(exit_record_parse(good, strlen(good), &r), 0);
    assert_string_equal(r.reason, "oom-killed");
}

static void test_reasons(void **s)
{
    (void)s;
    static const char *const words[] = { "stopped", "exited", "signal", "oom-killed",
                                         "killed-after-grace", "startup-timeout", "licence",
                                         "storage", "hook", "config", "killed" };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        assert_true(exit_reason_known(words[i]));
    assert_false(exit_reason_known("crashed"));
    assert_false(exit_reason_abnormal("stopped", 143));
    assert_false(exit_reason_abnormal("exited", 0));
    assert_true(exit_reason_abnormal("exited", 1));
    assert_true(exit_reason_abnormal("killed", 137));
    assert_true(exit_reason_abnormal("licence", 77));
}

static void decide(const struct exit_facts *f, const char *want_reason, int want_status)
{
    const char *reason;
    int status;
    exit_decide(f, &reason, &status);
    assert_string_equal(reason, want_reason);
    assert_int_equal(status, want_status);
}

static void test_decide(void **s)
{
    (void)s;
    struct exit_facts f = { .child_started = true, .stop_exit_status = -1 };

    /* requested stop, JVM exits 143 itself / by the signal / 0 */
    f.stop_requested = true;
    f.wait_status = W_EXIT(143);
    decide(&f, "stopped", 143);
    f.stop_exit_status = 0;
    decide(&f, "stopped", 0);
    f.wait_status = W_SIG(SIGTERM);
    decide(&f, "stopped", 0);
    f.wait_status = W_EXIT(0);
    f.stop_exit_status = 3;
    decide(&f, "stopped", 3);
    /* killed after the grace keeps 137 whatever the setting */
    f.wait_status = W_SIG(SIGKILL);
    f.killed_after_grace = true;
    decide(&f, "killed-after-grace", 137);
    /* a crash while stopping keeps its own status */
    f.killed_after_grace = false;
    f.wait_status = W_EXIT(1);
    decide(&f, "exited", 1);
    f.wait_status = W_SIG(SIGSEGV);
    decide(&f, "signal", 128 + SIGSEGV);

    /* nobody asked */
    f = (struct exit_facts){ .child_started = true, .stop_exit_status = 0 };
    f.wait_status = W_EXIT(0);
    decide(&f, "exited", 0);
    f.wait_status = W_EXIT(143);
    decide(&f, "exited", 143);
    f.wait_status = W_SIG(SIGKILL);
    decide(&f, "signal", 137);
    f.oom_killed = true;
    decide(&f, "oom-killed", 137);
    f.wait_status = W_EXIT(137); /* a wrapper shell reporting the JVM's death */
    decide(&f, "oom-killed", 137);
    f.wait_status = W_EXIT(1); /* OOM elsewhere in the cgroup, the child exited 1 */
    decide(&f, "exited", 1);
    f.wait_status = W_SIG(SIGKILL); /* the agent's own kill after the grace wins */
    f.stop_requested = f.killed_after_grace = true;
    decide(&f, "killed-after-grace", 137);
    f.stop_requested = f.killed_after_grace = false;
    f.oom_killed = false;
    f.startup_timed_out = true;
    f.stop_requested = true;
    f.wait_status = W_EXIT(143);
    decide(&f, "startup-timeout", 143); /* abnormal: keeps its own status */

    /* the start stopped */
    f = (struct exit_facts){ .stop_exit_status = -1 };
    f.start_rc = 73;
    decide(&f, "storage", 73);
    f.start_rc = 75;
    decide(&f, "hook", 75);
    f.start_rc = 77;
    decide(&f, "licence", 77);
    f.start_rc = 78;
    decide(&f, "config", 78);
    f.start_rc = 0;
    f.start_signal = SIGTERM;
    decide(&f, "stopped", 143);
    f.stop_exit_status = 0;
    decide(&f, "stopped", 0);
    f = (struct exit_facts){ .stop_exit_status = -1, .internal_rc = 70 };
    decide(&f, "exited", 70);
}

static void test_oom_counter(void **s)
{
    (void)s;
    uint64_t v = 99;
    const char *v2 = "low 0\nhigh 3\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
    assert_int_equal(exit_parse_oom_kill(v2, strlen(v2), &v), 0);
    assert_true(v == 2);
    const char *v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 17";
    assert_int_equal(exit_parse_oom_kill(v1, strlen(v1), &v), 0);
    assert_true(v == 17);
    const char *none = "oom_kill_disable 0\nunder_oom 0\noom_kill x\noom_kill \n";
    assert_int_equal(exit_parse_oom_kill(none, strlen(none), &v), -1);
}

static void test_stop_exit_status_setting(void **s)
{
    (void)s;
    struct config_error err = { "" };
    int v = 5;
    assert_int_equal(config_parse_stop_exit_status("PI_AGENT_STOP_EXIT_STATUS", NULL, &v, &err), 0);
    assert_int_equal(v, -1);
    assert_int_equal(config_parse_stop_exit_status("PI_AGENT_STOP_EXIT_STATUS", "child", &v, &err), 0);
    assert_int_equal(v, -1);
    assert_int_equal(config_parse_stop_exit_status("PI_AGENT_STOP_EXIT_STATUS", "0", &v, &err), 0);
    assert_int_equal(v, 0);
    assert_int_equal(config_parse_stop_exit_status("PI_AGENT_STOP_EXIT_STATUS", "255", &v, &err), 0);
    assert_int_equal(v, 255);
    static const char *const bad[] = { "256", "-1", "parent", " 0", "0x1" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(config_parse_stop_exit_status("PI_AGENT_STOP_EXIT_STATUS", bad[i], &v, &err), -1);
        assert_non_null(strstr(err.msg, "PI_AGENT_STOP_EXIT_STATUS"));
        assert_non_null(strstr(err.msg, "child"));
    }
}

static void test_ran_s(void **s)
{
    (void)s;
    struct exit_entry e;
    memset(&e, 0, sizeof e);
    e.rec.start_ms = 1000000;
    e.rec.end_ms = 1061500;
    assert_int_equal(exit_entry_ran_s(&e), 61);
    e.rec.end_ms = 0;
    e.last_ms = 1030000; /* killed: at least until the last write */
    assert_int_equal(exit_entry_ran_s(&e), 30);
    e.last_ms = 10;
    assert_int_equal(exit_entry_ran_s(&e), 0);
}

/* ---- the fleet's scan record ---------------------------------------------- */

static void test_share_round_trip(void **s)
{
    (void)s;
    struct efs_share_record r, back;
    memset(&r, 0, sizeof r);
    r.time_ms = 1796000000123ull;
    r.writer = 0xfedcba9876543210ull;
    r.total_bytes = 123456789;
    r.files = 4242;
    r.errors = 1;
    r.scan_seconds = 12.5;
    r.nfolders = 2;
    snprintf(r.folders[0].name, sizeof r.folders[0].name, "themes");
    r.folders[0].bytes = 100;
    r.folders[0].files = 3;
    snprintf(r.folders[1].name, sizeof r.folders[1].name, "custom_jdbc");
    r.folders[1].bytes = 123456689;
    r.folders[1].files = 4239;
    char buf[EFS_SHARE_MAX];
    int n = efs_share_format(&r, buf, sizeof buf);
    assert_true(n > 0);
    assert_int_equal(efs_share_parse(buf, (size_t)n, &back), 0);
    assert_true(back.time_ms == r.time_ms && back.total_bytes == r.total_bytes);
    assert_true(back.writer == r.writer);
    assert_true(back.files == r.files && back.errors == 1 && back.nfolders == 2);
    assert_string_equal(back.folders[1].name, "custom_jdbc");
    assert_true(back.folders[1].files == 4239);
    assert_true(back.scan_seconds > 12.49 && back.scan_seconds < 12.51);
    /* cut anywhere: never accepted as complete */
    for (int cut = 0; cut < n; cut++)
        assert_int_equal(efs_share_parse(buf, (size_t)cut, &back), -1);
    assert_int_equal(efs_share_format(&r, buf, 20), -1);
}

static void test_share_parse_rejects(void **s)
{
    (void)s;
    struct efs_share_record r;
    static const char *const bad[] = {
        "pi-agent-scan/2\ntime_ms 1\ntotal_bytes 1\nfiles 1\nerrors 0\nscan_seconds 1\n",
        "pi-agent-scan/1\nwriter 00000000000000aa\ntotal_bytes 1\nfiles 1\nerrors 0\nscan_seconds 1\nend\n",
        "pi-agent-scan/1\nwriter 00000000000000aa\ntime_ms 0\ntotal_bytes 1\nfiles 1\nerrors 0\nscan_seconds 1\nend\n",
        "pi-agent-scan/1\nwriter 00000000000000aa\ntime_ms 1\ntotal_bytes -1\nfiles 1\nerrors 0\nscan_seconds 1\nend\n",
        "pi-agent-scan/1\nwriter 00000000000000aa\ntime_ms 1\ntotal_bytes 99999999999999999999\nfiles 1\nerrors 0\nscan_seconds 1\nend\n",
        "pi-agent-scan/1\nwriter 00000000000000aa\ntime_ms 1\ntotal_bytes 1\nfiles 1\nerrors 0\nscan_seconds nan\nend\n",
        "pi-agent-scan/1\nwriter 00000000000000aa\ntime_ms 1\ntotal_bytes 1\nfiles 1\nerrors 0\nscan_seconds 1\nfolder ../x 1 1\nend\n",
        "pi-agent-scan/1\nwriter 00000000000000aa\ntime_ms 1\ntotal_bytes 1\nfiles 1\nerrors 0\nscan_seconds 1\nfolder x 1\nend\n",
        "pi-agent-scan/1\nwriter 00000000000000aa\ntime_ms 1\ntotal_bytes 1\nfiles 1\nerrors 0\nscan_seconds 1\nnokey\nend\n",
        "pi-agent-scan/1\ntime_ms 1\ntotal_bytes 1\nfiles 1\nerrors 0\nscan_seconds 1\nend\n",
        "pi-agent-scan/1\nwriter 00000000000000AA\ntime_ms 1\ntotal_bytes 1\nfiles 1\nerrors 0\nscan_seconds 1\nend\n",
        "pi-agent-scan/1\nwriter 00000000000000aa\ntime_ms 1\ntotal_bytes 1\nfiles 1\nerrors 0\nscan_seconds 1\n",
        "pi-agent-scan/1\nwriter 00000000000000aa\ntime_ms 1\ntotal_bytes 1\nfiles 1\nerrors 0\nscan_seconds 1\nend\nfolder x 1 1\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (efs_share_parse(bad[i], strlen(bad[i]), &r) == 0)
            fail_msg("accepted: %s", bad[i]);
    const char *good = "pi-agent-scan/1\nwriter 00000000000000aa\ntime_ms 5\ntotal_bytes 1\nfiles 1\nerrors 0\n"
                       "scan_seconds 0.25\nlater_key whatever\nfolder keys 1 1\nend\n";
    assert_int_equal(efs_share_parse(good, strlen(good), &r), 0);
    assert_int_equal(r.nfolders, 1);
}

static void test_share_usable(void **s)
{
    (void)s;
    struct efs_share_record r;
    memset(&r, 0, sizeof r);
    r.time_ms = 100000;
    r.writer = 7;
    r.nfolders = 2;
    snprintf(r.folders[0].name, sizeof r.folders[0].name, "themes");
    snprintf(r.folders[1].name, sizeof r.folders[1].name, "keys");
    char names[2][EFS_NAME_MAX + 1] = { "themes", "keys" };
    assert_true(efs_share_usable(&r, 8, names, 2, 100000 + 9999, 10000));
    assert_false(efs_share_usable(&r, 8, names, 2, 100000 + 10000, 10000)); /* as old as the interval */
    assert_false(efs_share_usable(&r, 7, names, 2, 100001, 10000));         /* its own walk */
    assert_false(efs_share_usable(&r, 8, names, 2, 99999, 10000));          /* from the future */
    assert_false(efs_share_usable(&r, 8, names, 2, 100001, 0));             /* no interval */
    assert_false(efs_share_usable(&r, 8, names, 1, 100001, 10000));         /* other folders */
    char other[2][EFS_NAME_MAX + 1] = { "keys", "themes" };
    assert_false(efs_share_usable(&r, 8, other, 2, 100001, 10000));
}

/* ---- startup budget and /live ----------------------------------------------- */

static void test_startup_budget(void **s)
{
    (void)s;
    assert_true(startup_budget_left_ms(true, 1000, 1000, 30) == 30000);
    assert_true(startup_budget_left_ms(true, 1000, 21000, 30) == 10000);
    assert_true(startup_budget_left_ms(true, 1000, 31000, 30) == 0);
    assert_true(startup_budget_left_ms(true, 1000, 99000, 30) == 0);
    assert_true(startup_budget_left_ms(false, 1000, 99000, 30) == 30000); /* restart pending */
}

static void test_live(void **s)
{
    (void)s;
    static struct agent_state st;
    char buf[1024];
    memset(&st, 0, sizeof st);
    st.child_running = true;
    st.child_pid = 42;
    assert_true(health_live(&st));
    int n = health_render_live(&st, buf, sizeof buf);
    assert_true(n > 0);
    cJSON *doc = cJSON_ParseWithLength(buf, (size_t)n);
    assert_string_equal(cJSON_GetObjectItem(doc, "status")->valuestring, "alive");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(doc, "reason")));
    cJSON_Delete(doc);

    /* readiness problems never fail liveness */
    st.licence.status = LS_EXPIRED;
    st.efs.status = EFS_STATUS_FAILED;
    st.draining = true;
    assert_true(health_live(&st));

    st.startup_timed_out = true;
    snprintf(st.live_reason, sizeof st.live_reason, "not ready within PI_AGENT_STARTUP_TIMEOUT_SECONDS=5");
    assert_false(health_live(&st));
    n = health_render_live(&st, buf, sizeof buf);
    doc = cJSON_ParseWithLength(buf, (size_t)n);
    assert_string_equal(cJSON_GetObjectItem(doc, "status")->valuestring, "startup-timeout");
    assert_non_null(strstr(cJSON_GetObjectItem(doc, "reason")->valuestring,
                           "PI_AGENT_STARTUP_TIMEOUT_SECONDS"));
    cJSON_Delete(doc);
    assert_int_equal(health_render_live(&st, buf, 20), -1);

    st.startup_timed_out = false;
    st.child_running = false;
    assert_false(health_live(&st));
    n = health_render_live(&st, buf, sizeof buf);
    doc = cJSON_ParseWithLength(buf, (size_t)n);
    assert_string_equal(cJSON_GetObjectItem(doc, "status")->valuestring, "child-not-running");
    cJSON_Delete(doc);
}

static void test_previous_run_and_abnormal_count_reported(void **s)
{
    (void)s;
    static struct agent_state st;
    static char buf[65536];
    struct health_policy policy = { 0 };
    struct health_verdict v;
    memset(&st, 0, sizeof st);
    st.child_running = true;
    health_evaluate(&st, &policy, &v);

    int n = health_render_json(&st, &v, buf, sizeof buf);
    cJSON *doc = cJSON_ParseWithLength(buf, (size_t)n);
    assert_non_null(doc);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(doc, "previous_run")));
    cJSON_Delete(doc);
    n = health_render_metrics(&st, &v, 1, buf, sizeof buf);
    assert_null(strstr(buf, "pi_agent_recent_abnormal_exits"));

    st.previous_run.known = true;
    snprintf(st.previous_run.task, sizeof st.previous_run.task, "abc");
    snprintf(st.previous_run.reason, sizeof st.previous_run.reason, "oom-killed");
    st.previous_run.exit_status = 137;
    st.previous_run.ran_s = 3600;
    st.previous_run.ended_ms = 1796000000000ull;
    st.recent_abnormal_known = true;
    st.recent_abnormal_exits = 4;
    n = health_render_json(&st, &v, buf, sizeof buf);
    doc = cJSON_ParseWithLength(buf, (size_t)n);
    const cJSON *p = cJSON_GetObjectItem(doc, "previous_run");
    assert_string_equal(cJSON_GetObjectItem(p, "task")->valuestring, "abc");
    assert_string_equal(cJSON_GetObjectItem(p, "reason")->valuestring, "oom-killed");
    assert_int_equal(cJSON_GetObjectItem(p, "exit_status")->valueint, 137);
    assert_int_equal(cJSON_GetObjectItem(p, "ran_s")->valueint, 3600);
    assert_true(cJSON_IsString(cJSON_GetObjectItem(p, "ended")));
    cJSON_Delete(doc);

    n = health_render_metrics(&st, &v, 1, buf, sizeof buf);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "# TYPE pi_agent_recent_abnormal_exits gauge\npi_agent_recent_abnormal_exits 4\n"));

    n = emf_render(&st, &v, "Panintelligence/Agent", 1796000000000ull, buf, sizeof buf);
    doc = cJSON_ParseWithLength(buf, (size_t)n);
    assert_int_equal(cJSON_GetObjectItem(doc, "RecentAbnormalExits")->valueint, 4);
    assert_non_null(strstr(buf, "{\"Name\":\"RecentAbnormalExits\",\"Unit\":\"Count\"}"));
    cJSON_Delete(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_record_format_refuses_a_small_buffer),
        cmocka_unit_test(test_record_parse_rejects),
        cmocka_unit_test(test_reasons),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_oom_counter),
        cmocka_unit_test(test_stop_exit_status_setting),
        cmocka_unit_test(test_ran_s),
        cmocka_unit_test(test_share_round_trip),
        cmocka_unit_test(test_share_parse_rejects),
        cmocka_unit_test(test_share_usable),
        cmocka_unit_test(test_startup_budget),
        cmocka_unit_test(test_live),
        cmocka_unit_test(test_previous_run_and_abnormal_count_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
