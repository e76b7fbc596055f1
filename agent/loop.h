/* loop: the agent's single event loop. epoll watches file descriptors; one
 * timerfd serves every timer (armed for the earliest deadline); signals reach
 * the loop as a signalfd registered by main. Callbacks run one at a time and
 * must never block: anything slow belongs in a worker (worker.h). */
#ifndef PI_LOOP_H
#define PI_LOOP_H

#include <stdint.h>
#include <sys/epoll.h>

struct loop;

typedef void (*loop_fd_cb)(struct loop *loop, int fd, uint32_t events, void *ctx);
typedef void (*loop_timer_cb)(struct loop *loop, void *ctx);

struct loop *loop_new(void);
void loop_free(struct loop *loop);

/* events: EPOLLIN, EPOLLOUT, ... One callback per fd. */
int loop_add_fd(struct loop *loop, int fd, uint32_t events, loop_fd_cb cb, void *ctx);
int loop_mod_fd(struct loop *loop, int fd, uint32_t events);
/* Removes the fd (does not close it). Safe to call from inside its callback. */
int loop_del_fd(struct loop *loop, int fd);

/* A timer firing after delay_ms, then every interval_ms (0 = once).
 * Returns an id > 0, or -1. A one-shot timer is forgotten once it fired. */
long loop_timer_add(struct loop *loop, uint64_t delay_ms, uint64_t interval_ms,
                    loop_timer_cb cb, void *ctx);
/* Cancelling an unknown or fired id is harmless. */
void loop_timer_cancel(struct loop *loop, long id);

/* Runs until loop_stop; returns the code given to loop_stop, -1 on error. */
int loop_run(struct loop *loop);
void loop_stop(struct loop *loop, int code);

/* CLOCK_MONOTONIC milliseconds and CLOCK_REALTIME milliseconds. */
uint64_t loop_now_ms(void);

/* The head of the list of workers running in this loop: worker.c's own
 * bookkeeping (worker_start, worker_owns), kept in the loop's handle rather
 * than in a process-wide variable. NULL-headed when none runs. */
struct async_worker;
struct async_worker **loop_workers(struct loop *loop);
uint64_t wall_now_ms(void);

#endif
