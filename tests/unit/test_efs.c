/* Unit tests for the storage module's pure parts: settings, the links table,
 * mountinfo parsing, file system names, budget states, the seed marker and
 * the housekeeping age rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "efs.h"
#include "efs_layout.h"
#include "efs_seed.h"
#include "housekeeping.h"
#include "state.h"

static const char *const efs_vars[] = {
    "PI_EFS_MODE", "PI_EFS_ROOT", "PI_EFS_REQUIRE_NFS", "PI_DASHBOARD_HOME", "PI_EFS_LINKS",
    "PI_EFS_BUDGET_BYTES", "PI_EFS_WARN_PERCENT", "PI_EFS_OVER_BUDGET",
    "PI_EFS_SCAN_INTERVAL_SECONDS", "PI_EFS_SCAN_TIMEOUT_SECONDS", "PI_EFS_START_TIMEOUT_SECONDS",
    "PI_AGENT_LOG_RETENTION_DAYS", "PI_AGENT_TOMCAT_LOG_DIR", NULL,
};

static int clear_env(void **s)
{
    (void)s;
    for (int i = 0; efs_vars[i]; i++)
        unsetenv(efs_vars[i]);
    return 0;
}

static void config_defaults(void **s)
{
    (void)s;
    struct efs_config cfg;
    struct config_error err = { "" };
    assert_int_equal(efs_config_load(&cfg, &err), 0);
    assert_int_equal(cfg.mode, EFS_MODE_AUTO);
    assert_string_equal(cfg.root, "/mnt/efs");
    assert_false(cfg.require_nfs);
    assert_string_equal(cfg.dashboard_home, "/var/panintelligence/Dashboard");
    assert_int_equal(cfg.budget_bytes, 1073741824ull);
    assert_int_equal(cfg.warn_percent, 80);
    assert_false(cfg.over_budget_fail);
    assert_int_equal(cfg.scan_interval_s, 600);
    assert_int_equal(cfg.links.count, 7);
    assert_string_equal(cfg.links.link[0].name, "themes");
    assert_string_equal(cfg.links.link[0].path,
                        "/var/panintelligence/Dashboard/tomcat/webapps/panMISDashboardResources/themes");
    assert_string_equal(cfg.links.link[5].name, "keys");
    assert_string_equal(cfg.links.link[5].path, "/var/panintelligence/Dashboard/keys");
    assert_string_equal(cfg.links.link[6].path, "/var/panintelligence/Dashboard/custom_jdbc");
    assert_int_equal(cfg.housekeeping.retention_days, 7);
    assert_string_equal(cfg.housekeeping.log_dir, "/var/panintelligence/Dashboard/tomcat/logs");
}

static void config_dashboard_home_moves_every_default(void **s)
{
    (void)s;
    struct efs_config cfg;
    struct config_error err = { "" };
    setenv("PI_DASHBOARD_HOME", "/tmp/fake/Dashboard/", 1);
    setenv("PI_EFS_MODE", "required", 1);
    setenv("PI_EFS_OVER_BUDGET", "fail", 1);
    assert_int_equal(efs_config_load(&cfg, &err), 0);
    assert_int_equal(cfg.mode, EFS_MODE_REQUIRED);
    assert_true(cfg.over_budget_fail);
    assert_string_equal(cfg.links.link[1].path,
                        "/tmp/fake/Dashboard/tomcat/webapps/panMISDashboardResources/images");
    assert_string_equal(cfg.housekeeping.log_dir, "/tmp/fake/Dashboard/tomcat/logs");
    clear_env(NULL);
}

static void config_errors_name_the_variable(void **s)
{
    (void)s;
    static const struct {
        const char *var, *value, *expect;
    } cases[] = {
        { "PI_EFS_MODE", "maybe", "PI_EFS_MODE: expected one of auto, required, off" },
        { "PI_EFS_ROOT", "mnt/efs", "PI_EFS_ROOT: must be an absolute path" },
        { "PI_EFS_ROOT", "/", "PI_EFS_ROOT: cannot be /" },
        { "PI_EFS_REQUIRE_NFS", "perhaps", "PI_EFS_REQUIRE_NFS" },
        { "PI_DASHBOARD_HOME", "Dashboard", "PI_DASHBOARD_HOME: must be an absolute path" },
        { "PI_EFS_LINKS", "themes", "PI_EFS_LINKS: entry 'themes' has no ':'" },
        { "PI_EFS_BUDGET_BYTES", "1GB", "PI_EFS_BUDGET_BYTES" },
        { "PI_EFS_BUDGET_BYTES", "0", "PI_EFS_BUDGET_BYTES" },
        { "PI_EFS_WARN_PERCENT", "101", "PI_EFS_WARN_PERCENT" },
        { "PI_EFS_OVER_BUDGET", "panic", "PI_EFS_OVER_BUDGET: expected one of warn, fail" },
        { "PI_EFS_SCAN_INTERVAL_SECONDS", "5", "PI_EFS_SCAN_INTERVAL_SECONDS: must be 0" },
        { "PI_EFS_SCAN_TIMEOUT_SECONDS", "0", "PI_EFS_SCAN_TIMEOUT_SECONDS" },
        { "PI_EFS_START_TIMEOUT_SECONDS", "x", "PI_EFS_START_TIMEOUT_SECONDS" },
        { "PI_AGENT_LOG_RETENTION_DAYS", "-1", "PI_AGENT_LOG_RETENTION_DAYS" },
        { "PI_AGENT_TOMCAT_LOG_DIR", "logs", "PI_AGENT_TOMCAT_LOG_DIR: must be an absolute path" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct efs_config cfg;
        struct config_error err = { "" };
        clear_env(NULL);
        setenv(cases[i].var, cases[i].value, 1);
        assert_int_equal(efs_config_load(&cfg, &err), -1);
        if (strstr(err.msg, cases[i].expect) == NULL)
            fail_msg("%s=%s: got \"%s\"", cases[i].var, cases[i].value, err.msg);
    }
    clear_env(NULL);
}

static void config_refuses_links_overlapping_the_root(void **s)
{
    (void)s;
    static const struct {
        const char *root, *links, *home, *expect;
    } cases[] = {
        { "/mnt/efs", "themes:/mnt/efs/themes", NULL, "PI_EFS_LINKS: dashboard path /mnt/efs/themes overlaps PI_EFS_ROOT=/mnt/efs" },
        { "/mnt/efs", "themes:/mnt/efs", NULL, "overlaps" },
        { "/mnt/efs/keys/x", "keys:/mnt/efs/keys", NULL, "overlaps" },
        { "/mnt/efs", NULL, "/mnt/efs/Dashboard", "PI_DASHBOARD_HOME: dashboard path /mnt/efs/Dashboard/tomcat" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct efs_config cfg;
        struct config_error err = { "" };
        clear_env(NULL);
        setenv("PI_EFS_ROOT", cases[i].root, 1);
        if (cases[i].links)
            setenv("PI_EFS_LINKS", cases[i].links, 1);
        if (cases[i].home)
            setenv("PI_DASHBOARD_HOME", cases[i].home, 1);
        assert_int_equal(efs_config_load(&cfg, &err), -1);
        if (!strstr(err.msg, cases[i].expect))
            fail_msg("case %zu: got \"%s\"", i, err.msg);
    }
    /* a sibling with a common prefix is fine */
    struct efs_config cfg;
    struct config_error err = { "" };
    clear_env(NULL);
    setenv("PI_EFS_ROOT", "/mnt/efs", 1);
    setenv("PI_EFS_LINKS", "themes:/mnt/efs2/themes,keys:/mnt/ef", 1);
    assert_int_equal(efs_config_load(&cfg, &err), 0);
    clear_env(NULL);
}

static void links_parse_accepts_a_table(void **s)
{
    (void)s;
    struct efs_links l;
    struct config_error err = { "" };
    assert_int_equal(efs_links_parse("PI_EFS_LINKS", "themes:/a/themes/, keys:/b/keys,x.y-z_1:/c",
                                     &l, &err), 0);
    assert_int_equal(l.count, 3);
    assert_string_equal(l.link[0].name, "themes");
    assert_string_equal(l.link[0].path, "/a/themes");
    assert_string_equal(l.link[1].name, "keys");
    assert_string_equal(l.link[1].path, "/b/keys");
    assert_string_equal(l.link[2].name, "x.y-z_1");
    assert_string_equal(l.link[2].path, "/c");
}

static void links_parse_rejects_bad_tables(void **s)
{
    (void)s;
    static const struct {
        const char *text, *expect;
    } cases[] = {
        { "", "is empty" },
        { "themes:/a,,keys:/b", "empty entry" },
        { "../x:/a", "not a plain name" },
        { ".:/a", "not a plain name" },
        { ".pi-agent:/a", "not a plain name" },
        { "a/b:/a", "not a plain name" },
        { "themes:relative", "must be absolute" },
        { "themes:", "must be absolute" },
        { "themes:/", "cannot be /" },
        { "themes:/a/../etc", "must not contain" },
        { "themes:/a,themes:/b", "listed twice" },
        { "a:/x,b:/x/", "listed twice" },
        /* Linking the outer path first would put the inner one inside an
         * EFS folder: the agent would move customer data there aside. */
        { "a:/x,b:/x/y", "inside" },
        { "b:/x/y/z,a:/x", "inside" },
        { "a:/1,b:/2,c:/3,d:/4,e:/5,f:/6,g:/7,h:/8,i:/9,j:/10,k:/11,l:/12,m:/13,n:/14,o:/15,"
          "p:/16,q:/17", "more than 16" },
        { "abcdefghijabcdefghijabcdefghijabc:/x", "not a plain name" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct efs_links l;
        struct config_error err = { "" };
        assert_int_equal(efs_links_parse("PI_EFS_LINKS", cases[i].text, &l, &err), -1);
        if (strncmp(err.msg, "PI_EFS_LINKS: ", 14) != 0 || !strstr(err.msg, cases[i].expect))
            fail_msg("'%s': got \"%s\"", cases[i].text, err.msg);
    }
}

static const char mountinfo[] =
    "22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/l\n"
    "35 22 0:30 / /mnt/efs rw,relatime shared:5 - nfs4 fs-1.efs:/ rw,vers=4.1\n"
    "36 22 0:31 / /mnt/with\\040space rw master:1 - tmpfs tmpfs rw\n"
    "37 22 8:1 /keys /var/panintelligence/Dashboard/keys rw - ext4 /dev/sda1 rw\n"
    "38 22 0:32 / /stacked rw - ext4 /dev/sdb rw\n"
    "39 38 0:33 / /stacked rw - tmpfs tmpfs rw\n";

static void mountinfo_finds_mount_points(void **s)
{
    (void)s;
    char type[32];
    size_t len = sizeof(mountinfo) - 1;
    assert_true(efs_mountinfo_find(mountinfo, len, "/mnt/efs", type, sizeof(type)));
    assert_string_equal(type, "nfs4");
    assert_true(efs_mountinfo_find(mountinfo, len, "/mnt/with space", type, sizeof(type)));
    assert_string_equal(type, "tmpfs");
    assert_true(efs_mountinfo_find(mountinfo, len, "/var/panintelligence/Dashboard/keys", type,
                                   sizeof(type)));
    assert_string_equal(type, "ext4");
    /* the visible (last) mount wins */
    assert_true(efs_mountinfo_find(mountinfo, len, "/stacked", type, sizeof(type)));
    assert_string_equal(type, "tmpfs");
    assert_true(efs_mountinfo_find(mountinfo, len, "/", NULL, 0));
    assert_false(efs_mountinfo_find(mountinfo, len, "/mnt", type, sizeof(type)));
    assert_false(efs_mountinfo_find(mountinfo, len, "/mnt/efs/themes", type, sizeof(type)));
    assert_false(efs_mountinfo_find(mountinfo, len, "/mnt/with\\040space", type, sizeof(type)));
    /* truncated and garbage input never crash */
    for (size_t cut = 0; cut < len; cut += 7)
        (void)efs_mountinfo_find(mountinfo, cut, "/mnt/efs", type, sizeof(type));
    assert_false(efs_mountinfo_find("garbage without fields", 22, "/mnt/efs", type, sizeof(type)));
    assert_false(efs_mountinfo_find("", 0, "/", type, sizeof(type)));
}

static void fs_names(void **s)
{
    (void)s;
    assert_string_equal(efs_fs_name(0x6969), "nfs");
    assert_string_equal(efs_fs_name(0xEF53), "ext4");
    assert_string_equal(efs_fs_name(0x01021994), "tmpfs");
    assert_string_equal(efs_fs_name(0x794C7630), "overlay");
    assert_null(efs_fs_name(0x12345));
}

static void budget_states(void **s)
{
    (void)s;
    assert_int_equal(efs_budget_status(0, 1000, 80), EFS_STATUS_OK);
    assert_int_equal(efs_budget_status(799, 1000, 80), EFS_STATUS_OK);
    assert_int_equal(efs_budget_status(800, 1000, 80), EFS_STATUS_WARN);
    assert_int_equal(efs_budget_status(1000, 1000, 80), EFS_STATUS_WARN);
    assert_int_equal(efs_budget_status(1001, 1000, 80), EFS_STATUS_OVER);
    assert_int_equal(efs_budget_status(1000, 1000, 100), EFS_STATUS_WARN);
    assert_int_equal(efs_budget_status(UINT64_MAX - 1, UINT64_MAX, 80), EFS_STATUS_WARN);
    assert_int_equal(efs_budget_status(UINT64_MAX, 1, 80), EFS_STATUS_OVER);
}

static void ready_follows_status_and_policy(void **s)
{
    (void)s;
    struct efs_config cfg;
    struct config_error err = { "" };
    assert_int_equal(efs_config_load(&cfg, &err), 0);
    static struct agent_state state;
    char why[STATE_REASON_MAX + 32];
    state.efs.status = EFS_STATUS_PENDING;
    assert_true(efs_ready(&cfg, &state, why, sizeof(why)));
    state.efs.status = EFS_STATUS_EPHEMERAL;
    assert_true(efs_ready(&cfg, &state, why, sizeof(why)));
    state.efs.status = EFS_STATUS_OVER;
    state.efs.total_bytes = 2000;
    state.efs.budget_bytes = 1000;
    assert_true(efs_ready(&cfg, &state, why, sizeof(why)));
    cfg.over_budget_fail = true;
    assert_false(efs_ready(&cfg, &state, why, sizeof(why)));
    assert_string_equal(why, "storage over budget: 2000 of 1000 bytes");
    state.efs.status = EFS_STATUS_WARN;
    assert_true(efs_ready(&cfg, &state, NULL, 0));
    state.efs.status = EFS_STATUS_FAILED;
    strcpy(state.efs.reason, "PI_EFS_ROOT=/mnt/efs: read-only");
    assert_false(efs_ready(&cfg, &state, why, sizeof(why)));
    assert_non_null(strstr(why, "PI_EFS_ROOT=/mnt/efs: read-only"));
}

/* One name table: every status has its word, /metrics lists each once with
 * "unknown" last, and the readiness rule is the one the verdict uses. */
static void status_names_and_rule(void **s)
{
    (void)s;
    assert_string_equal(efs_status_name(EFS_STATUS_UNKNOWN), "unknown");
    assert_string_equal(efs_status_name(EFS_STATUS_FAILED), "failed");
    assert_string_equal(efs_status_name((enum efs_status)99), "unknown");
    const char *const *w = efs_status_words();
    static const char *const expect[] = { "ok", "warn", "over", "ephemeral", "failed",
                                          "off", "pending", "unknown" };
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        assert_string_equal(w[i], expect[i]);
    assert_null(w[sizeof expect / sizeof expect[0]]);
    for (int st = 0; st < EFS_STATUS_COUNT; st++) {
        bool healthy = st != EFS_STATUS_FAILED && st != EFS_STATUS_OVER;
        assert_int_equal(efs_status_healthy((enum efs_status)st), healthy);
        assert_int_equal(efs_status_blocks_readiness((enum efs_status)st, false),
                         st == EFS_STATUS_FAILED);
        assert_int_equal(efs_status_blocks_readiness((enum efs_status)st, true), !healthy);
    }
}

static void seed_marker(void **s)
{
    (void)s;
    const char text[] = "seed-version=00000000deadbeef\nagent-version=0.1.0\nseeded-at=1\n";
    assert_true(efs_seed_marker_matches(text, sizeof(text) - 1, "00000000deadbeef"));
    assert_false(efs_seed_marker_matches(text, sizeof(text) - 1, "00000000deadbeee"));
    assert_false(efs_seed_marker_matches(text, sizeof(text) - 1, "00000000deadbee"));
    assert_false(efs_seed_marker_matches(text, 20, "00000000deadbeef"));
    assert_false(efs_seed_marker_matches("", 0, "00000000deadbeef"));
}

static void housekeeping_age_rule(void **s)
{
    (void)s;
    const int64_t now = 1700000000;
    assert_false(housekeeping_expired(now, now, 7));
    assert_false(housekeeping_expired(now - 7 * 86400, now, 7));
    assert_true(housekeeping_expired(now - 7 * 86400 - 1, now, 7));
    assert_false(housekeeping_expired(0, now, 0)); /* 0 = keep everything */
    assert_false(housekeeping_expired(now + 3600, now, 1)); /* clock skew: future files stay */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(config_defaults, clear_env),
        cmocka_unit_test_setup(config_dashboard_home_moves_every_default, clear_env),
        cmocka_unit_test_setup(config_errors_name_the_variable, clear_env),
        cmocka_unit_test_setup(config_refuses_links_overlapping_the_root, clear_env),
        cmocka_unit_test(links_parse_accepts_a_table),
        cmocka_unit_test(links_parse_rejects_bad_tables),
        cmocka_unit_test(mountinfo_finds_mount_points),
        cmocka_unit_test(fs_names),
        cmocka_unit_test(budget_states),
        cmocka_unit_test_setup(ready_follows_status_and_policy, clear_env),
        cmocka_unit_test(status_names_and_rule),
        cmocka_unit_test(seed_marker),
        cmocka_unit_test(housekeeping_age_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
