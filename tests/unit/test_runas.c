/* Unit tests for runas_drop: the one way a forked process takes the
 * PI_AGENT_RUN_AS identity. Each case runs in a forked child (the drop is
 * for good); the child reports through its exit code. */
#include <errno.h>
#include <grp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "runas.h"

/* Runs fn in a child; returns its exit code (or 200 + signal). */
static int in_child(int (*fn)(void))
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(fn());
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 200 + WTERMSIG(status);
}

static void nothing_to_do(void **s)
{
    (void)s;
    struct run_as unset;
    memset(&unset, 0, sizeof(unset));
    assert_int_equal(runas_drop(NULL), 0);
    assert_int_equal(runas_drop(&unset), 0);
}

static int drop_numeric(void)
{
    struct run_as ra = { .set = true, .uid = 65534, .gid = 65534 };
    if (runas_drop(&ra) != 0)
        return 1;
    gid_t groups[4];
    int n = getgroups(4, groups);
    if (getuid() != 65534 || geteuid() != 65534 || getgid() != 65534 || getegid() != 65534)
        return 2;
    if (n != 1 || groups[0] != 65534)
        return 3; /* no group of root's is kept */
    if (setuid(0) == 0)
        return 4;
    return 0;
}

static void drops_to_a_numeric_id_for_good(void **s)
{
    (void)s;
    if (geteuid() != 0)
        skip();
    assert_int_equal(in_child(drop_numeric), 0);
}

static int drop_twice(void)
{
    struct run_as first = { .set = true, .uid = 65534, .gid = 65534 };
    struct run_as second = { .set = true, .uid = 65533, .gid = 65533 };
    if (runas_drop(&first) != 0)
        return 1;
    /* No longer root: the next switch must fail, and say so. */
    if (runas_drop(&second) != -1 || errno != EPERM)
        return 2;
    return geteuid() == 65534 ? 0 : 3;
}

static void a_failed_step_is_reported(void **s)
{
    (void)s;
    if (geteuid() != 0)
        skip();
    assert_int_equal(in_child(drop_twice), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nothing_to_do),
        cmocka_unit_test(drops_to_a_numeric_id_for_good),
        cmocka_unit_test(a_failed_step_is_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
