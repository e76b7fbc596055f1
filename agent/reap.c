/* reap: waitpid(-1) for every exited child, dispatching the ones a module
 * asked about. Orphans re-parented to us are reaped and logged at debug. */
#include "reap.h"

#include <errno.h>
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

int reap_wait(pid_t pid, int timeout_ms, int *wait_status)
{
    uint64_t deadline = loop_now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
    for (;;) {
        int status;
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid) {
            reap_unwatch(pid);
            *wait_status = status;
            reap_all(); /* orphans that exited meanwhile */
            return 0;
        }
        if (got < 0 && errno != EINTR)
            return -1;
        reap_all();
        uint64_t now = loop_now_ms();
        if (now >= deadline)
            return -1;
        /* Outside the event loop (start and stop phases) SIGCHLD is blocked
         * and queued for the signalfd: wait for it here instead. */
        uint64_t left = deadline - now;
        struct timespec ts = { (time_t)(left / 1000), (long)(left % 1000) * 1000000L };
        sigset_t chld, blocked;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, NULL, &blocked) == 0 && sigismember(&blocked, SIGCHLD) == 1) {
            if (sigtimedwait(&chld, NULL, &ts) < 0 && errno != EAGAIN && errno != EINTR)
                return -1;
        } else {
            struct timespec step = { 0, 10 * 1000000L };
            nanosleep(&step, NULL);
        }
    }
}
