/* worker: runs risky or heavy work (TLS, licence parsing, EFS walks) in a
 * short-lived forked process that reports back over a pipe, so that a crash
 * there cannot take PID 1 down and its memory is returned when it exits. */
#ifndef PI_WORKER_H
#define PI_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct loop;

/* Runs in the forked process. Writes its report to out_fd (worker_write_all
 * helps); its return value becomes the process's exit code. */
typedef int (*worker_fn)(void *arg, int out_fd);

struct worker_result {
    int exited;        /* 1 when the process exited normally */
    int exit_code;     /* exit code, when exited */
    int signal;        /* terminating signal, or 0 */
    int timed_out;     /* killed because it overran its time limit */
    int interrupted;   /* worker_run only: killed because SIGTERM/SIGINT arrived */
    char *data;        /* what it wrote (malloc'd, NUL-terminated), may be NULL */
    size_t len;
};

/* Before the loop runs: fork, collect the report, reap. A SIGTERM or SIGINT
 * that arrives meanwhile (blocked, waiting for the loop's signalfd) ends the
 * worker at once and is left pending for main to act on. Returns 0 when the
 * worker ran (whatever it reported), -1 when it could not be started. */
int worker_run(const char *name, worker_fn fn, void *arg, int timeout_ms,
               struct worker_result *out);

/* Inside the loop: done is called once, with the report, after the process
 * has exited and its pipe is drained. Returns the worker's pid or -1. */
typedef void (*worker_done_cb)(struct loop *loop, const struct worker_result *res, void *ctx);
pid_t worker_start(struct loop *loop, const char *name, worker_fn fn, void *arg,
                   int timeout_ms, worker_done_cb done, void *ctx);

/* True while pid is a worker started with worker_start on loop that has not
 * been reported yet: the child's clean-up leaves such processes alone. */
bool worker_owns(const struct loop *loop, pid_t pid);

void worker_result_free(struct worker_result *res);
/* write(2) until everything is written; -1 on error. */
int worker_write_all(int fd, const void *buf, size_t len);

#endif
