/* Unit tests for config.c: the pure parsers behind every PI_* variable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"

static void uint_default_when_unset_or_empty(void **s)
{
    (void)s;
    struct config_error err = { "" };
    unsigned long long v = 0;
    assert_int_equal(config_parse_uint("X", NULL, 20, 1, 100, &v, &err), 0);
    assert_int_equal(v, 20);
    assert_int_equal(config_parse_uint("X", "", 7, 1, 100, &v, &err), 0);
    assert_int_equal(v, 7);
}

static void uint_accepts_range_bounds(void **s)
{
    (void)s;
    struct config_error err = { "" };
    unsigned long long v = 0;
    assert_int_equal(config_parse_uint("X", "1", 20, 1, 100, &v, &err), 0);
    assert_int_equal(v, 1);
    assert_int_equal(config_parse_uint("X", "100", 20, 1, 100, &v, &err), 0);
    assert_int_equal(v, 100);
}

static void uint_rejects_bad_values_naming_the_variable(void **s)
{
    (void)s;
    const char *bad[] = { "-1", " 5", "5s", "abc", "0", "101", "99999999999999999999999", "1.5" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct config_error err = { "" };
        unsigned long long v = 42;
        assert_int_equal(config_parse_uint("PI_AGENT_STOP_GRACE_SECONDS", bad[i], 20, 1, 100, &v, &err), -1);
        assert_non_null(strstr(err.msg, "PI_AGENT_STOP_GRACE_SECONDS"));
        assert_non_null(strstr(err.msg, "from 1 to 100"));
        assert_int_equal(v, 42); /* untouched on error */
    }
}

static void bool_forms(void **s)
{
    (void)s;
    struct config_error err = { "" };
    bool v = false;
    assert_int_equal(config_parse_bool("B", "TRUE", false, &v, &err), 0);
    assert_true(v);
    assert_int_equal(config_parse_bool("B", "0", true, &v, &err), 0);
    assert_false(v);
    assert_int_equal(config_parse_bool("B", NULL, true, &v, &err), 0);
    assert_true(v);
    assert_int_equal(config_parse_bool("PI_FLAG", "maybe", true, &v, &err), -1);
    assert_non_null(strstr(err.msg, "PI_FLAG: expected true or false"));
}

static void choice_lists_the_options(void **s)
{
    (void)s;
    static const char *const choices[] = { "never", "on-failure", NULL };
    struct config_error err = { "" };
    int v = -1;
    assert_int_equal(config_parse_choice("R", "on-failure", 0, choices, &v, &err), 0);
    assert_int_equal(v, 1);
    assert_int_equal(config_parse_choice("R", NULL, 0, choices, &v, &err), 0);
    assert_int_equal(v, 0);
    assert_int_equal(config_parse_choice("PI_AGENT_RESTART", "always", 0, choices, &v, &err), -1);
    assert_string_equal(err.msg, "PI_AGENT_RESTART: expected one of never, on-failure, got \"always\"");
}

static void split_words_on_spaces_and_tabs(void **s)
{
    (void)s;
    size_t n = 0;
    char **w = config_split_words("  /bin/catalina.sh \trun  -x ", &n);
    assert_non_null(w);
    assert_int_equal(n, 3);
    assert_string_equal(w[0], "/bin/catalina.sh");
    assert_string_equal(w[1], "run");
    assert_string_equal(w[2], "-x");
    assert_null(w[3]);
    config_free_words(w);
}

static void split_words_many(void **s)
{
    (void)s;
    char line[1024] = "";
    for (int i = 0; i < 50; i++)
        strcat(line, "ab ");
    size_t n = 0;
    char **w = config_split_words(line, &n);
    assert_non_null(w);
    assert_int_equal(n, 50);
    assert_null(w[50]);
    config_free_words(w);
}

static void split_words_empty_is_null(void **s)
{
    (void)s;
    size_t n = 9;
    assert_null(config_split_words("   \t ", &n));
    assert_int_equal(n, 0);
    assert_null(config_split_words(NULL, &n));
}

static void run_as_numeric_and_named(void **s)
{
    (void)s;
    struct config_error err = { "" };
    struct run_as ra;
    assert_int_equal(config_parse_run_as("PI_AGENT_RUN_AS", "1234:5678", &ra, &err), 0);
    assert_true(ra.set);
    assert_int_equal(ra.uid, 1234);
    assert_int_equal(ra.gid, 5678);
    assert_int_equal(config_parse_run_as("PI_AGENT_RUN_AS", "root", &ra, &err), 0);
    assert_int_equal(ra.uid, 0);
    assert_int_equal(config_parse_run_as("PI_AGENT_RUN_AS", NULL, &ra, &err), 0);
    assert_false(ra.set);
}

static void run_as_unknown_user_is_an_error(void **s)
{
    (void)s;
    struct config_error err = { "" };
    struct run_as ra;
    assert_int_equal(config_parse_run_as("PI_AGENT_RUN_AS", "no-such-user-xyz", &ra, &err), -1);
    assert_non_null(strstr(err.msg, "PI_AGENT_RUN_AS: unknown user \"no-such-user-xyz\""));
    assert_int_equal(config_parse_run_as("PI_AGENT_RUN_AS", "root:no-such-group-xyz", &ra, &err), -1);
    assert_non_null(strstr(err.msg, "unknown group"));
    assert_int_equal(config_parse_run_as("PI_AGENT_RUN_AS", ":0", &ra, &err), -1);
    assert_non_null(strstr(err.msg, "expected user[:group]"));
}

static void run_as_id_out_of_range_is_an_error(void **s)
{
    (void)s;
    struct config_error err = { "" };
    struct run_as ra;
    /* 2^32 would wrap to uid 0: the child would run as root. */
    assert_int_equal(config_parse_run_as("PI_AGENT_RUN_AS", "4294967296", &ra, &err), -1);
    assert_non_null(strstr(err.msg, "PI_AGENT_RUN_AS: "));
    assert_false(ra.set);
    assert_int_equal(config_parse_run_as("PI_AGENT_RUN_AS", "4294967295", &ra, &err), -1);
    assert_int_equal(config_parse_run_as("PI_AGENT_RUN_AS", "1000:4294967296", &ra, &err), -1);
    assert_non_null(strstr(err.msg, "PI_AGENT_RUN_AS: "));
    assert_int_equal(config_parse_run_as("PI_AGENT_RUN_AS", "18446744073709551616", &ra, &err), -1);
    assert_int_equal(config_parse_run_as("PI_AGENT_RUN_AS", "4294967294:4294967294", &ra, &err), 0);
    assert_int_equal(ra.uid, 4294967294u);
}

static void run_as_numeric_uid_known_to_passwd_takes_its_entry(void **s)
{
    (void)s;
    struct config_error err = { "" };
    struct run_as ra;
    struct passwd *pw;
    uid_t uid = 0;
    gid_t gid = 0;
    char name[64] = "", number[32];
    /* An entry whose group differs from its uid (games: 5/60 on Debian). */
    setpwent();
    while ((pw = getpwent()) != NULL) {
        if ((gid_t)pw->pw_uid != pw->pw_gid && strlen(pw->pw_name) < sizeof name) {
            uid = pw->pw_uid;
            gid = pw->pw_gid;
            snprintf(name, sizeof name, "%s", pw->pw_name);
            break;
        }
    }
    endpwent();
    if (name[0] == '\0')
        skip();
    /* As docker's --user: the entry's primary group, and its name for the
     * supplementary groups, not a group numbered like the uid. */
    snprintf(number, sizeof number, "%u", (unsigned)uid);
    assert_int_equal(config_parse_run_as("PI_AGENT_RUN_AS", number, &ra, &err), 0);
    assert_int_equal(ra.uid, uid);
    assert_int_equal(ra.gid, gid);
    assert_string_equal(ra.user, name);
    /* A uid unknown to /etc/passwd keeps uid = gid. */
    assert_int_equal(config_parse_run_as("PI_AGENT_RUN_AS", "4123456789", &ra, &err), 0);
    assert_int_equal(ra.gid, 4123456789u);
}

static void clear_zeroes_every_byte(void **state)
{
    (void)state;
    static unsigned char buf[3000];
    memset(buf + 700, 0xab, 5);  /* one dirty chunk in the middle */
    buf[sizeof buf - 1] = 1;     /* and the last byte of a short tail */
    config_clear(buf, sizeof buf);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0);
    config_clear(buf, 0); /* nothing to do */
    unsigned char one = 7;
    config_clear(&one, 1);
    assert_int_equal(one, 0);
}

static void agent_config_command_sources(void **s)
{
    (void)s;
    struct config_error err = { "" };
    struct agent_config cfg;
    char *argv_cmd[] = { "echo", "hi", NULL };

    unsetenv("PI_AGENT_COMMAND");
    unsetenv("PI_AGENT_STOP_GRACE_SECONDS");
    unsetenv("PI_AGENT_RUN_AS");
    unsetenv("PI_AGENT_RESTART");
    assert_int_equal(agent_config_load(&cfg, NULL, &err), 0);
    assert_string_equal(cfg.command[0], "/var/panintelligence/Dashboard/tomcat/bin/catalina.sh");
    assert_string_equal(cfg.command[1], "run");
    assert_int_equal(cfg.stop_grace_s, 20);
    assert_int_equal(cfg.restart, RESTART_NEVER);
    agent_config_free(&cfg);

    setenv("PI_AGENT_COMMAND", "/bin/true a b", 1);
    assert_int_equal(agent_config_load(&cfg, NULL, &err), 0);
    assert_string_equal(cfg.command[0], "/bin/true");
    assert_string_equal(cfg.command[2], "b");
    agent_config_free(&cfg);

    /* the command line wins over the variable */
    assert_int_equal(agent_config_load(&cfg, argv_cmd, &err), 0);
    assert_ptr_equal(cfg.command, argv_cmd);
    agent_config_free(&cfg);

    setenv("PI_AGENT_COMMAND", "", 1);
    assert_int_equal(agent_config_load(&cfg, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "PI_AGENT_COMMAND"));
    unsetenv("PI_AGENT_COMMAND");

    setenv("PI_AGENT_STOP_GRACE_SECONDS", "soon", 1);
    assert_int_equal(agent_config_load(&cfg, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "PI_AGENT_STOP_GRACE_SECONDS"));
    unsetenv("PI_AGENT_STOP_GRACE_SECONDS");
}

static void run_dir_has_one_rule(void **state)
{
    (void)state;
    char out[CONFIG_RUN_DIR_MAX + 1];
    struct config_error err = { "" };
    unsetenv("PI_AGENT_RUN_DIR");
    assert_int_equal(config_run_dir(out, sizeof out, &err), 0);
    assert_string_equal(out, CONFIG_DEFAULT_RUN_DIR);
    setenv("PI_AGENT_RUN_DIR", "/run/elsewhere", 1);
    assert_int_equal(config_run_dir(out, sizeof out, &err), 0);
    assert_string_equal(out, "/run/elsewhere");
    setenv("PI_AGENT_RUN_DIR", "run/relative", 1);
    assert_int_equal(config_run_dir(out, sizeof out, &err), -1);
    assert_non_null(strstr(err.msg, "PI_AGENT_RUN_DIR"));
    char longest[CONFIG_RUN_DIR_MAX + 2];
    memset(longest, 'a', sizeof longest - 1);
    longest[0] = '/';
    longest[sizeof longest - 1] = '\0'; /* one character too many */
    setenv("PI_AGENT_RUN_DIR", longest, 1);
    assert_int_equal(config_run_dir(out, sizeof out, &err), -1);
    longest[sizeof longest - 2] = '\0'; /* exactly the maximum */
    setenv("PI_AGENT_RUN_DIR", longest, 1);
    assert_int_equal(config_run_dir(out, sizeof out, &err), 0);
    assert_string_equal(out, longest);
    unsetenv("PI_AGENT_RUN_DIR");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uint_default_when_unset_or_empty),
        cmocka_unit_test(uint_accepts_range_bounds),
        cmocka_unit_test(uint_rejects_bad_values_naming_the_variable),
        cmocka_unit_test(bool_forms),
        cmocka_unit_test(choice_lists_the_options),
        cmocka_unit_test(split_words_on_spaces_and_tabs),
        cmocka_unit_test(split_words_many),
        cmocka_unit_test(split_words_empty_is_null),
        cmocka_unit_test(run_as_numeric_and_named),
        cmocka_unit_test(run_as_unknown_user_is_an_error),
        cmocka_unit_test(run_as_id_out_of_range_is_an_error),
        cmocka_unit_test(run_as_numeric_uid_known_to_passwd_takes_its_entry),
        cmocka_unit_test(agent_config_command_sources),
        cmocka_unit_test(clear_zeroes_every_byte),
        cmocka_unit_test(run_dir_has_one_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
