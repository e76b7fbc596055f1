/* Unit tests for licence_status: the one name table and the one rule for
 * "acceptable" and "blocks readiness". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "licence_status.h"

/* Every status has its own word, and the word parses back to it. */
static void names_round_trip(void **s)
{
    (void)s;
    for (int i = LS_UNKNOWN + 1; i < LS_COUNT; i++) {
        const char *w = licence_status_name((enum licence_status)i);
        assert_non_null(w);
        assert_string_not_equal(w, "unknown");
        enum licence_status back = LS_UNKNOWN;
        assert_int_equal(licence_status_parse(w, &back), 0);
        assert_int_equal(back, i);
        for (int j = LS_UNKNOWN; j < i; j++)
            assert_string_not_equal(w, licence_status_name((enum licence_status)j));
        assert_true(licence_status_checked((enum licence_status)i));
    }
}

/* The words the health endpoint, metrics and the hooks' environment show. */
static void names_are_the_documented_words(void **s)
{
    (void)s;
    static const struct { enum licence_status st; const char *word; } want[] = {
        { LS_UNKNOWN, "unknown" },         { LS_VALID, "valid" },
        { LS_EXPIRING, "expiring" },       { LS_EXPIRED, "expired" },
        { LS_NOT_YET_VALID, "not-yet-valid" }, { LS_BAD_SIGNATURE, "bad-signature" },
        { LS_WRONG_DEPLOYMENT, "wrong-deployment" }, { LS_MALFORMED, "malformed" },
        { LS_REJECTED, "rejected" },       { LS_UNREACHABLE, "unreachable" },
        { LS_UNVERIFIED, "unverified" },   { LS_MISSING, "missing" },
    };
    assert_int_equal(sizeof(want) / sizeof(want[0]), LS_COUNT);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_string_equal(licence_status_name(want[i].st), want[i].word);
}

/* "unknown" is not the outcome of a check: it never parses (a status file
 * or a worker report saying so is refused), and out-of-range values name
 * themselves "unknown". */
static void unknown_and_out_of_range(void **s)
{
    (void)s;
    enum licence_status st = LS_VALID;
    assert_int_equal(licence_status_parse("unknown", &st), -1);
    assert_int_equal(licence_status_parse("", &st), -1);
    assert_int_equal(licence_status_parse(NULL, &st), -1);
    assert_int_equal(licence_status_parse("Valid", &st), -1);
    assert_int_equal(licence_status_parse("valid ", &st), -1);
    assert_int_equal(st, LS_VALID); /* untouched on failure */
    assert_string_equal(licence_status_name(LS_COUNT), "unknown");
    assert_string_equal(licence_status_name((enum licence_status)-1), "unknown");
    assert_false(licence_status_checked(LS_UNKNOWN));
    assert_false(licence_status_checked(LS_COUNT));
    assert_false(licence_status_checked((enum licence_status)-1));
}

/* The metrics list: every word once, in enum order, NULL-terminated. */
static void words_list(void **s)
{
    (void)s;
    const char *const *w = licence_status_words();
    int n = 0;
    for (; w[n]; n++)
        assert_string_equal(w[n], licence_status_name((enum licence_status)n));
    assert_int_equal(n, LS_COUNT);
}

/* Acceptable: exactly valid, expiring and unverified. */
static void acceptable_rule(void **s)
{
    (void)s;
    for (int i = -1; i <= LS_COUNT; i++) {
        enum licence_status st = (enum licence_status)i;
        bool want = st == LS_VALID || st == LS_EXPIRING || st == LS_UNVERIFIED;
        assert_int_equal(licence_status_acceptable(st), want);
    }
}

/* Verified (cached, used from the cache, taken from a refresh): exactly
 * valid and expiring; unverified is acceptable but never verified. */
static void verified_rule(void **s)
{
    (void)s;
    for (int i = -1; i <= LS_COUNT; i++) {
        enum licence_status st = (enum licence_status)i;
        assert_int_equal(licence_status_verified(st), st == LS_VALID || st == LS_EXPIRING);
        if (licence_status_verified(st))
            assert_true(licence_status_acceptable(st));
    }
    assert_false(licence_status_verified(LS_UNVERIFIED));
}

/* Readiness (and the start) is blocked only when the licence is required
 * and not acceptable; "not checked yet" blocks a required licence too. */
static void blocks_readiness_rule(void **s)
{
    (void)s;
    for (int i = -1; i <= LS_COUNT; i++) {
        enum licence_status st = (enum licence_status)i;
        assert_false(licence_blocks_readiness(st, false));
        assert_int_equal(licence_blocks_readiness(st, true), !licence_status_acceptable(st));
    }
    assert_true(licence_blocks_readiness(LS_UNKNOWN, true));
    assert_true(licence_blocks_readiness(LS_EXPIRED, true));
    assert_false(licence_blocks_readiness(LS_EXPIRING, true));
    assert_false(licence_blocks_readiness(LS_UNVERIFIED, true));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(names_round_trip),
        cmocka_unit_test(names_are_the_documented_words),
        cmocka_unit_test(unknown_and_out_of_range),
        cmocka_unit_test(words_list),
        cmocka_unit_test(acceptable_rule),
        cmocka_unit_test(verified_rule),
        cmocka_unit_test(blocks_readiness_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
