/* Unit tests for the database check's settings and for how its result is
 * reported: /health checks.database, /metrics, EMF, and that it never
 * decides readiness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "dbcheck.h"
#include "emf.h"
#include "health_report.h"
#include "state.h"

static const struct health_policy policy = { false, false };

static void settings_from_the_dashboards_variables(void **s)
{
    (void)s;
    struct dbcheck_config c;
    dbcheck_config_parse(NULL, "3307", &c);
    assert_false(c.enabled);
    dbcheck_config_parse("", NULL, &c);
    assert_false(c.enabled);
    dbcheck_config_parse("pi.cluster-x.eu-west-2.rds.amazonaws.com", NULL, &c);
    assert_true(c.enabled);
    assert_int_equal(c.port, 3306);
    assert_string_equal(c.problem, "");
    dbcheck_config_parse("10.0.0.5", "3307", &c);
    assert_int_equal(c.port, 3307);
    assert_string_equal(c.host, "10.0.0.5");
    dbcheck_config_parse("::1", "", &c);
    assert_int_equal(c.port, 3306);

    const char *bad_ports[] = { "0", "65536", "33o6", "-1", " 3306", "99999999999999999999" };
    for (size_t i = 0; i < sizeof bad_ports / sizeof bad_ports[0]; i++) {
        dbcheck_config_parse("db", bad_ports[i], &c);
        assert_true(c.enabled);
        assert_non_null(strstr(c.problem, "PI_DB_PORT: expected a port 1-65535"));
    }
    const char *bad_hosts[] = { "db host", "user@db", "db/x", "db\n" };
    for (size_t i = 0; i < sizeof bad_hosts / sizeof bad_hosts[0]; i++) {
        dbcheck_config_parse(bad_hosts[i], NULL, &c);
        assert_true(c.enabled);
        assert_non_null(strstr(c.problem, "PI_DB_HOST"));
        assert_null(strstr(c.problem, bad_hosts[i])); /* never echoed */
    }
    char longhost[400];
    memset(longhost, 'a', sizeof longhost - 1);
    longhost[sizeof longhost - 1] = '\0';
    dbcheck_config_parse(longhost, NULL, &c);
    assert_non_null(strstr(c.problem, "PI_DB_HOST is longer than"));
}

static void healthy(struct agent_state *st)
{
    memset(st, 0, sizeof *st);
    st->started_ms = 1764060000000ull;
    st->child_pid = 42;
    st->child_running = true;
    st->probe.status = PROBE_OK;
    st->probe.passes = 1;
    st->licence.status = LS_VALID;
    st->efs.status = EFS_STATUS_OK;
}

static void database(struct agent_state *st, enum database_status status, const char *reason)
{
    struct database_state *d = &st->database;
    d->configured = true;
    d->status = status;
    snprintf(d->reason, sizeof d->reason, "%s", reason);
    snprintf(d->target, sizeof d->target, "db.internal:3306");
    d->measured = true;
    d->last_latency_s = 0.0025;
    d->passes = 7;
    d->failures = 2;
    d->since_ms = 1764060005000ull;
}

static cJSON *health_json(const struct agent_state *st, struct health_verdict *v)
{
    static char buf[16384];
    health_evaluate(st, &policy, v);
    assert_true(health_render_json(st, v, buf, sizeof buf) > 0);
    cJSON *doc = cJSON_Parse(buf);
    if (!doc)
        fail_msg("not JSON: %s", buf);
    return doc;
}

static void health_shows_the_database_and_stays_ready_without_it(void **s)
{
    (void)s;
    struct agent_state st;
    struct health_verdict v;
    healthy(&st);
    cJSON *doc = health_json(&st, &v);
    assert_null(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(doc, "checks"), "database"));
    cJSON_Delete(doc);

    database(&st, DATABASE_FAILING, "TCP connect to db.internal:3306: Connection refused");
    doc = health_json(&st, &v);
    assert_true(v.ready); /* a database outage never fails readiness */
    assert_int_equal(v.status, HEALTH_OK);
    const cJSON *db = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "checks"), "database");
    assert_non_null(db);
    assert_string_equal(cJSON_GetObjectItem(db, "status")->valuestring, "failing");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(db, "ok")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(db, "blocking")));
    assert_string_equal(cJSON_GetObjectItem(db, "reason")->valuestring,
                        "TCP connect to db.internal:3306: Connection refused");
    assert_string_equal(cJSON_GetObjectItem(db, "since")->valuestring, "2025-11-25T08:40:05.000Z");
    assert_true(cJSON_GetObjectItem(db, "latency_seconds")->valuedouble == 0.0025);
    assert_string_equal(cJSON_GetObjectItem(db, "target")->valuestring, "db.internal:3306");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "failing")), 0);
    cJSON_Delete(doc);

    database(&st, DATABASE_OK, "accepts TCP connections");
    st.database.measured = false;
    doc = health_json(&st, &v);
    db = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "checks"), "database");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(db, "ok")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(db, "latency_seconds")));
    cJSON_Delete(doc);
}

static void metrics_and_emf_carry_the_database(void **s)
{
    (void)s;
    struct agent_state st;
    struct health_verdict v;
    char buf[16384];
    healthy(&st);
    health_evaluate(&st, &policy, &v);
    assert_true(health_render_metrics(&st, &v, st.started_ms, buf, sizeof buf) > 0);
    assert_null(strstr(buf, "pi_database"));
    assert_true(emf_render(&st, &v, "Pi/Test", 1, buf, sizeof buf) > 0);
    assert_null(strstr(buf, "Database"));

    database(&st, DATABASE_OK, "accepts TCP connections");
    health_evaluate(&st, &policy, &v);
    assert_true(health_render_metrics(&st, &v, st.started_ms, buf, sizeof buf) > 0);
    assert_non_null(strstr(buf, "# TYPE pi_agent_database_up gauge\npi_agent_database_up 1\n"));
    assert_non_null(strstr(buf, "\npi_agent_database_connect_seconds 0.0025\n"));
    assert_true(emf_render(&st, &v, "Pi/Test", 1, buf, sizeof buf) > 0);
    cJSON *doc = cJSON_Parse(buf);
    assert_non_null(doc);
    assert_true(cJSON_GetObjectItem(doc, "DatabaseUp")->valuedouble == 1);
    assert_true(cJSON_GetObjectItem(doc, "DatabaseConnectSeconds")->valuedouble == 0.0025);
    assert_non_null(strstr(buf, "{\"Name\":\"DatabaseConnectSeconds\",\"Unit\":\"Seconds\"}"));
    cJSON_Delete(doc);

    database(&st, DATABASE_FAILING, "no answer");
    health_evaluate(&st, &policy, &v);
    assert_true(health_render_metrics(&st, &v, st.started_ms, buf, sizeof buf) > 0);
    assert_non_null(strstr(buf, "\npi_agent_database_up 0\n"));
    assert_true(emf_render(&st, &v, "Pi/Test", 1, buf, sizeof buf) > 0);
    doc = cJSON_Parse(buf);
    assert_true(cJSON_GetObjectItem(doc, "DatabaseUp")->valuedouble == 0);
    cJSON_Delete(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(settings_from_the_dashboards_variables),
        cmocka_unit_test(health_shows_the_database_and_stays_ready_without_it),
        cmocka_unit_test(metrics_and_emf_carry_the_database),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
