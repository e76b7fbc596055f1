/* loop: epoll for descriptors, one timerfd for all timers. Timers are few
 * (probe, rescans, drain, grace, EMF, hooks), so a small array scanned for
 * the earliest deadline is simpler than a heap and just as fast. */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

struct fd_slot {
    loop_fd_cb cb;
    void *ctx;
    unsigned generation; /* detects a slot reused inside one epoll batch */
};

struct timer {
    long id;
    uint64_t due_ms;
    uint64_t interval_ms;
    loop_timer_cb cb;
    void *ctx;
};

struct loop {
    int epfd;
    int timerfd;
    struct fd_slot *slots;
    size_t nslots;
    struct timer *timers;
    size_t ntimers, timers_cap;
    long next_timer_id;
    uint64_t armed_ms; /* deadline the timerfd is set for, 0 = disarmed */
    int running;
    int exit_code;
    struct async_worker *workers; /* see loop_workers */
};

static uint64_t clock_ms(clockid_t clock)
{
    struct timespec ts;
    if (clock_gettime(clock, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t loop_now_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

uint64_t wall_now_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

static void on_timerfd(struct loop *loop, int fd, uint32_t events, void *ctx);

struct async_worker **loop_workers(struct loop *loop)
{
    return &loop->workers;
}

struct loop *loop_new(void)
{
    struct loop *loop = calloc(1, sizeof *loop);
    if (loop == NULL)
        return NULL;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (loop->epfd < 0 || loop->timerfd < 0 ||
        loop_add_fd(loop, loop->timerfd, EPOLLIN, on_timerfd, NULL) != 0) {
        log_error("event loop set-up failed", LF_STR("error", strerror(errno)));
        loop_free(loop);
        return NULL;
    }
    loop->next_timer_id = 1;
    return loop;
}

void loop_free(struct loop *loop)
{
    if (loop == NULL)
        return;
    if (loop->epfd >= 0)
        close(loop->epfd);
    if (loop->timerfd >= 0)
        close(loop->timerfd);
    free(loop->slots);
    free(loop->timers);
    free(loop);
}

static int ensure_slot(struct loop *loop, int fd)
{
    if ((size_t)fd < loop->nslots)
        return 0;
    size_t n = loop->nslots ? loop->nslots : 64;
    while (n <= (size_t)fd)
        n *= 2;
    struct fd_slot *grown = realloc(loop->slots, n * sizeof *grown);
    if (grown == NULL)
        return -1;
    memset(grown + loop->nslots, 0, (n - loop->nslots) * sizeof *grown);
    loop->slots = grown;
    loop->nslots = n;
    return 0;
}

int loop_add_fd(struct loop *loop, int fd, uint32_t events, loop_fd_cb cb, void *ctx)
{
    struct epoll_event ev = { .events = events, .data.fd = fd };
    if (fd < 0 || ensure_slot(loop, fd) != 0)
        return -1;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return -1;
    loop->slots[fd].cb = cb;
    loop->slots[fd].ctx = ctx;
    loop->slots[fd].generation++;
    return 0;
}

int loop_mod_fd(struct loop *loop, int fd, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.fd = fd };
    return epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev);
}

int loop_del_fd(struct loop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->nslots || loop->slots[fd].cb == NULL)
        return -1;
    loop->slots[fd].cb = NULL;
    loop->slots[fd].ctx = NULL;
    loop->slots[fd].generation++;
    return epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
}

static void rearm(struct loop *loop)
{
    uint64_t earliest = 0;
    for (size_t i = 0; i < loop->ntimers; i++)
        if (earliest == 0 || loop->timers[i].due_ms < earliest)
            earliest = loop->timers[i].due_ms;
    if (earliest == loop->armed_ms)
        return;
    struct itimerspec its = { 0 };
    if (earliest) {
        /* Absolute monotonic time; 0 would disarm, so never pass it. */
        uint64_t at = earliest ? earliest : 1;
        its.it_value.tv_sec = (time_t)(at / 1000);
        its.it_value.tv_nsec = (long)(at % 1000) * 1000000L;
    }
    if (timerfd_settime(loop->timerfd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
        log_error("timerfd_settime failed", LF_STR("error", strerror(errno)));
    loop->armed_ms = earliest;
}

long loop_timer_add(struct loop *loop, uint64_t delay_ms, uint64_t interval_ms,
                    loop_timer_cb cb, void *ctx)
{
    if (loop->ntimers == loop->timers_cap) {
        size_t cap = loop->timers_cap ? loop->timers_cap * 2 : 16;
        struct timer *grown = realloc(loop->timers, cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        loop->timers = grown;
        loop->timers_cap = cap;
    }
    struct timer *t = &loop->timers[loop->ntimers++];
    t->id = loop->next_timer_id++;
    t->due_ms = loop_now_ms() + delay_ms;
    if (t->due_ms == 0)
        t->due_ms = 1;
    t->interval_ms = interval_ms;
    t->cb = cb;
    t->ctx = ctx;
    rearm(loop);
    return t->id;
}

void loop_timer_cancel(struct loop *loop, long id)
{
    for (size_t i = 0; i < loop->ntimers; i++) {
        if (loop->timers[i].id == id) {
            loop->timers[i] = loop->timers[--loop->ntimers];
            rearm(loop);
            return;
        }
    }
}

static void on_timerfd(struct loop *loop, int fd, uint32_t events, void *ctx)
{
    uint64_t expirations;
    (void)events;
    (void)ctx;
    while (read(fd, &expirations, sizeof expirations) > 0)
        ;
    loop->armed_ms = 0; /* fired: force rearm below */

    /* Run each due timer once. A callback may add or cancel timers, so look
     * them up by id rather than keeping indexes across calls. */
    uint64_t now = loop_now_ms();
    for (;;) {
        struct timer *due = NULL;
        for (size_t i = 0; i < loop->ntimers; i++)
            if (loop->timers[i].due_ms <= now && (!due || loop->timers[i].due_ms < due->due_ms))
                due = &loop->timers[i];
        if (due == NULL)
            break;
        long id = due->id;
        loop_timer_cb cb = due->cb;
        void *tctx = due->ctx;
        if (due->interval_ms) {
            /* Next due time from now: a late timer does not fire in a burst. */
            due->due_ms = now + due->interval_ms;
        } else {
            loop_timer_cancel(loop, id);
        }
        cb(loop, tctx);
        if (!loop->running)
            break;
    }
    rearm(loop);
}

int loop_run(struct loop *loop)
{
    struct epoll_event events[64];

    loop->running = 1;
    while (loop->running) {
        int n = epoll_wait(loop->epfd, events, 64, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error("epoll_wait failed", LF_STR("error", strerror(errno)));
            return -1;
        }
        unsigned gens[64];
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            gens[i] = ((size_t)fd < loop->nslots) ? loop->slots[fd].generation : 0;
        }
        for (int i = 0; i < n && loop->running; i++) {
            int fd = events[i].data.fd;
            if ((size_t)fd >= loop->nslots)
                continue;
            struct fd_slot *s = &loop->slots[fd];
            /* Skip an fd closed (or closed and reused) by an earlier callback. */
            if (s->cb == NULL || s->generation != gens[i])
                continue;
            s->cb(loop, fd, events[i].events, s->ctx);
        }
    }
    return loop->exit_code;
}

void loop_stop(struct loop *loop, int code)
{
    loop->running = 0;
    loop->exit_code = code;
}
