/* health_server: the HTTP server's own parts, shared by its files and by
 * nothing else (health.h is the module's contract).
 *   health.c        settings, answers, connection I/O, accepting, start/stop
 *   health_table.c  the connection table: classes, eviction order, the
 *                   per-address cap
 *   health_local.c  the unix socket for the container check */
#ifndef PI_HEALTH_SERVER_H
#define PI_HEALTH_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include "health.h"
#include "http_parser.h"

/* What a connection is doing, which decides whether it may be evicted to
 * make room: WAITING (nothing of a request received: new, or kept alive
 * between requests) goes first, then PARTIAL (part of a request or a body to
 * skip: a slow client or a slowloris); BUSY (an answer still being written,
 * or the last answer sent and the connection draining) is never evicted. */
enum conn_class { CLASS_WAITING, CLASS_PARTIAL, CLASS_BUSY, CLASS_COUNT };

/* Connections per source address (IPv4 address, IPv6 /64), for the cap. */
struct peer {
    struct peer *next;        /* hash chain */
    unsigned char key[16];
    unsigned count;
};

/* A listener and its connection table. Each class list is in the order the
 * connections entered it, so its head is the one waiting longest. */
struct pool {
    struct health_server *srv;
    const char *name;         /* for log lines: "tcp" or "unix" */
    int listen_fd;
    bool accept_paused;
    long accept_timer;
    unsigned n, max;
    struct conn *head[CLASS_COUNT], *tail[CLASS_COUNT];
};

struct conn {
    int fd;
    struct health_server *srv;
    struct pool *pool;
    struct peer *peer;        /* NULL on the unix socket */
    enum conn_class cls;
    bool renewed;             /* a request was answered: back to its list's tail */
    struct conn *prev, *next; /* in pool->head[cls] */
    char *in;                 /* HTTP_MAX_HEAD_BYTES, allocated on first read */
    size_t in_len;
    struct http_parser parser;
    uint64_t body_left;       /* request body bytes still to discard */
    char *out;
    size_t out_len, out_off, out_cap;
    uint64_t deadline_ms;     /* monotonic: a full request must arrive by then */
    bool close_after_write;   /* last response queued */
    bool lingering;           /* half-closed, draining until EOF or deadline */
    bool writing;             /* waiting for EPOLLOUT */
    bool peer_eof;            /* the client will send nothing more */
};

struct health_server {
    struct loop *loop;
    const struct health_config *cfg;
    struct agent_state *state;
    const struct readiness *readiness;
    struct pool tcp, local;
    int run_dir_fd;           /* holds health.sock; -1 without the unix socket */
    dev_t sock_dev;           /* the socket file we created, to remove only ours */
    ino_t sock_ino;
    long sweep_timer;
    struct peer **peers;      /* hash buckets, allocated with the first connection */
    unsigned peer_buckets;
    uint32_t peer_seed;
    uint64_t last_limit_log_ms, last_evict_log_ms, last_peer_log_ms;
    unsigned long evicted, evicted_logged, peer_evicted, peer_evicted_logged;
    /* /health is rendered again only when the state changed. */
    uint64_t rendered_version;
    int health_len;           /* -1: never rendered */
    time_t date_secs;
    char date[40];
    /* Allocated on the first /health or /metrics request: an agent nobody
     * asks (the listener off, or before the first check) never pays them. */
    char *health_body;        /* HEALTH_BODY_MAX */
    char *metrics_body;       /* METRICS_BODY_MAX */
};

/* ---- the connection table (health_table.c) ------------------------------ */

void class_unlink(struct conn *c);
void class_append(struct conn *c, enum conn_class cls);
/* Files the connection under what it is doing now (see conn_settle). */
void conn_settle(struct conn *c);
/* The connection to close to make room, or NULL (see pick_victim). */
struct conn *pick_victim(struct pool *p, const struct peer *peer);
/* The source address's entry, counted once more; NULL when out of memory. */
struct peer *peer_hold(struct health_server *srv, const struct sockaddr_storage *ss);
void peer_release(struct health_server *srv, struct peer *p);
/* The address (or /64) for log lines. */
void peer_name(const struct peer *p, char *buf, size_t cap);

/* ---- the unix socket (health_local.c) ------------------------------------ */

/* Opens run_dir/health.sock; returns the listening descriptor, or -1 after
 * a warning (the TCP endpoint then serves the container check alone). */
int health_local_open(struct health_server *srv);
/* Removes health.sock if it is still the one this agent created. */
void health_local_close(struct health_server *srv);

#endif
