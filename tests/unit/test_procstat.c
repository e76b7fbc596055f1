/* Unit tests for procstat: parsing /proc/PID/stat lines, odd process names
 * included, and reading this process's own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "procstat.h"

/* Fields 3..22 of a real line after the name: state, ppid ... starttime. */
#define TAIL " S 1 7 7 0 -1 4194560 9 0 0 0 1 2 0 0 20 0 1 0 123456 1000 200 18446744073709551615\n"

static void parses_state_parent_and_start_time(void **s)
{
    (void)s;
    const char *line = "42 (pi-agent)" TAIL;
    struct procstat ps;
    assert_int_equal(procstat_parse(line, strlen(line), &ps), 0);
    assert_int_equal(ps.state, 'S');
    assert_int_equal(ps.ppid, 1);
    assert_int_equal(ps.start_ticks, 123456);
}

static void names_with_spaces_and_parentheses_are_skipped_whole(void **s)
{
    (void)s;
    const char *line = "42 (a) b (c) S 9 ) x)" TAIL;
    struct procstat ps;
    assert_int_equal(procstat_parse(line, strlen(line), &ps), 0);
    assert_int_equal(ps.ppid, 1);
    assert_int_equal(ps.start_ticks, 123456);
}

static void short_or_odd_lines_are_refused(void **s)
{
    (void)s;
    struct procstat ps;
    const char *bad[] = {
        "", "42 pi-agent S 1", "42 (x) S 1 7 7", "42 (x) SS" TAIL, "42 (x)  S 1" TAIL,
        "42 (x) S -1 7 7 0 -1 4194560 9 0 0 0 1 2 0 0 20 0 1 0 5\n",
        "42 (x) S 1 7 7 0 -1 4194560 9 0 0 0 1 2 0 0 20 0 1 0 12x\n",
        "42 (x) S 1 7 7 0 -1 4194560 9 0 0 0 1 2 0 0 20 0 1 0 99999999999999999999999\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(procstat_parse(bad[i], strlen(bad[i]), &ps), -1);
    /* A line that ends right after starttime is whole. */
    const char *end = "42 (x) S 3 7 7 0 -1 4194560 9 0 0 0 1 2 0 0 20 0 1 0 77";
    assert_int_equal(procstat_parse(end, strlen(end), &ps), 0);
    assert_int_equal(ps.ppid, 3);
    assert_int_equal(ps.start_ticks, 77);
}

static void reads_this_process_and_its_parent(void **s)
{
    (void)s;
    struct procstat self, again, byid;
    assert_int_equal(procstat_read(0, &self), 0);
    assert_int_equal(self.ppid, getppid());
    assert_int_equal(procstat_read(getpid(), &byid), 0);
    assert_int_equal(byid.start_ticks, self.start_ticks);
    assert_int_equal(procstat_read(0, &again), 0);
    assert_int_equal(again.start_ticks, self.start_ticks); /* stable over time */
    assert_int_equal(procstat_read(4194304 + 1, &again), -1); /* above pid_max */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_state_parent_and_start_time),
        cmocka_unit_test(names_with_spaces_and_parentheses_are_skipped_whole),
        cmocka_unit_test(short_or_odd_lines_are_refused),
        cmocka_unit_test(reads_this_process_and_its_parent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
