/* Unit tests for licence_config and licence_cli: the configuration errors a user can hit (each
 * names its variable and never quotes a secret), and licence_check over the
 * forms that need no server (a closed loopback port stands in for an
 * unreachable ALM). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "efs.h"
#include "licence.h"
#include "test_licence_keys.h"

static const char *const vars[] = {
    "PI_LICENCE", "PI_LICENCE_URL", "PI_ALM_URL", "PI_ALM_CHECK_URL", "PI_ALM_CA_FILE",
    "PI_ALM_ALLOW_HTTP", "PI_ALM_TIMEOUT_SECONDS", "PI_LICENCE_WARN_DAYS", "PI_LICENCE_CHECK_SECONDS",
    "PI_LICENCE_REFRESH_SECONDS", "PI_AGENT_LICENCE_REQUIRED", "PI_AGENT_LICENCE_INLINE",
    "PI_LICENCE_PUBLIC_KEY", "PI_LICENCE_PUBLIC_KEY_FILE", "PI_DEPLOYMENT_ID", "PI_AGENT_RUN_DIR",
    "PI_EFS_ROOT", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
};

static struct test_key key;
static char tmpdir[64];

static int setup(void **s)
{
    (void)s;
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    strcpy(tmpdir, "/tmp/pi-licence-unit-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    setenv("PI_AGENT_RUN_DIR", tmpdir, 1);
    setenv("PI_EFS_ROOT", tmpdir, 1);
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static int group_setup(void **s)
{
    (void)s;
    test_key_new(&key, MBEDTLS_ECP_DP_SECP256R1);
    return 0;
}

static int group_teardown(void **s)
{
    (void)s;
    test_key_free(&key);
    test_rng_free();
    return 0;
}

/* Loads the config expecting failure; the message must name want. */
static void expect_error(const char *want)
{
    struct licence_config cfg;
    struct config_error err = { "" };
    assert_int_equal(licence_config_load(&cfg, &err), -1);
    if (!strstr(err.msg, want))
        fail_msg("error \"%s\" does not name %s", err.msg, want);
}

static void defaults(void **s)
{
    (void)s;
    unsetenv("PI_AGENT_RUN_DIR");
    unsetenv("PI_EFS_ROOT");
    struct licence_config cfg;
    struct config_error err = { "" };
    assert_int_equal(licence_config_load(&cfg, &err), 0);
    assert_int_equal(cfg.alm_timeout_s, 60);
    assert_int_equal(cfg.warn_days, 30);
    assert_int_equal(cfg.check_interval_s, 3600);
    assert_int_equal(cfg.refresh_interval_s, 86400);
    assert_string_equal(cfg.run_dir, "/run/pi-agent");
    assert_string_equal(cfg.efs_root, "/mnt/efs");
    assert_false(cfg.required);
    assert_false(cfg.inline_env);
    assert_false(cfg.allow_http);
    assert_null(cfg.licence);
    assert_null(cfg.alm_url);
    licence_config_free(&cfg);
}

static void url_errors_name_their_variable(void **s)
{
    (void)s;
    setenv("PI_ALM_URL", "http://alm.example/licence", 1);
    expect_error("PI_ALM_URL");
    setenv("PI_ALM_ALLOW_HTTP", "true", 1);
    struct licence_config cfg;
    struct config_error err = { "" };
    assert_int_equal(licence_config_load(&cfg, &err), 0);
    assert_string_equal(cfg.alm_url, "http://alm.example/licence");
    licence_config_free(&cfg);
    /* The reachability check is always https: it checks the TLS handshake. */
    setenv("PI_ALM_CHECK_URL", "http://alm.example/", 1);
    expect_error("PI_ALM_CHECK_URL");
    unsetenv("PI_ALM_CHECK_URL");
    unsetenv("PI_ALM_URL");
    setenv("PI_LICENCE_URL", "ftp://files.example/licence", 1);
    expect_error("PI_LICENCE_URL");
    setenv("PI_LICENCE_URL", "https://", 1);
    expect_error("PI_LICENCE_URL");
}

/* PI_EFS_ROOT is read by the EFS module's rule (efs_config_root), so the
 * cache sits where the storage does: the same refusals, the same path. */
static void efs_root_follows_the_storage_rule(void **s)
{
    (void)s;
    setenv("PI_EFS_ROOT", "mnt/efs", 1);
    expect_error("PI_EFS_ROOT");
    setenv("PI_EFS_ROOT", "/", 1);
    expect_error("PI_EFS_ROOT");
    setenv("PI_EFS_ROOT", "/mnt/efs//", 1);
    struct licence_config cfg;
    struct config_error err = { "" };
    assert_int_equal(licence_config_load(&cfg, &err), 0);
    assert_string_equal(cfg.efs_root, "/mnt/efs");
    char want[sizeof(cfg.efs_root)];
    assert_int_equal(efs_config_root(want, sizeof(want), &err), 0);
    assert_string_equal(cfg.efs_root, want);
    licence_config_free(&cfg);
}

static void number_and_path_errors(void **s)
{
    (void)s;
    setenv("PI_ALM_TIMEOUT_SECONDS", "0", 1);
    expect_error("PI_ALM_TIMEOUT_SECONDS");
    unsetenv("PI_ALM_TIMEOUT_SECONDS");
    setenv("PI_LICENCE_WARN_DAYS", "soon", 1);
    expect_error("PI_LICENCE_WARN_DAYS");
    unsetenv("PI_LICENCE_WARN_DAYS");
    setenv("PI_AGENT_LICENCE_REQUIRED", "maybe", 1);
    expect_error("PI_AGENT_LICENCE_REQUIRED");
    unsetenv("PI_AGENT_LICENCE_REQUIRED");
    setenv("PI_AGENT_RUN_DIR", "run/pi-agent", 1);
    expect_error("PI_AGENT_RUN_DIR");
    setenv("PI_AGENT_RUN_DIR", tmpdir, 1);
    setenv("PI_ALM_CA_FILE", "/nonexistent/ca.pem", 1);
    expect_error("PI_ALM_CA_FILE");
    unsetenv("PI_ALM_CA_FILE");
    char longid[200];
    memset(longid, 'd', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    setenv("PI_DEPLOYMENT_ID", longid, 1);
    expect_error("PI_DEPLOYMENT_ID");
}

static void key_errors_name_their_variable(void **s)
{
    (void)s;
    setenv("PI_LICENCE_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", 1);
    expect_error("PI_LICENCE_PUBLIC_KEY");
    setenv("PI_LICENCE_PUBLIC_KEY", key.pem, 1);
    setenv("PI_LICENCE_PUBLIC_KEY_FILE", "/x.pem", 1);
    expect_error("not both");
    unsetenv("PI_LICENCE_PUBLIC_KEY");
    expect_error("PI_LICENCE_PUBLIC_KEY_FILE");

    char path[128];
    snprintf(path, sizeof(path), "%s/keys.pem", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "kid: k1\n%s", key.pem);
    fclose(f);
    setenv("PI_LICENCE_PUBLIC_KEY_FILE", path, 1);
    struct licence_config cfg;
    struct config_error err = { "" };
    assert_int_equal(licence_config_load(&cfg, &err), 0);
    assert_non_null(strstr(cfg.public_keys, "kid: k1"));
    assert_string_equal(cfg.keys_origin, path);
    licence_config_free(&cfg);
}

static void secret_never_in_errors(void **s)
{
    (void)s;
    size_t n = 70 * 1024;
    char *big = malloc(n + 1);
    memset(big, 'S', n);
    big[n] = '\0';
    setenv("PI_LICENCE", big, 1);
    struct licence_config cfg;
    struct config_error err = { "" };
    assert_int_equal(licence_config_load(&cfg, &err), -1);
    assert_non_null(strstr(err.msg, "PI_LICENCE"));
    assert_null(strstr(err.msg, "SSSS"));
    free(big);
}

/* ---- licence_check ------------------------------------------------------ */

static int check(struct licence_state *st)
{
    struct licence_config cfg;
    struct config_error err = { "" };
    if (licence_config_load(&cfg, &err) != 0)
        fail_msg("config: %s", err.msg);
    int rc = licence_check(&cfg, st);
    licence_config_free(&cfg);
    return rc;
}

static void check_missing(void **s)
{
    (void)s;
    struct licence_state st;
    assert_int_equal(check(&st), 1);
    assert_string_equal(licence_status_name(st.status), "missing");
    assert_non_null(strstr(st.reason, "PI_LICENCE"));
}

static void check_inline_token(void **s)
{
    (void)s;
    char claims[512];
    long long now = (long long)time(NULL);
    test_claims(claims, sizeof(claims), now - 86400, now + 90 * 86400LL, NULL);
    char *tok = test_token(&key, "{\"alg\":\"ES256\"}", claims);
    setenv("PI_LICENCE_PUBLIC_KEY", key.pem, 1);
    setenv("PI_LICENCE", tok, 1);
    struct licence_state st;
    assert_int_equal(check(&st), 0);
    assert_string_equal(licence_status_name(st.status), "valid");
    assert_string_equal(st.source, "inline");
    assert_string_equal(st.subject, "acme-42");
    assert_int_equal(st.users, 25);
    assert_true(st.has_days_left);
    assert_in_range(st.days_left, 89, 90);

    setenv("PI_LICENCE_WARN_DAYS", "120", 1);
    assert_int_equal(check(&st), 0);
    assert_string_equal(licence_status_name(st.status), "expiring");

    /* Without the vendor's key the signature cannot hold. */
    unsetenv("PI_LICENCE_PUBLIC_KEY");
    assert_int_equal(check(&st), 1);
    assert_string_equal(licence_status_name(st.status), "bad-signature");
    free(tok);
}

static void check_xml_is_unverified(void **s)
{
    (void)s;
    setenv("PI_LICENCE", "<licence>\n  <customer>Acme</customer>\n</licence>\n", 1);
    struct licence_state st;
    assert_int_equal(check(&st), 0);
    assert_string_equal(licence_status_name(st.status), "unverified");
    assert_non_null(strstr(st.reason, "XML"));
    setenv("PI_LICENCE", "<licence>\n  <customer>Acme</customer>\n", 1);
    assert_int_equal(check(&st), 1);
    assert_string_equal(licence_status_name(st.status), "malformed");
}

static void check_customer_key_passthrough(void **s)
{
    (void)s;
    setenv("PI_LICENCE", "CUSTOMER-KEY-123", 1);
    struct licence_state st;
    assert_int_equal(check(&st), 0);
    assert_string_equal(licence_status_name(st.status), "unverified");
    assert_string_equal(st.source, "dashboard");
    assert_string_equal(st.reason, "the dashboard performs the ALM callback itself");

    /* Port 9 (discard) on loopback is closed on a test machine. */
    setenv("PI_ALM_CHECK_URL", "https://127.0.0.1:9/", 1);
    setenv("PI_ALM_TIMEOUT_SECONDS", "2", 1);
    assert_int_equal(check(&st), 1);
    assert_string_equal(licence_status_name(st.status), "unreachable");
    assert_non_null(strstr(st.reason, "TCP connect to 127.0.0.1 failed"));
    assert_non_null(strstr(st.reason, "invalid-licence notice"));
    assert_null(strstr(st.reason, "CUSTOMER-KEY"));
}

static void check_alm_unreachable_then_cache(void **s)
{
    (void)s;
    setenv("PI_LICENCE", "CUSTOMER-KEY-123", 1);
    setenv("PI_ALM_URL", "https://127.0.0.1:9/licence", 1);
    setenv("PI_ALM_TIMEOUT_SECONDS", "1", 1);
    setenv("PI_LICENCE_PUBLIC_KEY", key.pem, 1);
    struct licence_state st;
    assert_int_equal(check(&st), 1);
    assert_string_equal(licence_status_name(st.status), "unreachable");
    assert_non_null(strstr(st.reason, "could not be reached within 1 s"));
    assert_null(strstr(st.reason, "CUSTOMER-KEY"));

    /* A cached licence within exp is used when the ALM cannot be reached. */
    char claims[512], path[128];
    long long now = (long long)time(NULL);
    test_claims(claims, sizeof(claims), now - 86400, now + 90 * 86400LL, NULL);
    char *tok = test_token(&key, "{\"alg\":\"ES256\"}", claims);
    snprintf(path, sizeof(path), "%s/.pi-agent", tmpdir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/.pi-agent/licence", tmpdir);
    FILE *f = fopen(path, "w");
    fputs(tok, f);
    fclose(f);
    assert_int_equal(check(&st), 0);
    assert_string_equal(licence_status_name(st.status), "valid");
    assert_string_equal(st.source, "cache");
    assert_non_null(strstr(st.reason, "cached"));

    /* An expired cached licence is not used. */
    test_claims(claims, sizeof(claims), now - 90 * 86400LL, now - 86400, NULL);
    char *old = test_token(&key, "{\"alg\":\"ES256\"}", claims);
    f = fopen(path, "w");
    fputs(old, f);
    fclose(f);
    assert_int_equal(check(&st), 1);
    assert_string_equal(licence_status_name(st.status), "unreachable");
    free(tok);
    free(old);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(defaults),
        T(url_errors_name_their_variable),
        T(efs_root_follows_the_storage_rule),
        T(number_and_path_errors),
        T(key_errors_name_their_variable),
        T(secret_never_in_errors),
        T(check_missing),
        T(check_inline_token),
        T(check_xml_is_unverified),
        T(check_customer_key_passthrough),
        T(check_alm_unreachable_then_cache),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
