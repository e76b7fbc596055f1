/* reap: waitpid(-1) for every exited child, dispatching the ones a module
 * asked about. Orphans re-parented to us are reaped and logged at debug. */
#include "reap.h"

#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "log.h"
#include "loop.h"

struct watch {
    pid_t pid;
    reap_cb cb;
    void *ctx;
};

static struct watch *watches;
static size_t nwatches, watches_cap;

int reap_watch(pid_t pid, reap_cb cb, void *ctx)
{
    if (nwatches == watches_cap) {
        size_t cap = watches_cap ? watches_cap * 2 : 8;
        struct watch *grown = realloc(watches, cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        watches = grown;
        watches_cap = cap;
    }
    watches[nwatches++] = (struct watch){ pid, cb, ctx };
    return 0;
}

void reap_unwatch(pid_t pid)
{
    for (size_t i = 0; i < nwatches; i++) {
        if (watches[i].pid == pid) {
            watches[i] = watches[--nwatches];
            return;
        }
    }
}

static void dispatch(pid_t pid, int status)
{
    for (size_t i = 0; i < nwatches; i++) {
        if (watches[i].pid == pid) {
            struct watch w = watches[i];
            watches[i] = watches[--nwatches];
            w.cb(pid, status, w.ctx);
            return;
        }
    }
    log_debug("reaped orphan", LF_INT("pid", pid), LF_INT("wait_status", status));
}

int reap_all(void)
{
    int count = 0;
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) {
            if (pid < 0 && errno == EINTR)
                continue;
            break;
        }
        count++;
        dispatch(pid, status);
    }
    return count;
}

struct waited {
    bool done;
    int status;
    reap_cb cb;   /* a watch that was there before reap_wait, restored after */
    void *ctx;
};

static void on_waited(pid_t pid, int status, void *ctx)
{
    struct waited *w = ctx;
    (void)pid;
    w->done = true;
    w->status = status;
}

int reap_wait(pid_t pid, int timeout_ms, int *wait_status)
{
    uint64_t deadline = loop_now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
    struct waited w = { false, 0, NULL, NULL };

    /* Watch pid for the duration, so that reap_all (which also collects the
     * orphans meanwhile) cannot reap it as a stranger. */
    for (size_t i = 0; i < nwatches; i++) {
        if (watches[i].pid == pid) {
            w.cb = watches[i].cb;
            w.ctx = watches[i].ctx;
            watches[i] = watches[--nwatches];
            break;
        }
    }
    if (reap_watch(pid, on_waited, &w) != 0)
        return -1;
    for (;;) {
        reap_all();
        if (w.done) {
            *wait_status = w.status;
            return 0;
        }
        uint64_t now = loop_now_ms();
        if (now >= deadline) {
            reap_unwatch(pid);
            if (w.cb)
                reap_watch(pid, w.cb, w.ctx);
            return -1;
        }
        /* Outside the event loop (start and stop phases) SIGCHLD is blocked
         * and queued for the signalfd: wait for it here instead. */
        uint64_t left = deadline - now;
        struct timespec ts = { (time_t)(left / 1000), (long)(left % 1000) * 1000000L };
        sigset_t chld, blocked;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, NULL, &blocked) == 0 && sigismember(&blocked, SIGCHLD) == 1) {
            (void)sigtimedwait(&chld, NULL, &ts); /* timeout or signal: the loop checks */
        } else {
            struct timespec step = { 0, 10 * 1000000L };
            nanosleep(&step, NULL);
        }
    }
}
