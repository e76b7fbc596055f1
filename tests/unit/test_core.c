/* Unit tests for the supervisor's pure parts, the JSON escaping of the logger,
 * the child environment and the event loop's timers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "childenv.h"
#include "log.h"
#include "loop.h"
#include "reap.h"
#include "state.h"
#include "supervise.h"
#include "worker.h"

/* wait(2) statuses built the way the kernel encodes them */
#define EXITED(code) (((code) & 0xff) << 8)
#define SIGNALED(sig) ((sig) & 0x7f)

static void exit_status_mapping(void **s)
{
    (void)s;
    assert_int_equal(exit_status_from_wait(EXITED(0)), 0);
    assert_int_equal(exit_status_from_wait(EXITED(1)), 1);
    assert_int_equal(exit_status_from_wait(EXITED(3)), 3);
    assert_int_equal(exit_status_from_wait(EXITED(143)), 143);
    assert_int_equal(exit_status_from_wait(SIGNALED(15)), 143);
    assert_int_equal(exit_status_from_wait(SIGNALED(9)), 137);
    assert_int_equal(exit_status_from_wait(SIGNALED(6)), 134);
}

static void backoff_doubles_and_caps(void **s)
{
    (void)s;
    assert_int_equal(restart_backoff_ms(0), 1000);
    assert_int_equal(restart_backoff_ms(1), 1000);
    assert_int_equal(restart_backoff_ms(2), 2000);
    assert_int_equal(restart_backoff_ms(3), 4000);
    assert_int_equal(restart_backoff_ms(7), 60000);
    assert_int_equal(restart_backoff_ms(1000), 60000);
}

static void json_escape_specials(void **s)
{
    (void)s;
    char out[128];
    size_t n = json_escape(out, sizeof out, "a\"b\\c\nd\te\x01\x7f");
    assert_string_equal(out, "a\\\"b\\\\c\\nd\\te\\u0001\\u007f");
    assert_int_equal(n, strlen(out));
    json_escape(out, sizeof out, NULL);
    assert_string_equal(out, "");
    /* UTF-8 passes through untouched */
    json_escape(out, sizeof out, "caf\xc3\xa9");
    assert_string_equal(out, "caf\xc3\xa9");
}

static void json_escape_truncates_on_whole_escapes(void **s)
{
    (void)s;
    char out[6];
    size_t need = json_escape(out, sizeof out, "abcd\"efgh");
    assert_int_equal(need, 10);
    /* "abcd" fits; the two-byte \" does not, and is not cut in half */
    assert_string_equal(out, "abcd");
}

static void log_level_and_format_names(void **s)
{
    (void)s;
    enum log_level l;
    enum log_format f;
    assert_int_equal(log_parse_level("debug", &l), 0);
    assert_int_equal(l, LOG_DEBUG);
    assert_int_equal(log_parse_level("warning", &l), 0);
    assert_int_equal(l, LOG_WARN);
    assert_int_equal(log_parse_level("verbose", &l), -1);
    assert_int_equal(log_parse_format("text", &f), 0);
    assert_int_equal(f, LOG_FORMAT_TEXT);
    assert_int_equal(log_parse_format("xml", &f), -1);
}

static void childenv_set_get_replace_unset(void **s)
{
    (void)s;
    char *base[] = { "A=1", "B=2", NULL };
    struct childenv env;
    assert_int_equal(childenv_init(&env, base), 0);
    assert_string_equal(childenv_get(&env, "A"), "1");
    assert_int_equal(childenv_set(&env, "A", "one"), 0);
    assert_string_equal(childenv_get(&env, "A"), "one");
    assert_int_equal(childenv_set(&env, "C", "x=y"), 0);
    assert_string_equal(childenv_get(&env, "C"), "x=y");
    assert_int_equal(env.count, 3);
    childenv_unset(&env, "B");
    assert_null(childenv_get(&env, "B"));
    assert_int_equal(env.count, 2);
    assert_null(env.vars[2]);
    assert_int_equal(childenv_set(&env, "1BAD", "v"), -1);
    assert_int_equal(childenv_set(&env, "BAD-KEY", "v"), -1);
    /* "AB" must not match a lookup for "A" */
    assert_int_equal(childenv_set(&env, "AB", "z"), 0);
    assert_string_equal(childenv_get(&env, "A"), "one");
    childenv_free(&env);
}

static void childenv_parse_lines_accepts_and_rejects(void **s)
{
    (void)s;
    struct childenv env;
    int bad = 0;
    const char text[] = "# heap\nJAVA_OPTS=-Xmx512m -Dx=1\n\n  CATALINA_OPTS=\r\nEMPTY=\n";
    assert_int_equal(childenv_init(&env, NULL), 0);
    assert_int_equal(childenv_parse_lines(&env, text, strlen(text), &bad), 3);
    assert_string_equal(childenv_get(&env, "JAVA_OPTS"), "-Xmx512m -Dx=1");
    assert_string_equal(childenv_get(&env, "CATALINA_OPTS"), "");
    const char broken[] = "GOOD=1\nno equals sign\n";
    assert_int_equal(childenv_parse_lines(&env, broken, strlen(broken), &bad), -1);
    assert_int_equal(bad, 2);
    const char badkey[] = "A=1\nB=2\n9X=3\n";
    assert_int_equal(childenv_parse_lines(&env, badkey, strlen(badkey), &bad), -1);
    assert_int_equal(bad, 3);
    childenv_free(&env);
}

struct timer_log {
    int order[8];
    int n;
    long cancel_id;
};

static void record_a(struct loop *loop, void *ctx)
{
    struct timer_log *t = ctx;
    (void)loop;
    t->order[t->n++] = 1;
}

static void record_b_and_stop(struct loop *loop, void *ctx)
{
    struct timer_log *t = ctx;
    t->order[t->n++] = 2;
    loop_stop(loop, 7);
}

static void record_c(struct loop *loop, void *ctx)
{
    struct timer_log *t = ctx;
    (void)loop;
    t->order[t->n++] = 3;
}

static void loop_timers_fire_in_order_and_cancel(void **s)
{
    (void)s;
    struct timer_log t = { .n = 0 };
    struct loop *loop = loop_new();
    assert_non_null(loop);
    assert_true(loop_timer_add(loop, 30, 0, record_b_and_stop, &t) > 0);
    assert_true(loop_timer_add(loop, 5, 0, record_a, &t) > 0);
    long c = loop_timer_add(loop, 10, 0, record_c, &t);
    assert_true(c > 0);
    loop_timer_cancel(loop, c);
    loop_timer_cancel(loop, 9999); /* unknown: harmless */
    assert_int_equal(loop_run(loop), 7);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.order[0], 1);
    assert_int_equal(t.order[1], 2);
    loop_free(loop);
}

static int pipe_seen;
static void on_readable(struct loop *loop, int fd, uint32_t events, void *ctx)
{
    char c;
    (void)events;
    (void)ctx;
    assert_int_equal(read(fd, &c, 1), 1);
    pipe_seen = c;
    loop_del_fd(loop, fd);
    loop_stop(loop, 0);
}

static void loop_dispatches_fd_events(void **s)
{
    (void)s;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    struct loop *loop = loop_new();
    assert_int_equal(loop_add_fd(loop, fds[0], EPOLLIN, on_readable, NULL), 0);
    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_int_equal(loop_run(loop), 0);
    assert_int_equal(pipe_seen, 'x');
    assert_int_equal(loop_del_fd(loop, fds[0]), -1); /* already removed */
    close(fds[0]);
    close(fds[1]);
    loop_free(loop);
}

static int stranger_calls;
static void stranger_cb(pid_t pid, int status, void *ctx)
{
    (void)pid;
    (void)status;
    (void)ctx;
    stranger_calls++;
}

static void reap_wait_gets_the_status_even_after_reap_all(void **s)
{
    (void)s;
    pid_t a = fork();
    if (a == 0)
        _exit(5);
    pid_t b = fork();
    if (b == 0)
        _exit(6);
    /* b is watched by someone else; reap_wait(b) must still deliver it to its caller */
    assert_int_equal(reap_watch(b, stranger_cb, NULL), 0);
    usleep(100 * 1000);
    int status = 0;
    assert_int_equal(reap_wait(a, 2000, &status), 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 5);
    /* reaping a dispatched b to its watcher; a second wait finds nothing */
    assert_int_equal(stranger_calls, 1);
    assert_int_equal(reap_wait(b, 50, &status), -1);
}

static void reap_wait_times_out_and_restores_the_watch(void **s)
{
    (void)s;
    stranger_calls = 0;
    pid_t c = fork();
    if (c == 0) {
        usleep(300 * 1000);
        _exit(0);
    }
    assert_int_equal(reap_watch(c, stranger_cb, NULL), 0);
    int status;
    assert_int_equal(reap_wait(c, 20, &status), -1);
    usleep(400 * 1000);
    assert_int_equal(reap_all(), 1);
    assert_int_equal(stranger_calls, 1);
}

/* Runs fn with stderr (where the agent logs) pointed at fd; restores it. */
static void with_stderr(int fd, void (*fn)(void *), void *arg)
{
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    fn(arg);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
}

static void emit_raw(void *arg)
{
    log_raw_line(arg);
}

static void raw_line_is_one_write_with_its_newline(void **s)
{
    (void)s;
    int sv[2];
    char buf[256];
    /* A datagram socket shows write(2) boundaries: one record, one write, so
     * the child's output on a shared stderr cannot land before the newline. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
    with_stderr(sv[0], emit_raw, "{\"_aws\":{}}");
    ssize_t n = recv(sv[1], buf, sizeof buf - 1, MSG_DONTWAIT);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, "{\"_aws\":{}}\n");
    close(sv[0]);
    close(sv[1]);
}

static void emit_near_the_limit(void *arg)
{
    (void)arg;
    char a[2001], b[300];
    memset(a, 'a', sizeof a - 1);
    a[sizeof a - 1] = '\0';
    /* Walk the last field's length across the 8 KiB line limit. */
    for (size_t len = 0; len < sizeof b; len++) {
        memset(b, 'b', len);
        b[len] = '\0';
        log_info("m", LF_STR("k1", a), LF_STR("k2", a), LF_STR("k3", a), LF_STR("k4", a),
                 LF_STR("k5", b));
    }
}

static void json_lines_near_the_limit_stay_whole_objects(void **s)
{
    (void)s;
    FILE *f = tmpfile();
    assert_non_null(f);
    log_setup(LOG_INFO, LOG_FORMAT_JSON);
    with_stderr(fileno(f), emit_near_the_limit, NULL);
    rewind(f);
    static char line[16384];
    int lines = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        size_t len = strlen(line);
        assert_true(len >= 2 && line[len - 1] == '\n');
        assert_int_equal(line[0], '{');
        assert_int_equal(line[len - 2], '}');
        lines++;
    }
    assert_int_equal(lines, 300);
    fclose(f);
}

/* The worker reports whether the fd given as arg is still open in it. */
static int report_fd_open(void *arg, int out_fd)
{
    int fd = *(int *)arg;
    char open_ = fcntl(fd, F_GETFD) != -1 ? 'y' : 'n';
    return worker_write_all(out_fd, &open_, 1) == 0 ? 0 : 1;
}

static void worker_holds_no_descriptor_of_the_agent(void **s)
{
    (void)s;
    int sv[2];
    /* Stands for a health connection PID 1 has open when the worker forks. */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct worker_result res;
    assert_int_equal(worker_run("fd-check", report_fd_open, &sv[0], 5000, &res), 0);
    assert_true(res.exited);
    assert_int_equal(res.exit_code, 0);
    assert_int_equal(res.len, 1);
    assert_int_equal(res.data[0], 'n');
    worker_result_free(&res);
    close(sv[0]);
    close(sv[1]);
}

/* ---- the child's clean-up spares the agent's own workers ---------------- */

static struct worker_result slow_res;
static int slow_done;

static int slow_worker(void *arg, int out_fd)
{
    (void)arg;
    usleep(800 * 1000);
    return worker_write_all(out_fd, "k", 1) == 0 ? 0 : 1;
}

static void on_slow_done(struct loop *loop, const struct worker_result *res, void *ctx)
{
    (void)ctx;
    slow_res = *res;
    slow_res.data = NULL;
    slow_res.exited = res->exited && res->len == 1 && res->data[0] == 'k';
    slow_done = 1;
    loop_stop(loop, 0);
}

static void on_sv_exit(struct supervisor *sv, int status, void *ctx)
{
    (void)sv;
    (void)ctx;
    loop_stop(((struct loop **)ctx)[0], status);
}

static void on_sigchld(struct loop *loop, int fd, uint32_t events, void *ctx)
{
    struct signalfd_siginfo si;
    (void)loop;
    (void)events;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si)
        ;
    reap_all();
    supervise_note_reaped(*(struct supervisor **)ctx);
}

static void child_cleanup_spares_running_workers(void **s)
{
    (void)s;
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    assert_int_equal(sigprocmask(SIG_BLOCK, &chld, &old), 0);
    int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    assert_true(sfd >= 0);

    struct loop *loop = loop_new();
    assert_non_null(loop);
    struct supervisor *sv = NULL;
    assert_int_equal(loop_add_fd(loop, sfd, EPOLLIN, on_sigchld, &sv), 0);
    static char *command[] = { "sh", "-c", "sleep 0.2; exit 3", NULL };
    struct agent_config cfg = { .command = command, .stop_grace_s = 10,
                                .restart = RESTART_NEVER };
    static struct agent_state st;
    memset(&st, 0, sizeof st);
    slow_done = 0;
    /* An EFS scan or a licence refresh, running when Tomcat exits. */
    pid_t slow_pid = worker_start(loop, "slow", slow_worker, NULL, 10000, on_slow_done, NULL);
    assert_true(slow_pid > 0);
    /* the worker is listed in its own loop's handle, not in any other */
    struct loop *other = loop_new();
    assert_non_null(other);
    assert_true(worker_owns(loop, slow_pid));
    assert_false(worker_owns(other, slow_pid));
    loop_free(other);
    struct loop *ctx[1] = { loop };
    sv = supervise_new(loop, &cfg, &st, on_sv_exit, ctx);
    assert_non_null(sv);
    extern char **environ;
    assert_int_equal(supervise_start(sv, environ), 0);
    assert_int_equal(loop_run(loop), 3);
    if (!slow_done)
        loop_run(loop);
    assert_true(slow_done);
    assert_int_equal(slow_res.signal, 0);
    assert_true(slow_res.exited);
    assert_false(worker_owns(loop, slow_pid)); /* reported: no longer listed */

    supervise_free(sv);
    loop_del_fd(loop, sfd);
    close(sfd);
    loop_free(loop);
    assert_int_equal(sigprocmask(SIG_SETMASK, &old, NULL), 0);
}

static int slow_report(void *arg, int out_fd)
{
    (void)arg;
    worker_write_all(out_fd, "first half", 10);
    sleep(10); /* the rest would come far past the time limit */
    worker_write_all(out_fd, "second half", 11);
    return 0;
}

static void worker_run_keeps_its_time_limit_after_a_partial_report(void **s)
{
    (void)s;
    struct worker_result res;
    assert_int_equal(worker_run("slow", slow_report, NULL, 300, &res), 0);
    assert_true(res.timed_out);
    assert_false(res.exited);
    assert_int_equal(res.len, 10);
    worker_result_free(&res);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exit_status_mapping),
        cmocka_unit_test(backoff_doubles_and_caps),
        cmocka_unit_test(json_escape_specials),
        cmocka_unit_test(json_escape_truncates_on_whole_escapes),
        cmocka_unit_test(log_level_and_format_names),
        cmocka_unit_test(childenv_set_get_replace_unset),
        cmocka_unit_test(childenv_parse_lines_accepts_and_rejects),
        cmocka_unit_test(loop_timers_fire_in_order_and_cancel),
        cmocka_unit_test(loop_dispatches_fd_events),
        cmocka_unit_test(worker_run_keeps_its_time_limit_after_a_partial_report),
        cmocka_unit_test(reap_wait_gets_the_status_even_after_reap_all),
        cmocka_unit_test(reap_wait_times_out_and_restores_the_watch),
        cmocka_unit_test(worker_holds_no_descriptor_of_the_agent),
        cmocka_unit_test(raw_line_is_one_write_with_its_newline),
        cmocka_unit_test(json_lines_near_the_limit_stay_whole_objects),
        cmocka_unit_test(child_cleanup_spares_running_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
