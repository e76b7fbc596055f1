/* Unit tests for the budget walk: figures agree with `du -s -x --apparent-size
 * -b`, hard links count once, symlinks are never followed, unreadable and
 * too-deep entries are errors naming the path, and only multiply-linked
 * files are remembered. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "efs_scan.h"

static char base[256];

static void write_file(const char *dir, const char *name, size_t size)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    char buf[4096];
    memset(buf, 'x', sizeof(buf));
    while (size > 0) {
        size_t n = size < sizeof(buf) ? size : sizeof(buf);
        assert_int_equal(write(fd, buf, n), (ssize_t)n);
        size -= n;
    }
    close(fd);
}

static void make_dir(const char *dir, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", dir, name);
    assert_int_equal(mkdir(out, 0755), 0);
}

static uint64_t du_bytes(const char *path)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "du -s -x --apparent-size -b '%s'", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    unsigned long long v = 0;
    assert_int_equal(fscanf(p, "%llu", &v), 1);
    pclose(p);
    return v;
}

static int setup(void **s)
{
    (void)s;
    snprintf(base, sizeof(base), "/tmp/pi-efs-scan-XXXXXX");
    assert_non_null(mkdtemp(base));
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s'; rm -rf '%s'", base, base);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void agrees_with_du_on_a_mixed_tree(void **s)
{
    (void)s;
    char a[512], b[512], c[512];
    make_dir(base, "a", a, sizeof(a));
    make_dir(a, "b", b, sizeof(b));
    make_dir(b, "c", c, sizeof(c));
    write_file(base, "top", 10);
    write_file(a, "one", 1000);
    write_file(b, "two", 65536 + 3);
    write_file(c, "empty", 0);
    for (int i = 0; i < 300; i++) { /* more entries than one getdents buffer */
        char name[64];
        snprintf(name, sizeof(name), "file-with-a-longish-name-%04d", i);
        write_file(c, name, (size_t)i);
    }
    char link[600];
    snprintf(link, sizeof(link), "%s/rel-link", a);
    assert_int_equal(symlink("b/two", link), 0);

    struct efs_scan *scan = efs_scan_new();
    struct efs_scan_totals t;
    assert_int_equal(efs_scan_tree(scan, base, &t), 0);
    assert_int_equal(t.err.count, 0);
    assert_int_equal(t.bytes, du_bytes(base));
    assert_int_equal(t.dirs, 4);
    assert_int_equal(t.files, 3 + 1 + 300 + 1);
    assert_int_equal(efs_scan_remembered_links(scan), 0);
    efs_scan_free(scan);
}

static void hard_links_count_once(void **s)
{
    (void)s;
    char a[512], b[512], p1[600], p2[600], p3[600];
    make_dir(base, "a", a, sizeof(a));
    make_dir(base, "b", b, sizeof(b));
    write_file(a, "big", 100000);
    snprintf(p1, sizeof(p1), "%s/big", a);
    snprintf(p2, sizeof(p2), "%s/big-again", a);
    snprintf(p3, sizeof(p3), "%s/big-elsewhere", b);
    assert_int_equal(link(p1, p2), 0);
    assert_int_equal(link(p1, p3), 0);

    struct efs_scan *scan = efs_scan_new();
    struct efs_scan_totals t;
    assert_int_equal(efs_scan_tree(scan, base, &t), 0);
    assert_int_equal(t.bytes, du_bytes(base));
    assert_int_equal(t.files, 1);
    assert_int_equal(efs_scan_remembered_links(scan), 1);
    efs_scan_free(scan);

    /* Across two trees of one scan, like `du -s a b`: b's link is not counted again. */
    scan = efs_scan_new();
    struct efs_scan_totals ta, tb;
    assert_int_equal(efs_scan_tree(scan, a, &ta), 0);
    assert_int_equal(efs_scan_tree(scan, b, &tb), 0);
    assert_int_equal(ta.files, 1);
    assert_int_equal(tb.files, 0);
    assert_true(ta.bytes >= 100000);
    assert_true(tb.bytes < 100000);
    efs_scan_free(scan);
}

static void symlinks_are_never_followed(void **s)
{
    (void)s;
    char a[512], l1[600], l2[600], l3[600];
    make_dir(base, "a", a, sizeof(a));
    write_file(a, "f", 42);
    snprintf(l1, sizeof(l1), "%s/root", a);
    snprintf(l2, sizeof(l2), "%s/loop", a);
    snprintf(l3, sizeof(l3), "%s/up", a);
    assert_int_equal(symlink("/", l1), 0);
    assert_int_equal(symlink("loop", l2), 0); /* a link to itself */
    assert_int_equal(symlink("..", l3), 0);

    struct efs_scan *scan = efs_scan_new();
    struct efs_scan_totals t;
    assert_int_equal(efs_scan_tree(scan, base, &t), 0);
    assert_int_equal(t.err.count, 0);
    assert_int_equal(t.bytes, du_bytes(base));
    /* the links themselves count (their target's length), never what they point at */
    assert_true(t.bytes < 42 + 1 + 4 + 2 + 3 * 4096 + 1);
    assert_int_equal(t.files, 4);

    /* A symlink in place of the top folder is counted, not followed. */
    char top[600];
    snprintf(top, sizeof(top), "%s/top-link", base);
    assert_int_equal(symlink("/", top), 0);
    assert_int_equal(efs_scan_tree(scan, top, &t), 0);
    assert_int_equal(t.bytes, 1);
    assert_int_equal(t.files, 1);
    efs_scan_free(scan);
}

static void missing_top_is_an_error_naming_it(void **s)
{
    (void)s;
    char path[600];
    snprintf(path, sizeof(path), "%s/absent", base);
    struct efs_scan *scan = efs_scan_new();
    struct efs_scan_totals t;
    assert_int_equal(efs_scan_tree(scan, path, &t), -1);
    assert_non_null(strstr(t.err.msg, path));
    assert_non_null(strstr(t.err.msg, "No such file"));
    efs_scan_free(scan);
}

static void too_deep_is_an_error_not_a_crash(void **s)
{
    (void)s;
    int fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(fd >= 0);
    for (int i = 0; i < EFS_SCAN_MAX_DEPTH + 5; i++) {
        assert_int_equal(mkdirat(fd, "d", 0755), 0);
        int next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(next >= 0);
        close(fd);
        fd = next;
    }
    close(fd);
    struct efs_scan *scan = efs_scan_new();
    struct efs_scan_totals t;
    assert_int_equal(efs_scan_tree(scan, base, &t), 0);
    assert_int_equal(t.err.count, 1);
    assert_non_null(strstr(t.err.msg, "/d/d/d/"));
    assert_non_null(strstr(t.err.msg, "not measured"));
    efs_scan_free(scan);
}

/* Unreadable folders are only unreadable to someone other than root: the walk
 * runs in a child that drops to nobody. */
static void unreadable_folder_is_an_error_naming_it(void **s)
{
    (void)s;
    char a[512], closed[512];
    make_dir(base, "a", a, sizeof(a));
    make_dir(a, "closed", closed, sizeof(closed));
    write_file(closed, "secret", 10);
    write_file(a, "open", 5);
    assert_int_equal(chmod(closed, 0), 0);
    assert_int_equal(chmod(base, 0755), 0);

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(2);
        struct efs_scan *scan = efs_scan_new();
        struct efs_scan_totals t;
        int rc = efs_scan_tree(scan, a, &t);
        if (write(fds[1], &t, sizeof(t)) != (ssize_t)sizeof(t))
            _exit(3);
        efs_scan_free(scan);
        _exit(rc == 0 ? 0 : 1);
    }
    close(fds[1]);
    struct efs_scan_totals t;
    assert_int_equal(read(fds[0], &t, sizeof(t)), (ssize_t)sizeof(t));
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(t.err.count, 1);
    assert_non_null(strstr(t.err.msg, closed));
    assert_non_null(strstr(t.err.msg, "Permission denied"));
    assert_int_equal(t.files, 1); /* "open"; the closed folder itself is counted as a dir */
    assert_int_equal(t.dirs, 2);
}

static void many_files_remember_nothing(void **s)
{
    (void)s;
    char d[512];
    make_dir(base, "many", d, sizeof(d));
    for (int i = 0; i < 5000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "%d", i);
        write_file(d, name, 1);
    }
    struct efs_scan *scan = efs_scan_new();
    struct efs_scan_totals t;
    assert_int_equal(efs_scan_tree(scan, base, &t), 0);
    assert_int_equal(t.files, 5000);
    assert_int_equal(efs_scan_remembered_links(scan), 0);
    assert_int_equal(t.bytes, du_bytes(base));
    efs_scan_free(scan);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(agrees_with_du_on_a_mixed_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(hard_links_count_once, setup, teardown),
        cmocka_unit_test_setup_teardown(symlinks_are_never_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(missing_top_is_an_error_naming_it, setup, teardown),
        cmocka_unit_test_setup_teardown(too_deep_is_an_error_not_a_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(unreadable_folder_is_an_error_naming_it, setup, teardown),
        cmocka_unit_test_setup_teardown(many_files_remember_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
