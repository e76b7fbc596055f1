/* Unit tests for the CloudWatch Embedded Metric Format line, checked against
 * the structure the EMF specification requires. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "emf.h"
#include "health_report.h"
#include "state.h"

static const char *const valid_units[] = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
    "Terabits/Second", "Count/Second", "None", NULL,
};

static bool unit_valid(const char *u)
{
    for (const char *const *p = valid_units; *p; p++)
        if (strcmp(*p, u) == 0)
            return true;
    return false;
}

/* Validates a document against the EMF specification's structure and
 * returns it parsed (caller frees). */
static cJSON *check_emf(const char *line, uint64_t want_ts)
{
    assert_null(strchr(line, '\n'));
    cJSON *root = cJSON_Parse(line);
    if (root == NULL || !cJSON_IsObject(root))
        fail_msg("not a JSON object: %s", line);

    const cJSON *aws = cJSON_GetObjectItemCaseSensitive(root, "_aws");
    assert_true(cJSON_IsObject(aws));
    /* _aws holds exactly Timestamp and CloudWatchMetrics. */
    assert_int_equal(cJSON_GetArraySize(aws), 2);
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(aws, "Timestamp");
    assert_true(cJSON_IsNumber(ts));
    assert_true(ts->valuedouble == (double)want_ts);

    const cJSON *directives = cJSON_GetObjectItemCaseSensitive(aws, "CloudWatchMetrics");
    assert_true(cJSON_IsArray(directives));
    assert_int_equal(cJSON_GetArraySize(directives), 1);
    const cJSON *d;
    cJSON_ArrayForEach(d, directives)
    {
        assert_true(cJSON_IsObject(d));
        const cJSON *ns = cJSON_GetObjectItemCaseSensitive(d, "Namespace");
        assert_true(cJSON_IsString(ns));
        assert_true(strlen(ns->valuestring) >= 1 && strlen(ns->valuestring) <= 255);

        const cJSON *dims = cJSON_GetObjectItemCaseSensitive(d, "Dimensions");
        assert_true(cJSON_IsArray(dims));
        const cJSON *set;
        cJSON_ArrayForEach(set, dims)
        {
            assert_true(cJSON_IsArray(set));
            assert_true(cJSON_GetArraySize(set) <= 30);
            const cJSON *key;
            cJSON_ArrayForEach(key, set)
            {
                assert_true(cJSON_IsString(key));
                const cJSON *target = cJSON_GetObjectItemCaseSensitive(root, key->valuestring);
                if (!cJSON_IsString(target) || target->valuestring[0] == '\0' ||
                    strlen(target->valuestring) > 1024)
                    fail_msg("dimension %s has no string value at the root", key->valuestring);
            }
        }

        const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(d, "Metrics");
        assert_true(cJSON_IsArray(metrics));
        assert_true(cJSON_GetArraySize(metrics) >= 1 && cJSON_GetArraySize(metrics) <= 100);
        const cJSON *m;
        cJSON_ArrayForEach(m, metrics)
        {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "Name");
            const cJSON *unit = cJSON_GetObjectItemCaseSensitive(m, "Unit");
            assert_true(cJSON_IsString(name));
            assert_true(strlen(name->valuestring) >= 1 && strlen(name->valuestring) <= 255);
            if (unit != NULL && !(cJSON_IsString(unit) && unit_valid(unit->valuestring)))
                fail_msg("metric %s has an invalid unit", name->valuestring);
            const cJSON *target = cJSON_GetObjectItemCaseSensitive(root, name->valuestring);
            if (!cJSON_IsNumber(target))
                fail_msg("metric %s has no numeric value at the root", name->valuestring);
        }
    }
    return root;
}

static void base_state(struct agent_state *st)
{
    memset(st, 0, sizeof(*st));
    st->child_running = true;
    st->probe.status = PROBE_OK;
    st->probe.passes = 1;
    st->probe.last_latency_s = 0.012;
    st->licence.status = LS_VALID;
    st->efs.status = EFS_STATUS_OK;
    st->child_restarts = 3;
}

static const struct health_policy policy = { false, false };

static double num(const cJSON *root, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, k);
    if (!cJSON_IsNumber(v))
        fail_msg("member %s missing", k);
    return v->valuedouble;
}

static void test_full_line_with_metadata(void **state)
{
    (void)state;
    struct agent_state st;
    struct health_verdict v;
    char line[4096];
    base_state(&st);
    st.metadata.known = true;
    snprintf(st.metadata.cluster, sizeof st.metadata.cluster, "pi-prod");
    snprintf(st.metadata.family, sizeof st.metadata.family, "dashboard");
    st.licence.has_days_left = true;
    st.licence.days_left = 17;
    st.efs.scanned = true;
    st.efs.total_bytes = 5000;
    st.efs.budget_bytes = 1000000;
    health_evaluate(&st, &policy, &v);
    int n = emf_render(&st, &v, "Panintelligence/Agent", 1764060000123ull, line, sizeof line);
    assert_true(n > 0);
    cJSON *root = check_emf(line, 1764060000123ull);

    const cJSON *d = cJSON_GetArrayItem(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "_aws"),
                                         "CloudWatchMetrics"), 0);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(d, "Namespace")->valuestring,
                        "Panintelligence/Agent");
    const cJSON *set = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(d, "Dimensions"), 0);
    assert_int_equal(cJSON_GetArraySize(set), 2);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(root, "ClusterName")->valuestring,
                        "pi-prod");
    assert_string_equal(
        cJSON_GetObjectItemCaseSensitive(root, "TaskDefinitionFamily")->valuestring, "dashboard");
    assert_true(num(root, "Healthy") == 1);
    assert_true(num(root, "HealthState") == HEALTH_OK);
    assert_true(num(root, "ChildRestarts") == 3);
    assert_true(num(root, "LicenceDaysLeft") == 17);
    assert_true(num(root, "EfsUsedBytes") == 5000);
    assert_true(num(root, "EfsBudgetBytes") == 1000000);
    assert_true(num(root, "TomcatProbeLatency") == 12);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(root, "HealthStatus")->valuestring, "ok");
    cJSON_Delete(root);
}

static void test_minimal_line_without_metadata(void **state)
{
    (void)state;
    struct agent_state st;
    struct health_verdict v;
    char line[4096];
    base_state(&st);
    st.probe.passes = 0;
    st.draining = true;
    health_evaluate(&st, &policy, &v);
    int n = emf_render(&st, &v, "Team/Pi", 5, line, sizeof line);
    assert_true(n > 0);
    cJSON *root = check_emf(line, 5);
    /* Unknown figures are left out rather than sent as zero. */
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "LicenceDaysLeft"));
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "EfsUsedBytes"));
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "EfsBudgetBytes"));
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "TomcatProbeLatency"));
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "ClusterName"));
    assert_true(num(root, "Healthy") == 0);
    assert_true(num(root, "HealthState") == HEALTH_DRAINING);
    assert_non_null(strstr(line, "\"Dimensions\":[[]]"));
    assert_null(strstr(line, "LicenceDaysLeft"));
    cJSON_Delete(root);

    assert_int_equal(emf_render(&st, &v, "Team/Pi", 5, line, 64), -1);
}

static void test_dimension_values_are_escaped(void **state)
{
    (void)state;
    struct agent_state st;
    struct health_verdict v;
    char line[4096];
    base_state(&st);
    st.metadata.known = true;
    snprintf(st.metadata.cluster, sizeof st.metadata.cluster, "arn:aws:ecs:eu-west-2:1:cluster/a\"b");
    health_evaluate(&st, &policy, &v);
    assert_true(emf_render(&st, &v, "Panintelligence/Agent", 1, line, sizeof line) > 0);
    cJSON *root = check_emf(line, 1);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(root, "ClusterName")->valuestring,
                        "a\"b");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(root, "ClusterArn")->valuestring,
                        "arn:aws:ecs:eu-west-2:1:cluster/a\"b");
    cJSON_Delete(root);
}

/* Fargate's task metadata gives the cluster's ARN: the dimension is its name,
 * the ARN a plain member; a bare name (or anything else) is kept as it is. */
static void test_cluster_dimension_is_the_short_name(void **state)
{
    (void)state;
    static const struct {
        const char *metadata, *name;
        bool arn;
    } cases[] = {
        { "arn:aws:ecs:eu-west-2:111122223333:cluster/pi-prod", "pi-prod", true },
        { "arn:aws-cn:ecs:cn-north-1:111122223333:cluster/pi", "pi", true },
        { "pi-prod", "pi-prod", false },
        { "arn:aws:ecs:eu-west-2:111122223333:cluster/", "arn:aws:ecs:eu-west-2:111122223333:cluster/", true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct agent_state st;
        struct health_verdict v;
        char line[4096];
        base_state(&st);
        st.metadata.known = true;
        snprintf(st.metadata.cluster, sizeof st.metadata.cluster, "%s", cases[i].metadata);
        health_evaluate(&st, &policy, &v);
        assert_true(emf_render(&st, &v, "Panintelligence/Agent", 1, line, sizeof line) > 0);
        cJSON *root = check_emf(line, 1);
        assert_string_equal(cJSON_GetObjectItemCaseSensitive(root, "ClusterName")->valuestring,
                            cases[i].name);
        const cJSON *arn = cJSON_GetObjectItemCaseSensitive(root, "ClusterArn");
        if (cases[i].arn)
            assert_string_equal(arn->valuestring, cases[i].metadata);
        else
            assert_null(arn);
        cJSON_Delete(root);
    }
}

/* A figure that can go negative (days left after the expiry) is an integer,
 * not a wrapped unsigned value nor a rounded float. */
static void test_negative_days_left(void **state)
{
    (void)state;
    struct agent_state st;
    struct health_verdict v;
    char line[4096];
    base_state(&st);
    st.licence.has_days_left = true;
    st.licence.days_left = -3;
    health_evaluate(&st, &policy, &v);
    assert_true(emf_render(&st, &v, "Panintelligence/Agent", 1, line, sizeof line) > 0);
    cJSON_Delete(check_emf(line, 1));
    assert_non_null(strstr(line, ",\"LicenceDaysLeft\":-3,"));
}

static void test_namespace_validation(void **state)
{
    (void)state;
    assert_true(emf_namespace_valid("Panintelligence/Agent"));
    assert_true(emf_namespace_valid("My Team:pi#1.x_y-z"));
    assert_false(emf_namespace_valid(""));
    assert_false(emf_namespace_valid("AWS/ECS"));
    assert_false(emf_namespace_valid("bad\"quote"));
    assert_false(emf_namespace_valid("tab\there"));
    char long_ns[300];
    memset(long_ns, 'a', sizeof long_ns - 1);
    long_ns[sizeof long_ns - 1] = '\0';
    assert_false(emf_namespace_valid(long_ns));
    long_ns[255] = '\0';
    assert_true(emf_namespace_valid(long_ns));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_line_with_metadata),
        cmocka_unit_test(test_minimal_line_without_metadata),
        cmocka_unit_test(test_dimension_values_are_escaped),
        cmocka_unit_test(test_cluster_dimension_is_the_short_name),
        cmocka_unit_test(test_negative_days_left),
        cmocka_unit_test(test_namespace_validation),
    };
    return cmocka_run_group_tests_name("emf", tests, NULL, NULL);
}
