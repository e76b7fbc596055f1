/* Unit tests for the hooks module: settings, discovery, the pure helpers, the
 * wait-tcp subcommand against a loopback listener, and both runners with real
 * shell scripts in a temporary directory. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "childenv.h"
#include "config.h"
#include "hooks.h"
#include "wait_tcp.h"
#include "log.h"
#include "loop.h"
#include "reap.h"
#include "state.h"

extern char **environ;

#define EXITED(code) (((code) & 0xff) << 8)
#define SIGNALED(sig) ((sig) & 0x7f)

/* ---- fixtures ----------------------------------------------------------- */

struct fixture {
    char root[64];      /* the hooks dir */
    char out[128];      /* a file hooks append to */
    struct hooks_config cfg;
    struct agent_state state;
    struct childenv env;
    struct hooks hooks;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **s)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    snprintf(f->root, sizeof f->root, "/tmp/pi-hooks-test.XXXXXX");
    if (mkdtemp(f->root) == NULL)
        return -1;
    snprintf(f->out, sizeof f->out, "%s/out", f->root);
    snprintf(f->cfg.dir, sizeof f->cfg.dir, "%s", f->root);
    f->cfg.timeout_s = 10;
    f->cfg.warn_only = false;
    if (childenv_init(&f->env, environ) != 0)
        return -1;
    if (childenv_set(&f->env, "OUT", f->out) != 0)
        return -1;
    *s = f;
    return 0;
}

static int teardown(void **s)
{
    struct fixture *f = *s;
    nftw(f->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    childenv_free(&f->env);
    free(f);
    return 0;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

/* Writes an executable /bin/sh hook into <root>/<phase>.d/<name>. */
static void add_hook(struct fixture *f, const char *phase, const char *name, const char *body)
{
    char path[512], text[4096];
    snprintf(path, sizeof path, "%s/%s.d", f->root, phase);
    if (mkdir(path, 0755) != 0)
        assert_int_equal(errno, EEXIST);
    snprintf(path, sizeof path, "%s/%s.d/%s", f->root, phase, name);
    snprintf(text, sizeof text, "#!/bin/sh\n%s\n", body);
    write_file(path, text, 0755);
}

/* The file hooks append to, or "" when none wrote. */
static char *read_out(struct fixture *f, char *buf, size_t cap)
{
    FILE *fp = fopen(f->out, "re");
    buf[0] = '\0';
    if (fp == NULL)
        return buf;
    size_t n = fread(buf, 1, cap - 1, fp);
    buf[n] = '\0';
    fclose(fp);
    return buf;
}

static pid_t read_pid_file(const char *path)
{
    char buf[32] = "";
    FILE *fp = fopen(path, "re");
    assert_non_null(fp);
    assert_non_null(fgets(buf, sizeof buf, fp));
    fclose(fp);
    return (pid_t)atol(buf);
}

/* True once pid is gone or a zombie (killed, waiting for its reaper). */
static bool process_dead(pid_t pid)
{
    char path[64], stat[256];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *fp = fopen(path, "re");
    if (fp == NULL)
        return true;
    size_t n = fread(stat, 1, sizeof stat - 1, fp);
    fclose(fp);
    stat[n] = '\0';
    const char *close_paren = strrchr(stat, ')');
    return close_paren == NULL || close_paren[2] == 'Z' || close_paren[2] == 'X';
}

static bool eventually_dead(pid_t pid)
{
    for (int i = 0; i < 500; i++) {
        if (process_dead(pid))
            return true;
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep(&ts, NULL);
    }
    return false;
}

/* ---- settings ------------------------------------------------------------ */

static void clear_hook_env(void)
{
    unsetenv("PI_AGENT_HOOKS_DIR");
    unsetenv("PI_AGENT_HOOK_TIMEOUT_SECONDS");
    unsetenv("PI_AGENT_HOOK_FAILURE");
}

static void config_defaults(void **s)
{
    (void)s;
    struct hooks_config cfg;
    struct config_error err = { "" };
    clear_hook_env();
    assert_int_equal(hooks_config_load(&cfg, &err), 0);
    assert_string_equal(cfg.dir, "/etc/pi-agent/hooks");
    assert_int_equal(cfg.timeout_s, 30);
    assert_false(cfg.warn_only);
}

static void config_values(void **s)
{
    (void)s;
    struct hooks_config cfg;
    struct config_error err = { "" };
    clear_hook_env();
    setenv("PI_AGENT_HOOKS_DIR", "/opt/hooks", 1);
    setenv("PI_AGENT_HOOK_TIMEOUT_SECONDS", "120", 1);
    setenv("PI_AGENT_HOOK_FAILURE", "warn", 1);
    assert_int_equal(hooks_config_load(&cfg, &err), 0);
    assert_string_equal(cfg.dir, "/opt/hooks");
    assert_int_equal(cfg.timeout_s, 120);
    assert_true(cfg.warn_only);
    setenv("PI_AGENT_HOOK_FAILURE", "fail", 1);
    assert_int_equal(hooks_config_load(&cfg, &err), 0);
    assert_false(cfg.warn_only);
    clear_hook_env();
}

static void expect_config_error(const char *name, const char *value)
{
    struct hooks_config cfg;
    struct config_error err = { "" };
    clear_hook_env();
    setenv(name, value, 1);
    assert_int_equal(hooks_config_load(&cfg, &err), -1);
    /* One line naming the variable. */
    assert_true(strncmp(err.msg, name, strlen(name)) == 0);
    assert_null(strchr(err.msg, '\n'));
    clear_hook_env();
}

static void config_errors_name_the_variable(void **s)
{
    (void)s;
    expect_config_error("PI_AGENT_HOOKS_DIR", "relative/hooks");
    expect_config_error("PI_AGENT_HOOK_TIMEOUT_SECONDS", "0");
    expect_config_error("PI_AGENT_HOOK_TIMEOUT_SECONDS", "3601");
    expect_config_error("PI_AGENT_HOOK_TIMEOUT_SECONDS", "10s");
    expect_config_error("PI_AGENT_HOOK_FAILURE", "ignore");
    char long_dir[1100];
    memset(long_dir, 'a', sizeof long_dir - 1);
    long_dir[0] = '/';
    long_dir[sizeof long_dir - 1] = '\0';
    expect_config_error("PI_AGENT_HOOKS_DIR", long_dir);
}

/* ---- pure helpers --------------------------------------------------------- */

static void phases(void **s)
{
    (void)s;
    assert_true(hooks_phase_known("pre-start"));
    assert_true(hooks_phase_known("post-ready"));
    assert_true(hooks_phase_known("pre-stop"));
    assert_true(hooks_phase_known("post-stop"));
    assert_false(hooks_phase_known("prestart"));
    assert_false(hooks_phase_known(""));
    assert_false(hooks_phase_known(NULL));
}

static void time_limits(void **s)
{
    (void)s;
    assert_int_equal(hooks_time_limit_ms(30, 0, 5000), 30000);        /* no budget */
    assert_int_equal(hooks_time_limit_ms(30, 100000, 5000), 30000);   /* budget larger */
    assert_int_equal(hooks_time_limit_ms(30, 7000, 5000), 2000);      /* budget smaller */
    assert_int_equal(hooks_time_limit_ms(30, 5000, 5000), 0);         /* used up */
    assert_int_equal(hooks_time_limit_ms(30, 4000, 5000), 0);         /* overdue */
}

static void outcomes(void **s)
{
    (void)s;
    char buf[96];
    assert_true(hooks_describe_outcome(EXITED(0), false, 1000, buf, sizeof buf));
    assert_string_equal(buf, "exit 0");
    assert_false(hooks_describe_outcome(EXITED(3), false, 1000, buf, sizeof buf));
    assert_string_equal(buf, "exit 3");
    assert_false(hooks_describe_outcome(SIGNALED(9), false, 1000, buf, sizeof buf));
    assert_string_equal(buf, "signal 9");
    assert_false(hooks_describe_outcome(EXITED(0), true, 2500, buf, sizeof buf));
    assert_string_equal(buf, "timed out after 2500 ms");
}

static void merge_env_sets_and_replaces(void **s)
{
    (void)s;
    struct childenv env;
    char *const base[] = { "KEEP=1", "CATALINA_OPTS=-Dold", NULL };
    const char *text = "# from a hook\n\nFOO=bar\r\nCATALINA_OPTS=-Xmx512m -Dx=y\n  SPACED=a b \n";
    int bad = -1;
    assert_int_equal(childenv_init(&env, base), 0);
    assert_int_equal(hooks_merge_env_text(&env, text, strlen(text), &bad), 3);
    assert_string_equal(childenv_get(&env, "FOO"), "bar");
    assert_string_equal(childenv_get(&env, "CATALINA_OPTS"), "-Xmx512m -Dx=y");
    assert_string_equal(childenv_get(&env, "SPACED"), "a b ");
    assert_string_equal(childenv_get(&env, "KEEP"), "1");
    childenv_free(&env);
}

static void merge_env_bad_line_changes_nothing(void **s)
{
    (void)s;
    struct childenv env;
    char *const base[] = { "KEEP=1", NULL };
    int bad = 0;
    assert_int_equal(childenv_init(&env, base), 0);
    const char *no_equals = "FOO=bar\nnot a variable\nBAZ=1\n";
    assert_int_equal(hooks_merge_env_text(&env, no_equals, strlen(no_equals), &bad), -1);
    assert_int_equal(bad, 2);
    const char *bad_key = "A=1\nB=2\n\n1X=3\n";
    assert_int_equal(hooks_merge_env_text(&env, bad_key, strlen(bad_key), &bad), -1);
    assert_int_equal(bad, 4);
    const char *nul = "A=1\0\n";
    assert_int_equal(hooks_merge_env_text(&env, nul, 5, &bad), -1);
    assert_int_equal(bad, 1);
    assert_null(childenv_get(&env, "FOO"));
    assert_null(childenv_get(&env, "A"));
    assert_int_equal(env.count, 1);
    childenv_free(&env);
}

/* ---- discovery ------------------------------------------------------------- */

static void list_orders_and_skips(void **s)
{
    struct fixture *f = *s;
    char dir[256], path[512];
    struct hook_list list;

    add_hook(f, "pre-start", "20-b", "true");
    add_hook(f, "pre-start", "10-a", "true");
    add_hook(f, "pre-start", "9-z", "true");       /* byte order: "9" > "2" */
    add_hook(f, "pre-start", ".hidden", "true");
    add_hook(f, "pre-start", "A-upper", "true");   /* "A" < "1"? no: '1' 0x31 < 'A' 0x41 */
    snprintf(dir, sizeof dir, "%s/pre-start.d", f->root);
    snprintf(path, sizeof path, "%s/05-not-executable", dir);
    write_file(path, "#!/bin/sh\ntrue\n", 0644);
    snprintf(path, sizeof path, "%s/15-subdir", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/30-link", dir);
    assert_int_equal(symlink("10-a", path), 0);
    snprintf(path, sizeof path, "%s/40-dangling", dir);
    assert_int_equal(symlink("missing", path), 0);

    assert_int_equal(hooks_list(dir, &list), 0);
    assert_int_equal(list.count, 5);
    assert_string_equal(list.names[0], "10-a");
    assert_string_equal(list.names[1], "20-b");
    assert_string_equal(list.names[2], "30-link");
    assert_string_equal(list.names[3], "9-z");
    assert_string_equal(list.names[4], "A-upper");
    hooks_list_free(&list);
    assert_int_equal(list.count, 0);
}

static void list_missing_dir_is_empty(void **s)
{
    struct fixture *f = *s;
    char dir[256];
    struct hook_list list;
    snprintf(dir, sizeof dir, "%s/absent.d", f->root);
    assert_int_equal(hooks_list(dir, &list), 0);
    assert_int_equal(list.count, 0);
    hooks_list_free(&list);
}

static void list_unreadable_dir_fails(void **s)
{
    struct fixture *f = *s;
    char path[256];
    struct hook_list list;
    snprintf(path, sizeof path, "%s/file.d", f->root);
    write_file(path, "x", 0644);
    assert_int_equal(hooks_list(path, &list), -1);
    assert_int_equal(errno, ENOTDIR);
    assert_int_equal(list.count, 0);
}

/* ---- wait-tcp ------------------------------------------------------------- */

static int parse_args(const char *host, const char *port, const char *secs,
                      struct wait_tcp_args *a, char *err, size_t cap)
{
    char *argv[] = { "wait-tcp", (char *)host, (char *)port, (char *)secs, NULL };
    return wait_tcp_parse_args(4, argv, a, err, cap);
}

static void wait_tcp_args(void **s)
{
    (void)s;
    struct wait_tcp_args a;
    char err[160];
    assert_int_equal(parse_args("db.example", "3306", "120", &a, err, sizeof err), 0);
    assert_string_equal(a.host, "db.example");
    assert_string_equal(a.port, "3306");
    assert_int_equal(a.seconds, 120);
    assert_int_equal(parse_args("::1", "00080", "0", &a, err, sizeof err), 0);
    assert_string_equal(a.port, "80");
    assert_int_equal(a.seconds, 0);

    assert_int_equal(parse_args("", "3306", "1", &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "HOST"));
    const char *bad_ports[] = { "0", "65536", "", "33o6", "-1", "999999" };
    for (size_t i = 0; i < sizeof bad_ports / sizeof bad_ports[0]; i++) {
        assert_int_equal(parse_args("h", bad_ports[i], "1", &a, err, sizeof err), -1);
        assert_non_null(strstr(err, "PORT"));
    }
    const char *bad_secs[] = { "-1", "86401", "1.5", "", "ten" };
    for (size_t i = 0; i < sizeof bad_secs / sizeof bad_secs[0]; i++) {
        assert_int_equal(parse_args("h", "1", bad_secs[i], &a, err, sizeof err), -1);
        assert_non_null(strstr(err, "SECONDS"));
    }
    char *short_argv[] = { "wait-tcp", "h", "1", NULL };
    assert_int_equal(wait_tcp_parse_args(3, short_argv, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "usage"));
}

/* A listening socket on 127.0.0.1 with a kernel-chosen port. */
static int listen_loopback(char *port, size_t cap)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(port, cap, "%u", ntohs(sa.sin_port));
    return fd;
}

static void wait_tcp_reachable(void **s)
{
    (void)s;
    char port[8];
    int fd = listen_loopback(port, sizeof port);
    char *argv[] = { "wait-tcp", "127.0.0.1", port, "5", NULL };
    assert_int_equal(wait_tcp_main(4, argv), 0);
    char *by_name[] = { "wait-tcp", "localhost", port, "0", NULL };
    assert_int_equal(wait_tcp_main(4, by_name), 0);
    close(fd);
}

static void wait_tcp_unreachable(void **s)
{
    (void)s;
    char port[8];
    /* A port nobody listens on: bound, then closed. */
    close(listen_loopback(port, sizeof port));
    char *once[] = { "wait-tcp", "127.0.0.1", port, "0", NULL };
    assert_int_equal(wait_tcp_main(4, once), 1);
    char *retrying[] = { "wait-tcp", "127.0.0.1", port, "1", NULL };
    assert_int_equal(wait_tcp_main(4, retrying), 1);
    char *usage[] = { "wait-tcp", "127.0.0.1", "http", "1", NULL };
    assert_int_equal(wait_tcp_main(4, usage), 64);
}

/* ---- synchronous runner ---------------------------------------------------- */

static void sync_runs_in_order_with_phase_env(void **s)
{
    struct fixture *f = *s;
    char buf[512];
    f->state.licence.status = LS_VALID;
    add_hook(f, "post-stop", "20-second", "echo \"second $PI_AGENT_PHASE\" >> \"$OUT\"");
    add_hook(f, "post-stop", "10-first",
             "echo \"first $PI_AGENT_PHASE $PI_LICENCE_STATUS $PI_AGENT_HOOK_TIME_LIMIT_SECONDS "
             "${PI_AGENT_ENV_FILE:-noenvfile}\" >> \"$OUT\"");
    add_hook(f, "post-stop", ".20-hidden", "echo hidden >> \"$OUT\"");
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "post-stop", &f->env, 0, &f->state), 0);
    assert_string_equal(read_out(f, buf, sizeof buf),
                        "first post-stop valid 10 noenvfile\nsecond post-stop\n");
    assert_string_equal(f->state.hooks_failure, "");
}

static void sync_licence_status_unknown_without_state(void **s)
{
    struct fixture *f = *s;
    char buf[256];
    add_hook(f, "post-stop", "10", "echo \"$PI_LICENCE_STATUS ${PI_AGENT_CHILD_PID:-none}\" >> \"$OUT\"");
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "post-stop", &f->env, 0, NULL), 0);
    assert_string_equal(read_out(f, buf, sizeof buf), "unknown none\n");
}

static void sync_no_hooks_dir_is_fine(void **s)
{
    struct fixture *f = *s;
    snprintf(f->cfg.dir, sizeof f->cfg.dir, "%s/nothing-here", f->root);
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "pre-start", &f->env, 0, &f->state), 0);
    assert_string_equal(f->state.hooks_failure, "");
}

static void sync_prestart_env_file_feeds_tomcat_env(void **s)
{
    struct fixture *f = *s;
    char buf[1024], envfile[512];
    add_hook(f, "pre-start", "10-set",
             "echo \"$PI_AGENT_ENV_FILE\" > \"$OUT.envfile\"\n"
             "printf 'HEAP_FROM_HOOK=-Xmx700m\\n# comment\\nFOO=bar baz\\n' > \"$PI_AGENT_ENV_FILE\"");
    add_hook(f, "pre-start", "20-sees-earlier", "echo \"seen=$HEAP_FROM_HOOK\" >> \"$OUT\"");
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "pre-start", &f->env, 0, &f->state), 0);
    assert_string_equal(childenv_get(&f->env, "HEAP_FROM_HOOK"), "-Xmx700m");
    assert_string_equal(childenv_get(&f->env, "FOO"), "bar baz");
    assert_null(childenv_get(&f->env, "PI_AGENT_PHASE")); /* hook-only variables stay out */
    assert_null(childenv_get(&f->env, "PI_AGENT_ENV_FILE"));
    assert_string_equal(read_out(f, buf, sizeof buf), "seen=-Xmx700m\n");
    /* The private file is gone afterwards. */
    snprintf(buf, sizeof buf, "%s.envfile", f->out);
    FILE *fp = fopen(buf, "re");
    assert_non_null(fp);
    assert_non_null(fgets(envfile, sizeof envfile, fp));
    fclose(fp);
    envfile[strcspn(envfile, "\n")] = '\0';
    assert_true(strlen(envfile) > 0);
    assert_int_equal(access(envfile, F_OK), -1);
}

static void sync_prestart_bad_env_line_fails(void **s)
{
    struct fixture *f = *s;
    char buf[256];
    add_hook(f, "pre-start", "10-bad", "printf 'GOOD=1\\nthis is not a variable\\n' > \"$PI_AGENT_ENV_FILE\"");
    add_hook(f, "pre-start", "20-after", "echo after >> \"$OUT\"");
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "pre-start", &f->env, 0, &f->state), EXIT_HOOK_FAILED);
    assert_null(childenv_get(&f->env, "GOOD"));
    assert_string_equal(f->state.hooks_failure, "pre-start/10-bad: bad PI_AGENT_ENV_FILE line 2");
    assert_string_equal(read_out(f, buf, sizeof buf), "");
}

static void sync_prestart_oversized_env_file_fails(void **s)
{
    struct fixture *f = *s;
    add_hook(f, "pre-start", "10-big",
             "head -c 70000 /dev/zero | tr '\\0' 'a' > \"$PI_AGENT_ENV_FILE\"");
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "pre-start", &f->env, 0, &f->state), EXIT_HOOK_FAILED);
    assert_non_null(strstr(f->state.hooks_failure, "larger than 64 KiB"));
}

static void sync_prestart_env_file_replaced_by_a_fifo_fails(void **s)
{
    struct fixture *f = *s;
    add_hook(f, "pre-start", "10-fifo", "rm -f \"$PI_AGENT_ENV_FILE\" && mkfifo \"$PI_AGENT_ENV_FILE\"");
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "pre-start", &f->env, 0, &f->state), EXIT_HOOK_FAILED);
    assert_string_equal(f->state.hooks_failure,
                        "pre-start/10-fifo: PI_AGENT_ENV_FILE: not a regular file");
}

static void sync_prestart_failure_stops_start(void **s)
{
    struct fixture *f = *s;
    char buf[256];
    add_hook(f, "pre-start", "10-fails", "echo ran >> \"$OUT\"; echo FOO=1 > \"$PI_AGENT_ENV_FILE\"; exit 3");
    add_hook(f, "pre-start", "20-never", "echo never >> \"$OUT\"");
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "pre-start", &f->env, 0, &f->state), EXIT_HOOK_FAILED);
    assert_string_equal(read_out(f, buf, sizeof buf), "ran\n");
    assert_string_equal(f->state.hooks_failure, "pre-start/10-fails: exit 3");
    assert_null(childenv_get(&f->env, "FOO")); /* a failed hook's variables are dropped */
}

static void sync_prestart_warn_mode_goes_on(void **s)
{
    struct fixture *f = *s;
    char buf[256];
    f->cfg.warn_only = true;
    add_hook(f, "pre-start", "10-fails", "exit 3");
    add_hook(f, "pre-start", "20-runs", "echo runs >> \"$OUT\"");
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "pre-start", &f->env, 0, &f->state), 0);
    assert_string_equal(read_out(f, buf, sizeof buf), "runs\n");
    assert_string_equal(f->state.hooks_failure, "pre-start/10-fails: exit 3");
}

static void sync_other_phase_failure_is_recorded_not_fatal(void **s)
{
    struct fixture *f = *s;
    char buf[256];
    add_hook(f, "post-stop", "10-killed", "kill -9 $$");
    add_hook(f, "post-stop", "20-runs", "echo runs >> \"$OUT\"");
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "post-stop", &f->env, 0, &f->state), 0);
    assert_string_equal(read_out(f, buf, sizeof buf), "runs\n");
    assert_string_equal(f->state.hooks_failure, "post-stop/10-killed: signal 9");
}

static void sync_unexecutable_hook_fails(void **s)
{
    struct fixture *f = *s;
    char path[512];
    add_hook(f, "pre-start", "10-placeholder", "true");
    snprintf(path, sizeof path, "%s/pre-start.d/10-placeholder", f->root);
    write_file(path, "#!/nonexistent/interpreter\n", 0755);
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "pre-start", &f->env, 0, &f->state), EXIT_HOOK_FAILED);
    assert_string_equal(f->state.hooks_failure, "pre-start/10-placeholder: exit 127");
}

static void sync_unreadable_phase_dir(void **s)
{
    struct fixture *f = *s;
    char path[256];
    snprintf(path, sizeof path, "%s/pre-start.d", f->root);
    write_file(path, "not a directory", 0644);
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "pre-start", &f->env, 0, &f->state), EXIT_HOOK_FAILED);
    assert_non_null(strstr(f->state.hooks_failure, "pre-start/(directory)"));
    f->cfg.warn_only = true;
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "pre-start", &f->env, 0, &f->state), 0);
}

static void sync_timeout_kills_process_group(void **s)
{
    struct fixture *f = *s;
    char pidfile[256], buf[256];
    f->cfg.timeout_s = 1;
    add_hook(f, "pre-start", "10-hangs",
             "sleep 300 &\necho $! > \"$OUT.bg\"\necho $$ > \"$OUT.fg\"\nsleep 300");
    add_hook(f, "pre-start", "20-never", "echo never >> \"$OUT\"");
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "pre-start", &f->env, 0, &f->state), EXIT_HOOK_FAILED);
    assert_string_equal(f->state.hooks_failure, "pre-start/10-hangs: timed out after 1000 ms");
    snprintf(pidfile, sizeof pidfile, "%s.bg", f->out);
    assert_true(eventually_dead(read_pid_file(pidfile)));
    snprintf(pidfile, sizeof pidfile, "%s.fg", f->out);
    assert_true(eventually_dead(read_pid_file(pidfile)));
    assert_string_equal(read_out(f, buf, sizeof buf), "");
}

static void sync_leftovers_are_killed(void **s)
{
    struct fixture *f = *s;
    char pidfile[256];
    add_hook(f, "post-stop", "10-leaves", "sleep 300 &\necho $! > \"$OUT.bg\"\nexit 0");
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "post-stop", &f->env, 0, &f->state), 0);
    assert_string_equal(f->state.hooks_failure, "");
    snprintf(pidfile, sizeof pidfile, "%s.bg", f->out);
    assert_true(eventually_dead(read_pid_file(pidfile)));
}

static void sync_budget_caps_the_phase(void **s)
{
    struct fixture *f = *s;
    char buf[256];
    add_hook(f, "post-stop", "10-slow", "echo slow >> \"$OUT\"; sleep 300");
    add_hook(f, "post-stop", "20-skipped", "echo skipped >> \"$OUT\"");
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "post-stop", &f->env, 800, &f->state), 0);
    assert_string_equal(read_out(f, buf, sizeof buf), "slow\n");
    assert_string_equal(f->state.hooks_failure, "post-stop/20-skipped: skipped: phase out of time");
}

static void sync_pending_stop_signal_ends_phase(void **s)
{
    struct fixture *f = *s;
    char buf[256];
    sigset_t term, old;
    int sig;
    struct timespec zero = { 0, 0 };

    add_hook(f, "pre-start", "10-never", "echo never >> \"$OUT\"");
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    assert_int_equal(sigprocmask(SIG_BLOCK, &term, &old), 0);
    assert_int_equal(kill(getpid(), SIGTERM), 0);
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "pre-start", &f->env, 0, &f->state), 0);
    assert_string_equal(f->state.hooks_failure, "pre-start/10-never: skipped: stop requested");
    assert_string_equal(read_out(f, buf, sizeof buf), "");
    /* The signal is left pending for main. */
    sig = sigtimedwait(&term, NULL, &zero);
    assert_int_equal(sig, SIGTERM);
    assert_int_equal(sigprocmask(SIG_SETMASK, &old, NULL), 0);
}

static void sync_stop_signal_while_a_hook_runs_kills_it(void **s)
{
    struct fixture *f = *s;
    char buf[256];
    sigset_t term, old;
    struct timespec zero = { 0, 0 };

    add_hook(f, "pre-start", "10-hangs", "echo $$ > \"$OUT.fg\"\nkill -TERM $PPID\nsleep 300");
    add_hook(f, "pre-start", "20-never", "echo never >> \"$OUT\"");
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    assert_int_equal(sigprocmask(SIG_BLOCK, &term, &old), 0);
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "pre-start", &f->env, 0, &f->state), 0);
    assert_string_equal(f->state.hooks_failure, "pre-start/10-hangs: killed: stop requested");
    assert_string_equal(read_out(f, buf, sizeof buf), "");
    snprintf(buf, sizeof buf, "%s.fg", f->out);
    assert_true(eventually_dead(read_pid_file(buf)));
    assert_int_equal(sigtimedwait(&term, NULL, &zero), SIGTERM);
    assert_int_equal(sigprocmask(SIG_SETMASK, &old, NULL), 0);
}

static void sync_child_pid_passed(void **s)
{
    struct fixture *f = *s;
    char buf[256];
    f->state.child_pid = 4242;
    add_hook(f, "post-stop", "10", "echo \"$PI_AGENT_CHILD_PID\" >> \"$OUT\"");
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "post-stop", &f->env, 0, &f->state), 0);
    assert_string_equal(read_out(f, buf, sizeof buf), "4242\n");
}

/* The sync phases drive a loop of their own with SIGCHLD blocked for its
 * signalfd: the caller's mask comes back as it was, either way. */
static void sync_restores_the_callers_signal_mask(void **s)
{
    struct fixture *f = *s;
    char buf[64];
    sigset_t chld, before, after;

    add_hook(f, "post-stop", "10", "echo ran >> \"$OUT\"");
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    for (int blocked = 0; blocked < 2; blocked++) {
        assert_int_equal(sigprocmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &chld, &before), 0);
        assert_int_equal(sigprocmask(SIG_BLOCK, NULL, &before), 0);
        assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "post-stop", &f->env, 0, &f->state), 0);
        assert_int_equal(sigprocmask(SIG_BLOCK, NULL, &after), 0);
        assert_int_equal(sigismember(&after, SIGCHLD), blocked);
        assert_int_equal(sigismember(&after, SIGTERM), sigismember(&before, SIGTERM));
    }
    assert_string_equal(read_out(f, buf, sizeof buf), "ran\nran\n");
    assert_string_equal(f->state.hooks_failure, "");
    assert_null(f->hooks.active);
}

/* ---- asynchronous runner --------------------------------------------------- */

struct async_harness {
    struct loop *loop;
    int sigfd;
    int done_calls;
    bool in_call;          /* true while hooks_run_async has not returned */
    bool done_during_call;
    bool safety_fired;
};

static void on_sigchld(struct loop *loop, int fd, uint32_t events, void *ctx)
{
    struct signalfd_siginfo si;
    (void)loop;
    (void)events;
    (void)ctx;
    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si)
        reap_all();
}

static void on_done(void *ctx)
{
    struct async_harness *h = ctx;
    h->done_calls++;
    if (h->in_call)
        h->done_during_call = true;
    loop_stop(h->loop, 0);
}

static void on_safety(struct loop *loop, void *ctx)
{
    struct async_harness *h = ctx;
    h->safety_fired = true;
    loop_stop(loop, 1);
}

static void harness_start(struct async_harness *h)
{
    sigset_t chld;
    memset(h, 0, sizeof *h);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    assert_int_equal(sigprocmask(SIG_BLOCK, &chld, NULL), 0);
    h->sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
    assert_true(h->sigfd >= 0);
    h->loop = loop_new();
    assert_non_null(h->loop);
    assert_int_equal(loop_add_fd(h->loop, h->sigfd, EPOLLIN, on_sigchld, h), 0);
    /* The test fails instead of hanging if done never comes. */
    assert_true(loop_timer_add(h->loop, 60000, 0, on_safety, h) > 0);
}

static void harness_run(struct async_harness *h, struct fixture *f, const char *phase,
                        uint64_t budget_ms)
{
    if (!f->state.draining)
        f->state.child_running = true; /* as while Tomcat runs */
    h->in_call = true;
    assert_int_equal(hooks_run_async(&f->hooks, h->loop, &f->cfg, phase, f->env.vars, budget_ms, &f->state,
                                     on_done, h), 0);
    h->in_call = false;
    assert_int_equal(loop_run(h->loop), 0);
    assert_false(h->safety_fired);
    assert_int_equal(h->done_calls, 1);
    assert_false(h->done_during_call);
}

static void harness_end(struct async_harness *h)
{
    loop_free(h->loop);
    close(h->sigfd);
}

static void async_runs_in_order_and_records_failure(void **s)
{
    struct fixture *f = *s;
    struct async_harness h;
    char buf[512];
    f->state.child_pid = 777;
    add_hook(f, "pre-stop", "30-third", "echo third >> \"$OUT\"");
    add_hook(f, "pre-stop", "10-first",
             "echo \"first $PI_AGENT_PHASE $PI_AGENT_CHILD_PID ${PI_AGENT_ENV_FILE:-none}\" >> \"$OUT\"");
    add_hook(f, "pre-stop", "20-fails", "echo second >> \"$OUT\"; exit 4");
    harness_start(&h);
    harness_run(&h, f, "pre-stop", 0);
    harness_end(&h);
    assert_string_equal(read_out(f, buf, sizeof buf), "first pre-stop 777 none\nsecond\nthird\n");
    assert_string_equal(f->state.hooks_failure, "pre-stop/20-fails: exit 4");
}

static void async_no_hooks_still_calls_done_from_loop(void **s)
{
    struct fixture *f = *s;
    struct async_harness h;
    harness_start(&h);
    harness_run(&h, f, "post-ready", 0);
    harness_end(&h);
    assert_string_equal(f->state.hooks_failure, "");
}

static void async_timeout_kills_group_and_goes_on(void **s)
{
    struct fixture *f = *s;
    struct async_harness h;
    char buf[256], pidfile[256];
    f->cfg.timeout_s = 1;
    add_hook(f, "post-ready", "10-hangs", "sleep 300 &\necho $! > \"$OUT.bg\"\nsleep 300");
    add_hook(f, "post-ready", "20-after", "echo after >> \"$OUT\"");
    harness_start(&h);
    harness_run(&h, f, "post-ready", 0);
    harness_end(&h);
    assert_string_equal(read_out(f, buf, sizeof buf), "after\n");
    assert_string_equal(f->state.hooks_failure, "post-ready/10-hangs: timed out after 1000 ms");
    snprintf(pidfile, sizeof pidfile, "%s.bg", f->out);
    assert_true(eventually_dead(read_pid_file(pidfile)));
}

static void async_budget_ends_phase(void **s)
{
    struct fixture *f = *s;
    struct async_harness h;
    char buf[256];
    add_hook(f, "pre-stop", "10-slow", "echo $$ > \"$OUT.fg\"; sleep 300");
    add_hook(f, "pre-stop", "20-skipped", "echo skipped >> \"$OUT\"");
    harness_start(&h);
    harness_run(&h, f, "pre-stop", 700);
    harness_end(&h);
    /* Had the budget not ended the phase, the hook's own 10 s limit would
     * have, and 20-skipped would then have run. */
    assert_string_equal(read_out(f, buf, sizeof buf), "");
    assert_string_equal(f->state.hooks_failure, "pre-stop/20-skipped: skipped: phase out of time");
    snprintf(buf, sizeof buf, "%s.fg", f->out);
    assert_true(eventually_dead(read_pid_file(buf)));
}

static void on_stop_loop(struct loop *loop, void *ctx)
{
    (void)ctx;
    loop_stop(loop, 0);
}

static void async_phase_left_running_is_aborted_by_a_sync_phase(void **s)
{
    struct fixture *f = *s;
    struct async_harness h;
    char buf[256];
    add_hook(f, "post-ready", "10-hangs",
             "echo $$ > \"$OUT.tmp\" && mv \"$OUT.tmp\" \"$OUT.fg\"\nsleep 300");
    add_hook(f, "post-ready", "20-never", "echo never >> \"$OUT\"");
    add_hook(f, "post-stop", "10-after", "echo post-stop >> \"$OUT\"");
    harness_start(&h);
    f->state.child_running = true;
    assert_int_equal(hooks_run_async(&f->hooks, h.loop, &f->cfg, "post-ready", f->env.vars, 0, &f->state,
                                     on_done, &h), 0);
    /* The loop ends (Tomcat died, say) while the hook still runs. */
    snprintf(buf, sizeof buf, "%s.fg", f->out);
    for (int i = 0; i < 500 && access(buf, F_OK) != 0; i++)
        assert_true(loop_timer_add(h.loop, 10, 0, on_stop_loop, NULL) > 0 &&
                    loop_run(h.loop) == 0);
    pid_t hung = read_pid_file(buf);
    assert_int_equal(hooks_run_sync(&f->hooks, &f->cfg, "post-stop", &f->env, 0, &f->state), 0);
    assert_int_equal(h.done_calls, 0);
    assert_true(eventually_dead(hung));
    assert_string_equal(read_out(f, buf, sizeof buf), "post-stop\n");
    assert_string_equal(f->state.hooks_failure,
                        "post-ready/10-hangs: killed: the agent is stopping");
    hooks_abort_async(&f->hooks); /* nothing left: harmless */
    harness_end(&h);
}

static void async_post_ready_skipped_once_draining(void **s)
{
    struct fixture *f = *s;
    struct async_harness h;
    char buf[64];
    f->state.draining = true;
    add_hook(f, "post-ready", "10-ready", "echo ready >> \"$OUT\"");
    harness_start(&h);
    harness_run(&h, f, "post-ready", 0);
    harness_end(&h);
    assert_string_equal(read_out(f, buf, sizeof buf), "");
}

static void async_post_ready_skipped_without_tomcat(void **s)
{
    struct fixture *f = *s;
    struct async_harness h;
    char buf[64];
    add_hook(f, "post-ready", "10-ready", "echo ready >> \"$OUT\"");
    harness_start(&h);
    f->state.child_running = false;
    h.in_call = true;
    assert_int_equal(hooks_run_async(&f->hooks, h.loop, &f->cfg, "post-ready", f->env.vars, 0, &f->state,
                                     on_done, &h), 0);
    h.in_call = false;
    assert_int_equal(loop_run(h.loop), 0);
    assert_int_equal(h.done_calls, 1);
    assert_false(h.done_during_call);
    harness_end(&h);
    assert_string_equal(read_out(f, buf, sizeof buf), "");
}

static void async_unknown_phase_is_refused(void **s)
{
    struct fixture *f = *s;
    struct async_harness h;
    harness_start(&h);
    assert_int_equal(hooks_run_async(&f->hooks, h.loop, &f->cfg, "mid-flight", f->env.vars, 0, &f->state,
                                     on_done, &h), -1);
    assert_int_equal(h.done_calls, 0);
    harness_end(&h);
}

int main(void)
{
    log_setup(LOG_ERROR, LOG_FORMAT_JSON);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(config_defaults),
        cmocka_unit_test(config_values),
        cmocka_unit_test(config_errors_name_the_variable),
        cmocka_unit_test(phases),
        cmocka_unit_test(time_limits),
        cmocka_unit_test(outcomes),
        cmocka_unit_test(merge_env_sets_and_replaces),
        cmocka_unit_test(merge_env_bad_line_changes_nothing),
        cmocka_unit_test_setup_teardown(list_orders_and_skips, setup, teardown),
        cmocka_unit_test_setup_teardown(list_missing_dir_is_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(list_unreadable_dir_fails, setup, teardown),
        cmocka_unit_test(wait_tcp_args),
        cmocka_unit_test(wait_tcp_reachable),
        cmocka_unit_test(wait_tcp_unreachable),
        cmocka_unit_test_setup_teardown(sync_runs_in_order_with_phase_env, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_licence_status_unknown_without_state, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_no_hooks_dir_is_fine, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_restores_the_callers_signal_mask, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_prestart_env_file_feeds_tomcat_env, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_prestart_bad_env_line_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_prestart_oversized_env_file_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_prestart_env_file_replaced_by_a_fifo_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_prestart_failure_stops_start, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_prestart_warn_mode_goes_on, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_other_phase_failure_is_recorded_not_fatal, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_unexecutable_hook_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_unreadable_phase_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_timeout_kills_process_group, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_leftovers_are_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_budget_caps_the_phase, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_pending_stop_signal_ends_phase, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_stop_signal_while_a_hook_runs_kills_it, setup, teardown),
        cmocka_unit_test_setup_teardown(sync_child_pid_passed, setup, teardown),
        cmocka_unit_test_setup_teardown(async_runs_in_order_and_records_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(async_no_hooks_still_calls_done_from_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(async_timeout_kills_group_and_goes_on, setup, teardown),
        cmocka_unit_test_setup_teardown(async_budget_ends_phase, setup, teardown),
        cmocka_unit_test_setup_teardown(async_phase_left_running_is_aborted_by_a_sync_phase, setup, teardown),
        cmocka_unit_test_setup_teardown(async_post_ready_skipped_once_draining, setup, teardown),
        cmocka_unit_test_setup_teardown(async_post_ready_skipped_without_tomcat, setup, teardown),
        cmocka_unit_test_setup_teardown(async_unknown_phase_is_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
