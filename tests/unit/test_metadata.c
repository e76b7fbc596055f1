/* Unit tests for the ECS task metadata parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "metadata.h"

static void parses_the_fields_logged_at_start(void **s)
{
    (void)s;
    const char *json =
        "{\"Cluster\":\"arn:aws:ecs:eu-west-2:111122223333:cluster/pi\","
        "\"TaskARN\":\"arn:aws:ecs:eu-west-2:111122223333:task/pi/abc\","
        "\"Family\":\"pi-dashboard\",\"Revision\":\"42\","
        "\"AvailabilityZone\":\"eu-west-2a\",\"Limits\":{\"CPU\":1,\"Memory\":4096}}";
    struct task_metadata md;
    assert_int_equal(metadata_parse_task(json, strlen(json), &md), 0);
    assert_true(md.known);
    assert_string_equal(md.cluster, "arn:aws:ecs:eu-west-2:111122223333:cluster/pi");
    assert_string_equal(md.task_arn, "arn:aws:ecs:eu-west-2:111122223333:task/pi/abc");
    assert_string_equal(md.family, "pi-dashboard");
    assert_string_equal(md.revision, "42");
    assert_string_equal(md.availability_zone, "eu-west-2a");
}

static void missing_fields_stay_empty(void **s)
{
    (void)s;
    struct task_metadata md;
    assert_int_equal(metadata_parse_task("{\"Family\":\"f\"}", 14, &md), 0);
    assert_string_equal(md.family, "f");
    assert_string_equal(md.cluster, "");
}

static void rejects_what_is_not_an_object(void **s)
{
    (void)s;
    struct task_metadata md;
    const char *bad[] = { "", "[]", "\"x\"", "{\"Cluster\":", "null" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(metadata_parse_task(bad[i], strlen(bad[i]), &md), -1);
        assert_false(md.known);
    }
}

static void long_values_are_cut_not_overflowed(void **s)
{
    (void)s;
    char json[2048];
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    snprintf(json, sizeof json, "{\"Cluster\":\"%s\"}", big);
    struct task_metadata md;
    assert_int_equal(metadata_parse_task(json, strlen(json), &md), 0);
    assert_int_equal(strlen(md.cluster), sizeof md.cluster - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_the_fields_logged_at_start),
        cmocka_unit_test(missing_fields_stay_empty),
        cmocka_unit_test(rejects_what_is_not_an_object),
        cmocka_unit_test(long_values_are_cut_not_overflowed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
