/* Unit tests for the licence worker's report (licence_service.h): what a
 * worker writes is what PID 1 reads, and bytes that are not a whole,
 * consistent report are refused rather than believed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "licence_service.h"

/* Writes r through a pipe and returns what came out (malloc'd). */
static char *encode(const struct licence_resolution *r, size_t *len)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(licence_report_write(p[1], r), 0);
    close(p[1]);
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    ssize_t got;
    while ((got = read(p[0], buf + n, cap - n)) > 0)
        n += (size_t)got;
    close(p[0]);
    *len = n;
    return buf;
}

static void sample(struct licence_resolution *r)
{
    licence_resolution_init(r);
    licence_resolution_set(r, LS_EXPIRING, "alm", "expires in 3 day(s)");
    r->have_claims = true;
    snprintf(r->claims.sub, sizeof(r->claims.sub), "acme");
    r->claims.users = 25;
    r->claims.exp = 1800000000;
    r->claims.nmodules = 2;
    snprintf(r->claims.modules[0], LICENCE_MODULE_NAME_MAX, "reports");
    snprintf(r->claims.modules[1], LICENCE_MODULE_NAME_MAX, "maps");
    r->st.has_days_left = true;
    r->st.days_left = 3;
    r->licence = strdup("header.payload.signature");
    r->len = strlen(r->licence);
}

static void round_trip(void **s)
{
    (void)s;
    struct licence_resolution in, out;
    sample(&in);
    size_t len;
    char *buf = encode(&in, &len);
    assert_int_equal(licence_report_read(buf, len, &out), 0);
    assert_int_equal(out.st.status, LS_EXPIRING);
    assert_string_equal(out.st.source, "alm");
    assert_string_equal(out.st.reason, "expires in 3 day(s)");
    assert_true(out.st.has_days_left);
    assert_int_equal(out.st.days_left, 3);
    assert_true(out.have_claims);
    assert_string_equal(out.claims.sub, "acme");
    assert_int_equal(out.claims.nmodules, 2);
    assert_string_equal(out.claims.modules[1], "maps");
    assert_int_equal(out.len, in.len);
    assert_string_equal(out.licence, "header.payload.signature");
    licence_resolution_free(&out);

    /* No licence (a status without one) travels as well. */
    licence_resolution_free(&in);
    licence_resolution_set(&in, LS_MISSING, "none", "PI_LICENCE is not set");
    free(buf);
    buf = encode(&in, &len);
    assert_int_equal(licence_report_read(buf, len, &out), 0);
    assert_int_equal(out.st.status, LS_MISSING);
    assert_null(out.licence);
    licence_resolution_free(&out);
    free(buf);
}

/* The status word is an enum on the wire, sent twice: a value outside the
 * table, "unknown" (never the outcome of a check) or two copies that
 * disagree mean a damaged report. */
static void refuses_bad_status(void **s)
{
    (void)s;
    struct licence_resolution in, out;
    const enum licence_status bad[] = { LS_UNKNOWN, LS_COUNT, (enum licence_status)-1,
                                        (enum licence_status)1000 };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sample(&in);
        in.st.status = bad[i];
        size_t len;
        char *buf = encode(&in, &len);
        assert_int_equal(licence_report_read(buf, len, &out), -1);
        licence_resolution_free(&out);
        licence_resolution_free(&in);
        free(buf);
    }
    /* Both copies valid, but different: the header's own status field is
     * the first int32 after the magic. */
    sample(&in);
    size_t len;
    char *buf = encode(&in, &len);
    int32_t other = LS_VALID;
    memcpy(buf + sizeof(uint32_t), &other, sizeof(other));
    assert_int_equal(licence_report_read(buf, len, &out), -1);
    licence_resolution_free(&out);
    licence_resolution_free(&in);
    free(buf);
}

static void refuses_bad_framing(void **s)
{
    (void)s;
    struct licence_resolution in, out;
    sample(&in);
    size_t len;
    char *buf = encode(&in, &len);
    /* truncated anywhere: in the header, or in the licence */
    assert_int_equal(licence_report_read(buf, 10, &out), -1);
    licence_resolution_free(&out);
    assert_int_equal(licence_report_read(buf, len - 1, &out), -1);
    licence_resolution_free(&out);
    assert_int_equal(licence_report_read(NULL, len, &out), -1);
    licence_resolution_free(&out);
    /* wrong magic */
    buf[0] ^= 0x55;
    assert_int_equal(licence_report_read(buf, len, &out), -1);
    licence_resolution_free(&out);
    buf[0] ^= 0x55;
    assert_int_equal(licence_report_read(buf, len, &out), 0);
    licence_resolution_free(&out);
    free(buf);
    /* too many modules */
    in.claims.nmodules = LICENCE_MODULES_MAX + 1;
    buf = encode(&in, &len);
    assert_int_equal(licence_report_read(buf, len, &out), -1);
    licence_resolution_free(&out);
    free(buf);
    licence_resolution_free(&in);
}

/* Strings that fill their buffers are cut, never read past. */
static void strings_are_terminated(void **s)
{
    (void)s;
    struct licence_resolution in, out;
    sample(&in);
    memset(in.st.reason, 'r', sizeof(in.st.reason));
    memset(in.st.source, 's', sizeof(in.st.source));
    memset(in.claims.sub, 'u', sizeof(in.claims.sub));
    memset(in.claims.modules[0], 'm', LICENCE_MODULE_NAME_MAX);
    size_t len;
    char *buf = encode(&in, &len);
    assert_int_equal(licence_report_read(buf, len, &out), 0);
    assert_int_equal(strlen(out.st.reason), sizeof(out.st.reason) - 1);
    assert_int_equal(strlen(out.st.source), sizeof(out.st.source) - 1);
    assert_int_equal(strlen(out.claims.sub), sizeof(out.claims.sub) - 1);
    assert_int_equal(strlen(out.claims.modules[0]), LICENCE_MODULE_NAME_MAX - 1);
    licence_resolution_free(&out);
    licence_resolution_free(&in);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(refuses_bad_status),
        cmocka_unit_test(refuses_bad_framing),
        cmocka_unit_test(strings_are_terminated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
