/* Unit tests for the Tomcat log housekeeping pass: only regular files older
 * than the retention directly in the folder are removed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "housekeeping.h"

static char dir[256];

static void make_file(const char *name, int64_t age_s, int64_t now)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "log\n", 4), 4);
    struct timespec ts[2] = { { .tv_sec = now - age_s }, { .tv_sec = now - age_s } };
    assert_int_equal(futimens(fd, ts), 0);
    close(fd);
}

static bool exists(const char *name)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    struct stat st;
    return lstat(p, &st) == 0;
}

static void removes_only_old_regular_files(void **s)
{
    (void)s;
    snprintf(dir, sizeof(dir), "/tmp/pi-efs-hk-XXXXXX");
    assert_non_null(mkdtemp(dir));
    const int64_t now = (int64_t)time(NULL);
    make_file("catalina.2020-01-01.log", 30 * 86400, now);
    make_file("localhost_access_log.txt", 8 * 86400, now);
    make_file("catalina.out", 60, now);
    make_file("six-days.log", 6 * 86400, now);
    char p[512], q[512];
    snprintf(p, sizeof(p), "%s/old-folder", dir);
    assert_int_equal(mkdir(p, 0755), 0);
    struct timespec old[2] = { { .tv_sec = now - 90 * 86400 }, { .tv_sec = now - 90 * 86400 } };
    assert_int_equal(utimensat(AT_FDCWD, p, old, 0), 0);
    snprintf(q, sizeof(q), "%s/old-link", dir);
    assert_int_equal(symlink("/etc/hostname", q), 0);
    assert_int_equal(utimensat(AT_FDCWD, q, old, AT_SYMLINK_NOFOLLOW), 0);

    struct housekeeping_config cfg = { .retention_days = 7 };
    snprintf(cfg.log_dir, sizeof(cfg.log_dir), "%s", dir);
    struct housekeeping_result r;
    assert_int_equal(housekeeping_run(&cfg, now, &r), 0);
    assert_int_equal(r.removed, 2);
    assert_int_equal(r.kept, 2);
    assert_int_equal(r.errors.count, 0);
    assert_false(exists("catalina.2020-01-01.log"));
    assert_false(exists("localhost_access_log.txt"));
    assert_true(exists("catalina.out"));
    assert_true(exists("six-days.log"));
    assert_true(exists("old-folder"));
    assert_true(exists("old-link"));

    cfg.retention_days = 0; /* off */
    make_file("ancient.log", 999 * 86400, now);
    assert_int_equal(housekeeping_run(&cfg, now, &r), 0);
    assert_int_equal(r.removed, 0);
    assert_true(exists("ancient.log"));

    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void missing_folder_is_quiet_and_a_file_is_an_error(void **s)
{
    (void)s;
    struct housekeeping_config cfg = { .retention_days = 7 };
    snprintf(cfg.log_dir, sizeof(cfg.log_dir), "/nonexistent-pi-agent/tomcat/logs");
    struct housekeeping_result r;
    assert_int_equal(housekeeping_run(&cfg, 0, &r), 0);
    assert_int_equal(r.removed, 0);
    assert_int_equal(r.errors.count, 0);

    snprintf(cfg.log_dir, sizeof(cfg.log_dir), "/etc/hostname");
    assert_int_equal(housekeeping_run(&cfg, 0, &r), -1);
    assert_non_null(strstr(r.errors.msg, "/etc/hostname"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(removes_only_old_regular_files),
        cmocka_unit_test(missing_folder_is_quiet_and_a_file_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
