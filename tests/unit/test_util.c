/* Unit tests for the shared helpers of util.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "util.h"

static char dir[] = "/tmp/pi-util-test.XXXXXX";
static int dirfd_;

static int setup(void **s)
{
    (void)s;
    if (!mkdtemp(dir))
        return -1;
    dirfd_ = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return dirfd_ < 0 ? -1 : 0;
}

static int teardown(void **s)
{
    (void)s;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    close(dirfd_);
    return system(cmd) == 0 ? 0 : -1;
}

static void put(const char *name, const char *content)
{
    int fd = openat(dirfd_, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
}

static void reads_a_small_file_whole(void **s)
{
    (void)s;
    char buf[16];
    put("seven", "1234567");
    assert_int_equal(util_read_at(dirfd_, "seven", buf, sizeof(buf)), 7);
    assert_string_equal(buf, "1234567");
    put("exact", "123456789012345"); /* cap - 1 bytes: fits */
    assert_int_equal(util_read_at(dirfd_, "exact", buf, sizeof(buf)), 15);
    put("empty", "");
    assert_int_equal(util_read_at(dirfd_, "empty", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
}

static void a_file_too_big_is_efbig_with_its_start(void **s)
{
    (void)s;
    char buf[8];
    put("big", "0123456789");
    errno = 0;
    assert_int_equal(util_read_at(dirfd_, "big", buf, sizeof(buf)), -1);
    assert_int_equal(errno, EFBIG);
    assert_string_equal(buf, "0123456");
}

static void a_symlink_is_never_followed(void **s)
{
    (void)s;
    char buf[16];
    put("target", "secret");
    assert_int_equal(symlinkat("target", dirfd_, "link"), 0);
    errno = 0;
    assert_int_equal(util_read_at(dirfd_, "link", buf, sizeof(buf)), -1);
    assert_int_equal(errno, ELOOP);
    errno = 0;
    assert_int_equal(util_read_at(dirfd_, "absent", buf, sizeof(buf)), -1);
    assert_int_equal(errno, ENOENT);
}

static void ip_literals_become_addresses(void **s)
{
    (void)s;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    assert_int_equal(util_sockaddr_from_ip("127.0.0.2", 8225, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8225);
    assert_int_equal(ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr), 0x7f000002);
    assert_int_equal(util_sockaddr_from_ip("::1", 80, &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    errno = 0;
    assert_int_equal(util_sockaddr_from_ip("localhost", 80, &ss, &len), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(util_sockaddr_from_ip("[::1]", 80, &ss, &len), -1);
    assert_int_equal(util_sockaddr_from_ip("", 80, &ss, &len), -1);
}

static void jitter_stays_within_ten_percent(void **s)
{
    (void)s;
    assert_int_equal(util_jitter_ms(60000, 0), 54000);
    assert_int_equal(util_jitter_ms(60000, 11999), 65999);
    assert_int_equal(util_jitter_ms(60000, 12000), 54000);
    assert_int_equal(util_jitter_ms(4, 123), 4); /* too small to spread */
    assert_int_equal(util_jitter_ms(0, 7), 0);
    for (int i = 0; i < 1000; i++) {
        uint64_t v = util_jitter_ms(1000, util_random64());
        assert_true(v >= 900 && v < 1100);
    }
}

static void clock_moves_forward(void **s)
{
    (void)s;
    uint64_t a = util_mono_us();
    usleep(2000);
    uint64_t b = util_mono_us();
    assert_true(b > a && b - a >= 2000);
    assert_true(util_mono_ms() >= b / 1000);
    assert_true(util_mono_s() >= (double)b / 1e6);
}

static void first_error_is_kept_and_all_counted(void **s)
{
    (void)s;
    struct util_first_error e = { 0, "" };
    util_first_error_add(&e, "%s: %s", "a/b", "Permission denied");
    util_first_error_add(&e, "%s", "later");
    util_first_error_add(&e, "%s", "later still");
    assert_int_equal(e.count, 3);
    assert_string_equal(e.msg, "a/b: Permission denied");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reads_a_small_file_whole),
        cmocka_unit_test(a_file_too_big_is_efbig_with_its_start),
        cmocka_unit_test(a_symlink_is_never_followed),
        cmocka_unit_test(ip_literals_become_addresses),
        cmocka_unit_test(jitter_stays_within_ten_percent),
        cmocka_unit_test(clock_moves_forward),
        cmocka_unit_test(first_error_is_kept_and_all_counted),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
