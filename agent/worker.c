/* worker: fork, run one function, report over a pipe, exit. The parent keeps
 * only the report; everything the work allocated (TLS contexts, directory
 * walks) disappears with the process. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "execprep.h"
#include "log.h"
#include "loop.h"
#include "reap.h"

#define WORKER_REPORT_MAX (4u << 20) /* a report larger than this is a bug */

int worker_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void worker_result_free(struct worker_result *res)
{
    free(res->data);
    res->data = NULL;
    res->len = 0;
}

/* Appends what is readable now; returns 1 at EOF, 0 for more later, -1 on error. */
static int drain_pipe(int fd, struct worker_result *res)
{
    for (;;) {
        char buf[8192];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0)
            return 1;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            return -1;
        }
        if (res->len + (size_t)n > WORKER_REPORT_MAX)
            return -1;
        char *grown = realloc(res->data, res->len + (size_t)n + 1);
        if (grown == NULL)
            return -1;
        memcpy(grown + res->len, buf, (size_t)n);
        res->data = grown;
        res->len += (size_t)n;
        res->data[res->len] = '\0';
    }
}

static void set_status(struct worker_result *res, int status)
{
    if (WIFEXITED(status)) {
        res->exited = 1;
        res->exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        res->signal = WTERMSIG(status);
    }
}

static pid_t spawn(const char *name, worker_fn fn, void *arg, int *read_fd)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        log_error("cannot create worker pipe", LF_STR("worker", name), LF_STR("error", strerror(errno)));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        log_error("cannot fork worker", LF_STR("worker", name), LF_STR("error", strerror(errno)));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        /* Only fds 0-2 and the report pipe: a copy of the agent's health
         * sockets held here would keep a connection PID 1 has closed open
         * (no FIN, the client never sees the end) for as long as the work runs. */
        execprep_close_fds(fds[1]);
        /* The worker must die from SIGTERM/SIGKILL like any process, and must
         * not read the agent's signalfd queue. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        /* Workers hold secrets (the licence, the ALM's answer, the database
         * settings in the environment): no core file, and no ptrace or
         * /proc/PID/mem by another user of the same uid. */
        (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        struct rlimit no_core = { 0, 0 };
        (void)setrlimit(RLIMIT_CORE, &no_core);
        int code = fn(arg, fds[1]);
        _exit(code);
    }
    close(fds[1]);
    *read_fd = fds[0];
    return pid;
}

int worker_run(const char *name, worker_fn fn, void *arg, int timeout_ms,
               struct worker_result *out)
{
    int fd, status;
    memset(out, 0, sizeof *out);
    pid_t pid = spawn(name, fn, arg, &fd);
    if (pid < 0)
        return -1;
    /* Non-blocking, so that a report written in pieces cannot hold this
     * wait past its time limit or a stop request. */
    if (fcntl(fd, F_SETFL, O_NONBLOCK) != 0)
        log_warn("cannot make the worker pipe non-blocking", LF_STR("worker", name),
                 LF_STR("error", strerror(errno)));

    /* A stop request must not wait for a slow worker (an ALM that does not
     * answer, a seed lock held elsewhere): ECS kills the task when its stop
     * timeout runs out. Reading nothing from this signalfd leaves the signal
     * pending for main. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    int stopfd = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);

    uint64_t deadline = loop_now_ms() + (uint64_t)timeout_ms;
    int eof = 0;
    while (!eof) {
        uint64_t now = loop_now_ms();
        if (now >= deadline)
            break;
        struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = stopfd, .events = POLLIN } };
        int n = poll(p, stopfd >= 0 ? 2 : 1, (int)(deadline - now));
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && p[0].revents) {
            int r = drain_pipe(fd, out);
            if (r != 0)
                eof = 1;
        }
        if (n > 0 && stopfd >= 0 && p[1].revents) {
            out->interrupted = 1;
            break;
        }
    }
    close(fd);
    if (stopfd >= 0)
        close(stopfd);
    if (!eof) {
        kill(pid, SIGKILL);
        if (out->interrupted) {
            log_info("stop requested: worker ended", LF_STR("worker", name));
        } else {
            out->timed_out = 1;
            log_warn("worker overran its time limit and was killed", LF_STR("worker", name),
                     LF_INT("timeout_ms", timeout_ms));
        }
    }
    /* After EOF the process is exiting; give it a moment, then insist. */
    if (reap_wait(pid, eof ? 5000 : 1000, &status) != 0) {
        kill(pid, SIGKILL);
        if (reap_wait(pid, 5000, &status) != 0)
            return 0;
    }
    set_status(out, status);
    if (!out->exited && !out->interrupted && !out->timed_out)
        log_error("worker crashed", LF_STR("worker", name), LF_INT("signal", out->signal));
    return 0;
}

struct async_worker {
    struct loop *loop;
    char name[32];
    pid_t pid;
    int fd;
    long timer;
    int eof, reaped;
    worker_done_cb done;
    void *ctx;
    struct worker_result res;
    struct async_worker *next_running;
};

/* The workers running in a loop are listed in the loop's own slot
 * (loop_workers), so that what PID 1 holds stays reachable from its handle. */
bool worker_owns(const struct loop *loop, pid_t pid)
{
    for (const struct async_worker *w = *loop_workers((struct loop *)loop); w != NULL;
         w = w->next_running)
        if (w->pid == pid)
            return true;
    return false;
}

static void forget_running(struct async_worker *w)
{
    for (struct async_worker **p = loop_workers(w->loop); *p != NULL; p = &(*p)->next_running) {
        if (*p == w) {
            *p = w->next_running;
            return;
        }
    }
}

static void async_finish_if_done(struct async_worker *w)
{
    if (!w->eof || !w->reaped)
        return;
    if (w->timer > 0)
        loop_timer_cancel(w->loop, w->timer);
    if (!w->res.exited && !w->res.timed_out)
        log_error("worker crashed", LF_STR("worker", w->name), LF_INT("signal", w->res.signal));
    forget_running(w);
    w->done(w->loop, &w->res, w->ctx);
    worker_result_free(&w->res);
    free(w);
}

static void async_close_pipe(struct async_worker *w)
{
    loop_del_fd(w->loop, w->fd);
    close(w->fd);
    w->fd = -1;
    w->eof = 1;
}

static void async_on_pipe(struct loop *loop, int fd, uint32_t events, void *ctx)
{
    struct async_worker *w = ctx;
    (void)loop;
    (void)fd;
    (void)events;
    if (drain_pipe(w->fd, &w->res) != 0) {
        async_close_pipe(w);
        async_finish_if_done(w);
    }
}

static void async_on_exit(pid_t pid, int status, void *ctx)
{
    struct async_worker *w = ctx;
    (void)pid;
    set_status(&w->res, status);
    w->reaped = 1;
    /* The pipe may still hold the tail of the report. */
    if (!w->eof) {
        drain_pipe(w->fd, &w->res);
        async_close_pipe(w);
    }
    async_finish_if_done(w);
}

static void async_on_timeout(struct loop *loop, void *ctx)
{
    struct async_worker *w = ctx;
    (void)loop;
    w->timer = 0;
    w->res.timed_out = 1;
    log_warn("worker overran its time limit and was killed", LF_STR("worker", w->name));
    kill(w->pid, SIGKILL);
}

pid_t worker_start(struct loop *loop, const char *name, worker_fn fn, void *arg,
                   int timeout_ms, worker_done_cb done, void *ctx)
{
    struct async_worker *w = calloc(1, sizeof *w);
    if (w == NULL)
        return -1;
    w->loop = loop;
    snprintf(w->name, sizeof w->name, "%s", name);
    w->done = done;
    w->ctx = ctx;
    w->pid = spawn(name, fn, arg, &w->fd);
    if (w->pid < 0) {
        free(w);
        return -1;
    }
    if (fcntl(w->fd, F_SETFL, O_NONBLOCK) != 0 ||
        loop_add_fd(loop, w->fd, EPOLLIN, async_on_pipe, w) != 0 ||
        reap_watch(w->pid, async_on_exit, w) != 0) {
        log_error("cannot watch worker", LF_STR("worker", name), LF_STR("error", strerror(errno)));
        kill(w->pid, SIGKILL);
        loop_del_fd(loop, w->fd);
        close(w->fd);
        /* reaped later as an orphan */
        free(w);
        return -1;
    }
    w->timer = loop_timer_add(loop, (uint64_t)timeout_ms, 0, async_on_timeout, w);
    w->next_running = *loop_workers(loop);
    *loop_workers(loop) = w;
    return w->pid;
}
