/* Unit tests for fsafe, the descriptor walk used wherever another user can
 * write: symlinks on the way or at the end never followed (with openat2 and
 * with the component walk), random O_EXCL temporaries, replace-by-rename,
 * owners changed only through descriptors, entries moved aside without
 * touching what they point at, and the agent's private folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "fsafe.h"

static char base[256];
static int basefd = -1;

static void pathf(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pathf(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, cap, fmt, ap);
    va_end(ap);
}

static void write_at(const char *rel, const char *text, mode_t mode)
{
    int fd = openat(basefd, rel, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static const char *read_at(const char *rel)
{
    static char buf[256];
    int fd = openat(basefd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static int count_prefix(const char *dir, const char *prefix)
{
    char path[512];
    pathf(path, sizeof(path), "%s/%s", base, dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

static int setup(void **s)
{
    (void)s;
    snprintf(base, sizeof(base), "/tmp/pi-fsafe-XXXXXX");
    assert_non_null(mkdtemp(base));
    assert_int_equal(chmod(base, 0755), 0);
    basefd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(basefd >= 0);
    /* base/efs/a/b/file, base/outside/secret (the victim) */
    assert_int_equal(mkdirat(basefd, "efs", 0755), 0);
    assert_int_equal(mkdirat(basefd, "efs/a", 0755), 0);
    assert_int_equal(mkdirat(basefd, "efs/a/b", 0755), 0);
    write_at("efs/a/b/file", "inside\n", 0644);
    assert_int_equal(mkdirat(basefd, "outside", 0755), 0);
    write_at("outside/secret", "root's\n", 0600);
    fsafe_test_without_openat2 = false;
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    char cmd[512];
    pathf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    assert_int_equal(system(cmd), 0);
    close(basefd);
    fsafe_test_without_openat2 = false;
    return 0;
}

static int efs_fd(void)
{
    int fd = openat(basefd, "efs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static void openat_refuses_symlinks(bool walk)
{
    fsafe_test_without_openat2 = walk;
    int efs = efs_fd();
    char out[512];
    pathf(out, sizeof(out), "%s/outside", base);
    assert_int_equal(symlinkat(out, basefd, "efs/a/up"), 0);
    assert_int_equal(symlinkat("../outside/secret", basefd, "efs/a/b/link"), 0);

    int fd = fsafe_openat(efs, "a/b/file", O_RDONLY, 0);
    assert_true(fd >= 0);
    close(fd);
    /* a symlinked folder on the way */
    errno = 0;
    assert_int_equal(fsafe_openat(efs, "a/up/secret", O_RDONLY, 0), -1);
    assert_true(errno == ELOOP || errno == ENOTDIR || errno == EXDEV);
    /* a symlink as the last component, even for O_CREAT */
    assert_int_equal(fsafe_openat(efs, "a/b/link", O_WRONLY | O_CREAT | O_TRUNC, 0600), -1);
    assert_string_equal(read_at("outside/secret"), "root's\n");
    /* out of the tree */
    assert_int_equal(fsafe_openat(efs, "../outside/secret", O_RDONLY, 0), -1);
    assert_int_equal(fsafe_openat(efs, "/etc/hostname", O_RDONLY, 0), -1);
    /* creating beneath works */
    fd = fsafe_openat(efs, "a/b/new", O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    close(efs);
}

static void openat2_refuses_symlinks(void **s)
{
    (void)s;
    openat_refuses_symlinks(false);
}

static void component_walk_refuses_symlinks(void **s)
{
    (void)s;
    openat_refuses_symlinks(true);
}

static void tmpfile_names_are_random_and_exclusive(void **s)
{
    (void)s;
    int efs = efs_fd();
    char n1[64], n2[64];
    int a = fsafe_tmpfile(efs, ".t.", 0600, n1, sizeof(n1));
    int b = fsafe_tmpfile(efs, ".t.", 0600, n2, sizeof(n2));
    assert_true(a >= 0 && b >= 0);
    assert_string_not_equal(n1, n2);
    assert_int_equal(strlen(n1), 3 + 16);
    struct stat st;
    assert_int_equal(fstat(a, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    close(a);
    close(b);
    /* a name too long for the buffer fails instead of being cut short */
    char tiny[8];
    assert_int_equal(fsafe_tmpfile(efs, ".t.", 0600, tiny, sizeof(tiny)), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    close(efs);
}

static void write_replace_replaces_a_planted_link_not_its_target(void **s)
{
    (void)s;
    int efs = efs_fd();
    char out[512];
    pathf(out, sizeof(out), "%s/outside/secret", base);
    assert_int_equal(symlinkat(out, efs, "marker"), 0);
    const char *step = "unset";
    assert_int_equal(fsafe_write_replace(efs, "marker", "v2\n", 3, 0640, (uid_t)-1, (gid_t)-1,
                                         &step), 0);
    assert_null(step);
    assert_string_equal(read_at("efs/marker"), "v2\n");
    assert_string_equal(read_at("outside/secret"), "root's\n");
    struct stat st;
    assert_int_equal(fstatat(efs, "marker", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0640);
    assert_int_equal(count_prefix("efs", ".marker.tmp."), 0);
    /* a folder by that name: the rename fails, nothing is left behind */
    assert_int_equal(mkdirat(efs, "dir", 0755), 0);
    assert_int_equal(fsafe_write_replace(efs, "dir", "x", 1, 0600, (uid_t)-1, (gid_t)-1, &step), -1);
    assert_string_equal(step, "rename");
    assert_int_equal(count_prefix("efs", ".dir.tmp."), 0);
    close(efs);
}

static void mkdir_open_never_follows(void **s)
{
    (void)s;
    int efs = efs_fd();
    bool created = false;
    int fd = fsafe_mkdir_open(efs, "fresh", 0750, &created);
    assert_true(fd >= 0 && created);
    close(fd);
    fd = fsafe_mkdir_open(efs, "fresh", 0750, &created);
    assert_true(fd >= 0 && !created);
    close(fd);
    char out[512];
    pathf(out, sizeof(out), "%s/outside", base);
    assert_int_equal(symlinkat(out, efs, "planted"), 0);
    assert_int_equal(fsafe_mkdir_open(efs, "planted", 0755, &created), -1);
    assert_int_equal(errno, ELOOP);
    /* a file by that name */
    int b = fsafe_openat(efs, "a/b", O_RDONLY | O_DIRECTORY, 0);
    assert_true(b >= 0);
    assert_int_equal(fsafe_mkdir_open(b, "file", 0755, &created), -1);
    assert_int_equal(errno, ENOTDIR);
    assert_string_equal(read_at("efs/a/b/file"), "inside\n");
    close(b);
    close(efs);
}

static void owners_change_only_through_descriptors(void **s)
{
    (void)s;
    if (geteuid() != 0)
        skip();
    int efs = efs_fd();
    /* a regular file (a hard link to root's file) by the temporary's name */
    assert_int_equal(linkat(basefd, "outside/secret", efs, "tmplink", 0), 0);
    assert_int_equal(fsafe_chown_symlink(efs, "tmplink", 65534, 65534), -1);
    assert_int_equal(errno, EPERM);
    struct stat st;
    assert_int_equal(fstatat(basefd, "outside/secret", &st, 0), 0);
    assert_int_equal(st.st_uid, 0);
    /* a real symlink is handed over, its target is not */
    assert_int_equal(symlinkat("../outside/secret", efs, "sym"), 0);
    assert_int_equal(fsafe_chown_symlink(efs, "sym", 65534, 65534), 0);
    assert_int_equal(fstatat(efs, "sym", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_int_equal(st.st_uid, 65534);
    assert_int_equal(fstatat(basefd, "outside/secret", &st, 0), 0);
    assert_int_equal(st.st_uid, 0);
    /* fsafe_chown_dir refuses anything but a folder */
    int fd = openat(efs, "tmplink", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(fsafe_chown_dir(fd, 65534, 65534), -1);
    assert_int_equal(errno, ENOTDIR);
    close(fd);
    close(efs);
}

static void move_aside_keeps_the_target(void **s)
{
    (void)s;
    int efs = efs_fd();
    assert_int_equal(symlinkat("../outside", efs, ".pi-agent"), 0);
    char moved[128];
    assert_int_equal(fsafe_move_aside(efs, ".pi-agent", "refused", moved, sizeof(moved)), 0);
    assert_int_equal(strncmp(moved, ".pi-agent.refused-", 18), 0);
    struct stat st;
    assert_int_equal(fstatat(efs, moved, &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(fstatat(efs, ".pi-agent", &st, AT_SYMLINK_NOFOLLOW), -1);
    assert_string_equal(read_at("outside/secret"), "root's\n");
    close(efs);
}

static void private_dir_is_made_tightened_or_replaced(void **s)
{
    (void)s;
    int efs = efs_fd();
    char moved[400], msg[600];
    struct stat st;

    /* missing: created 0700 */
    int fd = fsafe_private_dir(efs, "p1", "EFS/p1", moved, sizeof(moved), msg, sizeof(msg));
    assert_true(fd >= 0);
    assert_string_equal(moved, "");
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    close(fd);

    /* an earlier version's 0755 folder of the agent's: kept, tightened */
    assert_int_equal(mkdirat(efs, "p2", 0755), 0);
    write_at("efs/p2/seed.done", "seed-version=1\n", 0644);
    fd = fsafe_private_dir(efs, "p2", "EFS/p2", moved, sizeof(moved), msg, sizeof(msg));
    assert_true(fd >= 0);
    assert_string_equal(moved, "");
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_string_equal(read_at("efs/p2/seed.done"), "seed-version=1\n");
    close(fd);

    /* a symlink: moved aside, the target untouched, a fresh folder made */
    assert_int_equal(symlinkat("../outside", efs, "p3"), 0);
    fd = fsafe_private_dir(efs, "p3", "EFS/p3", moved, sizeof(moved), msg, sizeof(msg));
    assert_true(fd >= 0);
    assert_non_null(strstr(moved, "p3.refused-"));
    assert_non_null(strstr(moved, "a symlink to ../outside"));
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    close(fd);
    assert_int_equal(count_prefix("efs", "p3.refused-"), 1);
    assert_int_equal(count_prefix("outside", ""), 3); /* ".", "..", "secret" */

    /* a file, and a folder writable by others */
    write_at("efs/p4", "x", 0644);
    fd = fsafe_private_dir(efs, "p4", "EFS/p4", moved, sizeof(moved), msg, sizeof(msg));
    assert_true(fd >= 0);
    assert_non_null(strstr(moved, "a file"));
    close(fd);
    assert_int_equal(mkdirat(efs, "p5", 0755), 0);
    assert_int_equal(fchmodat(efs, "p5", 0777, 0), 0);
    fd = fsafe_private_dir(efs, "p5", "EFS/p5", moved, sizeof(moved), msg, sizeof(msg));
    assert_true(fd >= 0);
    assert_non_null(strstr(moved, "writable by others"));
    close(fd);

    if (geteuid() == 0) { /* a folder another user owns */
        assert_int_equal(mkdirat(efs, "p6", 0700), 0);
        assert_int_equal(fchownat(efs, "p6", 65534, 65534, 0), 0);
        fd = fsafe_private_dir(efs, "p6", "EFS/p6", moved, sizeof(moved), msg, sizeof(msg));
        assert_true(fd >= 0);
        assert_non_null(strstr(moved, "owned by uid 65534"));
        close(fd);
    }
    close(efs);
}

static void private_dir_failure_names_the_path(void **s)
{
    (void)s;
    if (geteuid() != 0)
        skip();
    /* A read-only parent: nothing can be moved aside. */
    int efs = efs_fd();
    assert_int_equal(symlinkat("../outside", efs, "ro"), 0);
    int rd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* not writable */
    assert_true(rd >= 0);
    char moved[400], msg[600];
    assert_int_equal(fsafe_private_dir(rd, "0", "/proc/self/fd/0", moved, sizeof(moved), msg,
                                       sizeof(msg)), -1);
    assert_non_null(strstr(msg, "/proc/self/fd/0"));
    close(rd);
    close(efs);
}

static void trusted_open_follows_only_roots_links(void **s)
{
    (void)s;
    char path[512];
    /* base is root's 0755: a link root made there is followed */
    assert_int_equal(symlinkat("efs/a", basefd, "rootlink"), 0);
    pathf(path, sizeof(path), "%s/rootlink/b", base);
    int fd = fsafe_open_dir_trusted(path, false);
    if (geteuid() == 0) {
        assert_true(fd >= 0);
        close(fd);
    }
    /* a link in a folder others can write is not */
    assert_int_equal(fchmodat(basefd, "efs", 0777, 0), 0);
    assert_int_equal(symlinkat("a", basefd, "efs/alias"), 0);
    pathf(path, sizeof(path), "%s/efs/alias/b", base);
    assert_int_equal(fsafe_open_dir_trusted(path, false), -1);
    assert_int_equal(errno, ELOOP);
    assert_int_equal(fchmodat(basefd, "efs", 0755, 0), 0);
    if (geteuid() == 0) { /* nor a link another user owns */
        assert_int_equal(fchownat(basefd, "efs/alias", 65534, 65534, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(fsafe_open_dir_trusted(path, false), -1);
        assert_int_equal(errno, ELOOP);
    }
    /* create makes the missing folders */
    pathf(path, sizeof(path), "%s/made/x/y", base);
    fd = fsafe_open_dir_trusted(path, true);
    assert_true(fd >= 0);
    close(fd);
    struct stat st;
    assert_int_equal(fstatat(basefd, "made/x/y", &st, 0), 0);
    assert_true(S_ISDIR(st.st_mode));
    /* a file on the way */
    pathf(path, sizeof(path), "%s/efs/a/b/file/x", base);
    assert_int_equal(fsafe_open_dir_trusted(path, false), -1);
    assert_int_equal(errno, ENOTDIR);
}

static void random_hex_is_hex(void **s)
{
    (void)s;
    char a[33], b[33];
    assert_int_equal(fsafe_random_hex(a, sizeof(a), 16), 0);
    assert_int_equal(fsafe_random_hex(b, sizeof(b), 16), 0);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strspn(a, "0123456789abcdef"), 32);
    assert_string_not_equal(a, b);
    assert_int_equal(fsafe_random_hex(a, 10, 16), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(openat2_refuses_symlinks, setup, teardown),
        cmocka_unit_test_setup_teardown(component_walk_refuses_symlinks, setup, teardown),
        cmocka_unit_test_setup_teardown(tmpfile_names_are_random_and_exclusive, setup, teardown),
        cmocka_unit_test_setup_teardown(write_replace_replaces_a_planted_link_not_its_target, setup, teardown),
        cmocka_unit_test_setup_teardown(mkdir_open_never_follows, setup, teardown),
        cmocka_unit_test_setup_teardown(owners_change_only_through_descriptors, setup, teardown),
        cmocka_unit_test_setup_teardown(move_aside_keeps_the_target, setup, teardown),
        cmocka_unit_test_setup_teardown(private_dir_is_made_tightened_or_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(private_dir_failure_names_the_path, setup, teardown),
        cmocka_unit_test_setup_teardown(trusted_open_follows_only_roots_links, setup, teardown),
        cmocka_unit_test_setup_teardown(random_hex_is_hex, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
