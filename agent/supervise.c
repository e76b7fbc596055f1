/* supervise: one child, in its own process group, started clean and stopped
 * within a bounded time. The shape follows tini: forward, reap, propagate. */
#include "supervise.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "execprep.h"
#include "log.h"
#include "loop.h"
#include "reap.h"
#include "runas.h"
#include "state.h"
#include "worker.h"

#define RESTART_RESET_AFTER_MS 60000u /* a child that ran this long starts a new backoff */

enum phase { IDLE, RUNNING, CLEANUP, GONE };

struct supervisor {
    struct loop *loop;
    const struct agent_config *cfg;
    struct agent_state *state;
    supervise_exit_cb on_exit;
    void *ctx;
    char *const *envp;

    enum phase phase;
    pid_t pid;             /* the child, 0 when none */
    pid_t pgid;            /* its process group, kept for clean-up after it exited */
    int pidfd;
    uint64_t started_ms;
    bool stop_requested;
    uint64_t stop_deadline_ms;  /* when SIGKILL is due, 0 when no stop runs */
    long kill_timer;
    bool grace_over;       /* the kill timer fired: whatever is left is killed on sight */
    long restart_timer;
    unsigned failures;     /* consecutive failed runs, for the backoff */
    int exit_status;       /* what pi-agent will exit with */
    bool started;          /* a child was started at all */
    int wait_status;       /* the last child's wait status */
    bool child_killed;     /* the kill timer found the child still running */
};

int exit_status_from_wait(int wait_status)
{
    if (WIFEXITED(wait_status))
        return WEXITSTATUS(wait_status);
    if (WIFSIGNALED(wait_status))
        return 128 + WTERMSIG(wait_status);
    return 1;
}

unsigned restart_backoff_ms(unsigned failures)
{
    unsigned ms = 1000;
    for (unsigned i = 1; i < failures && ms < 60000; i++)
        ms *= 2;
    return ms > 60000 ? 60000 : ms;
}

/* ---- descendants, found through /proc ---------------------------------- */

struct proc_entry {
    pid_t pid, ppid;
};

/* Reads every process's parent; the caller frees *out. */
static int read_process_table(struct proc_entry **out, size_t *count)
{
    DIR *d = opendir("/proc");
    size_t n = 0, cap = 256;
    struct proc_entry *table = malloc(cap * sizeof *table);
    struct dirent *de;

    *out = NULL;
    *count = 0;
    if (d == NULL || table == NULL) {
        if (d)
            closedir(d);
        free(table);
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        char path[64], buf[512];
        pid_t pid = (pid_t)atoi(de->d_name);
        if (pid <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t len = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (len <= 0)
            continue;
        buf[len] = '\0';
        /* "pid (comm) S ppid ...": comm may hold spaces and parentheses. */
        char *rparen = strrchr(buf, ')');
        int ppid;
        char st;
        if (rparen == NULL || sscanf(rparen + 1, " %c %d", &st, &ppid) != 2)
            continue;
        if (n == cap) {
            struct proc_entry *grown = realloc(table, cap * 2 * sizeof *grown);
            if (grown == NULL)
                break;
            table = grown;
            cap *= 2;
        }
        table[n++] = (struct proc_entry){ pid, (pid_t)ppid };
    }
    closedir(d);
    *out = table;
    *count = n;
    return 0;
}

static bool is_descendant(const struct proc_entry *t, size_t n, pid_t pid, pid_t ancestor)
{
    for (int depth = 0; depth < 64 && pid > 1; depth++) {
        pid_t parent = 0;
        for (size_t i = 0; i < n; i++)
            if (t[i].pid == pid) {
                parent = t[i].ppid;
                break;
            }
        if (parent == ancestor)
            return true;
        if (parent == 0)
            return false;
        pid = parent;
    }
    return false;
}

/* True when pid is one of the agent's own workers (worker_start) or runs
 * under one: the child's clean-up is about what the child left behind. */
static bool under_worker(const struct loop *loop, const struct proc_entry *t, size_t n, pid_t pid,
                         pid_t self)
{
    for (int depth = 0; depth < 64 && pid > 1 && pid != self; depth++) {
        if (worker_owns(loop, pid))
            return true;
        pid_t parent = 0;
        for (size_t i = 0; i < n; i++)
            if (t[i].pid == pid) {
                parent = t[i].ppid;
                break;
            }
        pid = parent;
    }
    return false;
}

/* Signals every live descendant (zombies included: they are harmless, and
 * reaped right after), the agent's running workers apart when spare_workers.
 * Returns how many there were. */
static int signal_descendants_(int sig, pid_t pgid, const struct loop *spare_workers_of)
{
    struct proc_entry *t;
    size_t n;
    int count = 0;
    pid_t self = getpid();

    if (pgid > 0 && sig != 0)
        kill(-pgid, sig);
    /* No child, no descendant: as PID 1 or a subreaper every orphan below us
     * is re-parented to us. Spares the walk of /proc, costly on a busy host. */
    siginfo_t info;
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 && errno == ECHILD)
        return 0;
    if (read_process_table(&t, &n) != 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (t[i].pid == self || !is_descendant(t, n, t[i].pid, self) ||
            (spare_workers_of && under_worker(spare_workers_of, t, n, t[i].pid, self)))
            continue;
        count++;
        if (sig != 0)
            kill(t[i].pid, sig);
    }
    free(t);
    return count;
}

/* The child's clean-up: an EFS scan or a licence refresh running when Tomcat
 * exits (or restarts) is not something it left behind. */
static int signal_descendants(const struct supervisor *sv, int sig, pid_t pgid)
{
    return signal_descendants_(sig, pgid, sv->loop);
}

int kill_descendants(pid_t pgid)
{
    return signal_descendants_(SIGKILL, pgid, NULL);
}

/* ---- the child ---------------------------------------------------------- */

/* Runs in the forked child: never returns. Reports an exec failure's errno
 * over err_fd (close-on-exec, so a successful exec closes it silently). */
static void exec_child(const struct agent_config *cfg, char *const *envp, int err_fd)
{
    int stage_errno;

    setpgid(0, 0);
    if (isatty(STDIN_FILENO)) {
        /* Give the terminal to the child's group, or it cannot read it. */
        signal(SIGTTOU, SIG_IGN);
        tcsetpgrp(STDIN_FILENO, getpid());
    }
    execprep_reset_signals();
    execprep_close_fds(err_fd); /* err_fd is close-on-exec: exec closes it */
    if (runas_drop(&cfg->run_as) != 0) {
        stage_errno = errno;
        int msg[2] = { 1, stage_errno };
        (void)!write(err_fd, msg, sizeof msg);
        _exit(126);
    }
    execvpe(cfg->command[0], cfg->command, envp);
    stage_errno = errno;
    int msg[2] = { 0, stage_errno };
    (void)!write(err_fd, msg, sizeof msg);
    _exit(stage_errno == ENOENT || stage_errno == ENOTDIR ? 127 : 126);
}

static void child_exited(pid_t pid, int status, void *ctx);
static void finish_cleanup(struct supervisor *sv);

static void on_pidfd(struct loop *loop, int fd, uint32_t events, void *ctx)
{
    (void)loop;
    (void)fd;
    (void)events;
    (void)ctx;
    reap_all(); /* dispatches child_exited */
}

static int pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

int supervise_start(struct supervisor *sv, char *const *envp)
{
    int errpipe[2];
    sv->envp = envp;
    if (pipe2(errpipe, O_CLOEXEC) != 0) {
        log_error("cannot start the child: pipe failed", LF_STR("error", strerror(errno)));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        log_error("cannot start the child: fork failed", LF_STR("error", strerror(errno)));
        close(errpipe[0]);
        close(errpipe[1]);
        return -1;
    }
    if (pid == 0) {
        close(errpipe[0]);
        exec_child(sv->cfg, envp, errpipe[1]);
    }
    close(errpipe[1]);
    setpgid(pid, pid); /* also in the child: whichever runs first wins the race */

    sv->pid = pid;
    sv->pgid = pid;
    sv->grace_over = false;
    sv->phase = RUNNING;
    sv->started_ms = loop_now_ms();
    sv->started = true;
    sv->child_killed = false;
    sv->state->child_started_ms = sv->started_ms;
    sv->state->child_pid = pid;
    sv->state->child_running = true;
    state_changed(sv->state);
    if (reap_watch(pid, child_exited, sv) != 0)
        log_error("cannot watch the child", LF_STR("error", strerror(errno)));

    /* Blocks only until exec succeeds or fails: both are immediate. */
    int msg[2];
    ssize_t n;
    do
        n = read(errpipe[0], msg, sizeof msg);
    while (n < 0 && errno == EINTR);
    close(errpipe[0]);
    if (n == (ssize_t)sizeof msg) {
        if (msg[0] == 1)
            log_error("cannot switch to PI_AGENT_RUN_AS user", LF_STR("user", sv->cfg->run_as.user),
                      LF_STR("error", strerror(msg[1])));
        else
            log_error(msg[1] == ENOENT ? "command not found" : "command cannot be executed",
                      LF_STR("command", sv->cfg->command[0]), LF_STR("error", strerror(msg[1])));
        /* Its exit (126/127) arrives through SIGCHLD like any other. */
    } else {
        log_info("child started", LF_INT("pid", pid), LF_STR("command", sv->cfg->command[0]),
                 LF_INT("restarts", sv->state->child_restarts));
    }

    sv->pidfd = pidfd_open_(pid);
    if (sv->pidfd >= 0) {
        fcntl(sv->pidfd, F_SETFD, FD_CLOEXEC);
        if (loop_add_fd(sv->loop, sv->pidfd, EPOLLIN, on_pidfd, sv) != 0) {
            close(sv->pidfd);
            sv->pidfd = -1;
        }
    }
    return 0;
}

static void close_pidfd(struct supervisor *sv)
{
    if (sv->pidfd >= 0) {
        loop_del_fd(sv->loop, sv->pidfd);
        close(sv->pidfd);
        sv->pidfd = -1;
    }
}

static void on_kill_timer(struct loop *loop, void *ctx)
{
    struct supervisor *sv = ctx;
    (void)loop;
    sv->kill_timer = 0;
    sv->grace_over = true;
    if (sv->phase == RUNNING) {
        sv->child_killed = true;
        log_warn("grace period over: killing the child's process group",
                 LF_INT("pid", sv->pid), LF_INT("grace_s", sv->cfg->stop_grace_s));
    }
    int n = signal_descendants(sv, SIGKILL, sv->pgid);
    if (n > 0)
        log_warn("killed processes still alive after the grace", LF_INT("count", n));
    /* Their exits arrive as SIGCHLD; clean-up finishes when none is left. */
    if (sv->phase == CLEANUP)
        finish_cleanup(sv);
}

static void arm_kill_timer(struct supervisor *sv, uint64_t deadline_ms)
{
    uint64_t now = loop_now_ms();
    if (sv->kill_timer > 0)
        return; /* a second stop does not restart the wait */
    sv->stop_deadline_ms = deadline_ms;
    sv->kill_timer = loop_timer_add(sv->loop, deadline_ms > now ? deadline_ms - now : 0, 0,
                                    on_kill_timer, sv);
}

void supervise_stop(struct supervisor *sv, unsigned grace_ms)
{
    if (sv->restart_timer > 0) {
        loop_timer_cancel(sv->loop, sv->restart_timer);
        sv->restart_timer = 0;
    }
    if (sv->stop_requested) {
        log_info("stop already in progress", LF_INT("kill_in_ms",
                 sv->stop_deadline_ms > loop_now_ms() ? (long long)(sv->stop_deadline_ms - loop_now_ms()) : 0));
        return;
    }
    sv->stop_requested = true;
    sv->state->stopping = true;
    state_changed(sv->state);
    if (grace_ms == 0)
        grace_ms = sv->cfg->stop_grace_s * 1000u;
    if (sv->phase == RUNNING) {
        log_info("stopping the child", LF_INT("pid", sv->pid), LF_STR("signal", "SIGTERM"),
                 LF_INT("grace_ms", grace_ms));
        kill(sv->pid, SIGTERM);
        arm_kill_timer(sv, loop_now_ms() + grace_ms);
    } else if (sv->phase == IDLE) {
        /* Waiting for a restart (or never started): nothing to stop. */
        sv->phase = GONE;
        sv->on_exit(sv, sv->exit_status, sv->ctx);
    }
}

void supervise_forward(struct supervisor *sv, int sig)
{
    if (sv->phase != RUNNING)
        return;
    log_debug("forwarding signal", LF_INT("signal", sig), LF_INT("pid", sv->pid));
    if (kill(sv->pid, sig) != 0)
        log_warn("cannot forward signal", LF_INT("signal", sig), LF_STR("error", strerror(errno)));
}

void supervise_get_outcome(const struct supervisor *sv, struct supervise_outcome *out)
{
    out->started = sv->started;
    out->wait_status = sv->wait_status;
    out->killed_after_grace = sv->child_killed;
}

bool supervise_child_running(const struct supervisor *sv)
{
    return sv->phase == RUNNING;
}

static void on_restart_timer(struct loop *loop, void *ctx)
{
    struct supervisor *sv = ctx;
    (void)loop;
    sv->restart_timer = 0;
    sv->state->child_restarts++;
    if (supervise_start(sv, sv->envp) != 0) {
        sv->phase = GONE;
        sv->on_exit(sv, 1, sv->ctx);
    }
}

/* Called on every SIGCHLD while cleaning up: done once no descendant is left. */
static void finish_cleanup(struct supervisor *sv)
{
    /* After the grace, a process still there was not killed because it was
     * not seen (forked after /proc was read, or nested too deep until its
     * parents died and it was re-parented to us): kill it now, or the agent
     * would wait for it for ever. */
    int left = signal_descendants(sv, sv->grace_over ? SIGKILL : 0, 0);
    if (left > 0)
        return;
    if (sv->kill_timer > 0) {
        loop_timer_cancel(sv->loop, sv->kill_timer);
        sv->kill_timer = 0;
    }
    sv->pgid = 0;

    bool failed = sv->exit_status != 0;
    bool runnable = sv->exit_status != 126 && sv->exit_status != 127;
    /* Once a stop was asked for (draining, pre-stop hooks) the task is going
     * away: a child that dies meanwhile is not started again. */
    bool stopping = sv->stop_requested || sv->state->draining;
    if (!stopping && failed && runnable && sv->cfg->restart == RESTART_ON_FAILURE &&
        sv->state->child_restarts < sv->cfg->max_restarts) {
        unsigned delay = restart_backoff_ms(sv->failures);
        log_warn("restarting the child", LF_INT("exit_status", sv->exit_status),
                 LF_INT("in_ms", delay), LF_INT("restart", sv->state->child_restarts + 1),
                 LF_INT("max_restarts", sv->cfg->max_restarts));
        sv->phase = IDLE;
        sv->restart_timer = loop_timer_add(sv->loop, delay, 0, on_restart_timer, sv);
        return;
    }
    sv->phase = GONE;
    sv->on_exit(sv, sv->exit_status, sv->ctx);
}

/* The supervisor hears of every reaped process while cleaning up. */
static void cleanup_on_any_exit(struct supervisor *sv)
{
    if (sv->phase == CLEANUP)
        finish_cleanup(sv);
}

void supervise_note_reaped(struct supervisor *sv)
{
    if (sv)
        cleanup_on_any_exit(sv);
}

static void child_exited(pid_t pid, int status, void *ctx)
{
    struct supervisor *sv = ctx;
    uint64_t ran = loop_now_ms() - sv->started_ms;

    close_pidfd(sv);
    sv->pid = 0;
    sv->wait_status = status;
    sv->exit_status = exit_status_from_wait(status);
    sv->state->child_pid = 0;
    sv->state->child_running = false;
    state_changed(sv->state);
    if (WIFSIGNALED(status))
        log_info("child exited", LF_INT("pid", pid), LF_INT("signal", WTERMSIG(status)),
                 LF_INT("exit_status", sv->exit_status), LF_INT("ran_ms", ran));
    else
        log_info("child exited", LF_INT("pid", pid), LF_INT("exit_status", sv->exit_status),
                 LF_INT("ran_ms", ran));
    if (sv->exit_status == 0)
        sv->failures = 0;
    else
        sv->failures = ran < RESTART_RESET_AFTER_MS ? sv->failures + 1 : 1;

    sv->phase = CLEANUP;
    int left = signal_descendants(sv, SIGTERM, sv->pgid);
    if (left > 0) {
        log_info("terminating processes the child left behind", LF_INT("count", left));
        arm_kill_timer(sv, sv->stop_requested ? sv->stop_deadline_ms
                                              : loop_now_ms() + sv->cfg->stop_grace_s * 1000u);
    }
    finish_cleanup(sv);
}

struct supervisor *supervise_new(struct loop *loop, const struct agent_config *cfg,
                                 struct agent_state *state, supervise_exit_cb on_exit,
                                 void *ctx)
{
    struct supervisor *sv = calloc(1, sizeof *sv);
    if (sv == NULL)
        return NULL;
    sv->loop = loop;
    sv->cfg = cfg;
    sv->state = state;
    sv->on_exit = on_exit;
    sv->ctx = ctx;
    sv->pidfd = -1;
    sv->phase = IDLE;
    return sv;
}

void supervise_free(struct supervisor *sv)
{
    if (sv == NULL)
        return;
    close_pidfd(sv);
    if (sv->kill_timer > 0)
        loop_timer_cancel(sv->loop, sv->kill_timer);
    if (sv->restart_timer > 0)
        loop_timer_cancel(sv->loop, sv->restart_timer);
    free(sv);
}
