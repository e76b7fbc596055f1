/* exit_record: the record of one run of the agent (why a task died), as it
 * is kept on EFS or in the run directory, and the rule that names how a run
 * ended. Everything here is pure: bytes in, struct out (and back), so the
 * format is unit-tested and fuzzed; exit_history.c does the file work.
 *
 * A record is one JSON object on one line:
 *   {"format":"pi-agent-run/1","task":"...","family":"...","start_ms":N,
 *    "ready_ms":N|null,"stop_ms":N|null,"end_ms":N|null,"reason":"..."|null,
 *    "exit_status":N|null,"probe":"...","detail":"..."}
 * end_ms null means the run has not ended (or the agent was killed before
 * it could say so). Nothing in it is a secret. */
#ifndef PI_EXIT_RECORD_H
#define PI_EXIT_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EXIT_RECORD_FORMAT "pi-agent-run/1"
#define EXIT_RECORD_MAX 4096 /* bytes of one record file, at most */

/* How a run ended: the words other tools read. */
#define EXIT_REASON_STOPPED "stopped"                 /* asked to stop, Tomcat ended within the grace */
#define EXIT_REASON_EXITED "exited"                   /* Tomcat exited by itself */
#define EXIT_REASON_SIGNAL "signal"                   /* Tomcat died of a signal nobody sent */
#define EXIT_REASON_OOM "oom-killed"                  /* the kernel's OOM killer */
#define EXIT_REASON_KILLED_AFTER_GRACE "killed-after-grace"
#define EXIT_REASON_STARTUP_TIMEOUT "startup-timeout" /* PI_AGENT_STARTUP_TIMEOUT_SECONDS ran out */
#define EXIT_REASON_LICENCE "licence"                 /* start stopped: 77 */
#define EXIT_REASON_STORAGE "storage"                 /* start stopped: 73 */
#define EXIT_REASON_HOOK "hook"                       /* start stopped: 75 */
#define EXIT_REASON_CONFIG "config"                   /* start stopped: 78 */
#define EXIT_REASON_KILLED "killed"                   /* the agent itself was killed: never completed */

struct exit_record {
    char task[128];       /* ECS task id, else the hostname */
    char family[128];     /* task definition family, "" outside ECS */
    uint64_t start_ms;    /* wall clock */
    uint64_t ready_ms;    /* first ready, 0 when never */
    uint64_t stop_ms;     /* stop requested, 0 when never */
    uint64_t end_ms;      /* 0 while the run has not ended */
    char reason[24];      /* one of EXIT_REASON_*, "" while not ended */
    int exit_status;      /* -1 while not ended */
    char probe[128];      /* the last probe result, one line */
    char detail[256];     /* one line a person can act on, may be "" */
};

/* Pure: true when word is one of the EXIT_REASON_* words. */
bool exit_reason_known(const char *word);

/* Pure: a run that ended badly (everything but a requested stop and a
 * clean exit with status 0). */
bool exit_reason_abnormal(const char *reason, int exit_status);

/* Pure: renders rec as one line (with a trailing newline) into buf.
 * Returns the length, or -1 when it does not fit or out of memory. */
int exit_record_format(const struct exit_record *rec, char *buf, size_t cap);

/* Pure: parses a record. Returns 0, or -1 when the bytes are not a record
 * of this format (any bytes are safe: this reads what EFS holds). */
int exit_record_parse(const char *text, size_t len, struct exit_record *out);

/* The facts known when a run ends, for exit_decide. */
struct exit_facts {
    int start_rc;            /* non-zero when the start phases stopped the run */
    int start_signal;        /* a stop signal that arrived during the start phases */
    bool child_started;
    int wait_status;         /* the child's last wait(2) status */
    bool stop_requested;     /* SIGTERM/SIGINT reached the agent */
    bool killed_after_grace; /* the child was still running when the grace ran out */
    bool oom_killed;         /* the cgroup's oom_kill counter grew while the child ran */
    bool startup_timed_out;  /* the startup budget ran out */
    int stop_exit_status;    /* PI_AGENT_STOP_EXIT_STATUS: -1 for "child", else 0-255 */
    int internal_rc;         /* non-zero: the agent failed itself (70) */
};

/* Pure: the reason word and the status pi-agent exits with. */
void exit_decide(const struct exit_facts *f, const char **reason, int *exit_status);

/* Pure: reads the oom_kill counter from the text of a cgroup v2
 * memory.events or a cgroup v1 memory.oom_control file. Returns 0, or -1
 * when there is no such line. */
int exit_parse_oom_kill(const char *text, size_t len, uint64_t *out);

#endif
