/* state: what PID 1 knows about the task, kept in one place so the health
 * endpoint, metrics and EMF answer from memory without doing any work.
 * Start phases and workers fill it; nothing here is ever a secret. */
#ifndef PI_STATE_H
#define PI_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "efs_status.h"
#include "licence_status.h"

#define STATE_REASON_MAX 256
#define STATE_EFS_FOLDERS_MAX 16

struct licence_state {
    enum licence_status status;    /* LS_UNKNOWN until the first check */
    char reason[STATE_REASON_MAX]; /* one line a person can act on */
    char source[16];               /* inline, alm, url, cache, dashboard, none */
    char subject[128];             /* the token's sub claim, when known */
    int64_t not_before;            /* unix seconds, 0 when unknown */
    int64_t expires;               /* unix seconds, 0 when unknown */
    long long users;               /* -1 when unknown */
    bool has_days_left;
    long days_left;
    uint64_t since_ms;             /* wall clock of the last status change */
};

struct efs_folder_usage {
    char name[32];
    uint64_t bytes;
    uint64_t files;
};

struct efs_state {
    char mode[16];                 /* managed, per-folder, ephemeral, off */
    enum efs_status status;        /* efs_status.h: the names and the readiness rule */
    char reason[STATE_REASON_MAX];
    char fs_type[16];              /* nfs, overlay, ext4, ... */
    bool scanned;                  /* at least one budget scan finished */
    uint64_t total_bytes;
    uint64_t budget_bytes;
    uint64_t files;
    double scan_seconds;
    int nfolders;
    struct efs_folder_usage folders[STATE_EFS_FOLDERS_MAX];
    uint64_t since_ms;
};

/* The probe's own end of a connection to Tomcat, as the traffic count sees
 * it from Tomcat's side: address as IPv6 (IPv4-mapped for IPv4) and port.
 * Enough are kept to cover TIME_WAIT (60 s) at the fastest probe (1 s), as
 * Tomcat's end of a probe's connection lingers that long. */
#define PROBE_RECENT_PEERS 64
struct probe_peer {
    uint8_t addr[16];
    uint16_t port;                 /* 0 when unused */
};

/* Named by probe_status_name() (probe.h). Zero: no probe was started yet
 * ("none"; readiness counts it as starting). */
enum probe_status { PROBE_UNSET, PROBE_STARTING, PROBE_OK, PROBE_FAILING };
#define PROBE_STATUS_COUNT 4

struct probe_state {
    enum probe_status status;
    char reason[STATE_REASON_MAX];
    double last_latency_s;
    uint64_t passes, failures;
    uint64_t since_ms;
    struct probe_peer recent[PROBE_RECENT_PEERS]; /* the last probes' ends */
    unsigned recent_next;
};

/* Tomcat's traffic, from the kernel's socket table (traffic.h). */
struct traffic_state {
    char source[16];               /* netlink, proc, off */
    bool sampled;                  /* at least one sample finished */
    bool failing;                  /* the last sample failed */
    uint64_t connections;          /* established connections to Tomcat's port */
    bool has_bytes;                /* netlink gives bytes; /proc does not */
    uint64_t received_bytes;       /* monotonic across connection churn */
    bool has_rate;
    double received_bytes_per_s;   /* over the last EMF interval */
    uint64_t last_activity_ms;     /* monotonic: last sample that saw bytes or a new connection */
    uint64_t last_activity_wall_ms;
    uint64_t last_sample_ms;       /* monotonic: last successful sample */
    double sample_seconds;         /* duration of the last sample */
};

/* The repository database as seen from the task (dbcheck.h): reported, never
 * a readiness condition. */
/* Named by database_status_name() (dbcheck.h). Zero: not checked ("unknown"). */
enum database_status { DATABASE_UNSET, DATABASE_STARTING, DATABASE_OK, DATABASE_FAILING,
                       DATABASE_MISCONFIGURED };
#define DATABASE_STATUS_COUNT 5

struct database_state {
    bool configured;               /* PI_DB_HOST is set */
    enum database_status status;
    char target[280];              /* host:port, as configured */
    char reason[STATE_REASON_MAX];
    bool measured;                 /* at least one attempt finished */
    double last_latency_s;         /* duration of the last attempt */
    uint64_t passes, failures;
    uint64_t since_ms;             /* wall clock of the last status change */
};

struct task_metadata {
    bool known;
    char cluster[256];
    char task_arn[256];
    char family[128];
    char revision[32];
    char availability_zone[64];
};

/* The most recent earlier run of this task family (exit_run.c). */
struct previous_run_state {
    bool known;
    char task[128];
    char reason[24];
    int exit_status;
    long long ran_s;
    uint64_t ended_ms;             /* wall clock; for a killed agent, the last sign of life */
};

struct agent_state {
    uint64_t started_ms;           /* wall clock */
    pid_t child_pid;               /* 0 when no child runs */
    bool child_running;
    unsigned child_restarts;
    bool draining;                 /* SIGTERM received: /health says 503 */
    bool stopping;                 /* the child is being stopped */
    bool ready_once;               /* /health has been ok at least once */
    struct probe_state probe;
    struct traffic_state traffic;
    struct licence_state licence;
    struct efs_state efs;
    struct task_metadata metadata;
    char hooks_failure[STATE_REASON_MAX]; /* last failed hook, "" when none */
    struct database_state database;
    uint64_t child_started_ms;     /* monotonic: when the current child started */
    bool startup_timed_out;        /* PI_AGENT_STARTUP_TIMEOUT_SECONDS ran out: /live 503 */
    char live_reason[STATE_REASON_MAX]; /* why /live fails, "" when it does not */
    struct previous_run_state previous_run;
    bool recent_abnormal_known;    /* the run records could be read */
    unsigned recent_abnormal_exits; /* abnormal ends in the last hour, every task */

    /* Bumped by state_changed(): readers that cache what they render from
     * the state (the /health body) render again only when it moved. */
    uint64_t version;
    /* The readiness derivation (readiness.h), called by state_changed(). */
    void (*on_change)(void *ctx);
    void *on_change_ctx;
};

/* Every writer of the state ends its change here (in the loop callback that
 * made it): the version moves and readiness is derived again at once, so
 * nothing reads the state to decide and nothing polls. */
static inline void state_changed(struct agent_state *st)
{
    st->version++;
    if (st->on_change)
        st->on_change(st->on_change_ctx);
}

#endif
