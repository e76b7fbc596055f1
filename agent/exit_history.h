/* exit_history: the records of past runs (exit_record.h) on disk.
 *
 * Where: ROOT/.pi-agent/runs when the EFS root is in use (PI_EFS_MODE is not
 * off and PI_EFS_ROOT is a mount point), else PI_AGENT_RUN_DIR/runs. Both
 * folders must be owned by the agent's user (root) and not writable by
 * anyone else; they are reached from directory descriptors with O_NOFOLLOW,
 * so a link planted on EFS is refused, never followed.
 *
 * One file per run, named START_MS-RANDOM.json. Every write goes to an
 * O_EXCL temporary with a random name, is fsynced and renamed over the
 * record, so any process (a worker) can update it. While its run lives, the
 * agent holds an fcntl write lock on NAME.live (NFS keeps it as long as the
 * client lives; the kernel drops it when the agent dies): a record that never
 * ended and whose NAME.live nobody holds means that agent was killed. The
 * newest 100 are kept. */
#ifndef PI_EXIT_HISTORY_H
#define PI_EXIT_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "exit_record.h"

#define EXIT_HISTORY_KEEP 100
#define EXIT_HISTORY_NEWEST 5
#define EXIT_HISTORY_RECENT_MS (3600u * 1000u) /* "recent" abnormal ends: the last hour */

struct exit_history {
    int dirfd;            /* the records folder, -1 when none */
    char dir[512];        /* its path, for messages */
    bool on_efs;
    char name[64];        /* this run's record, "" before exit_history_begin */
    int livefd;           /* NAME.live, locked while the run lives, else -1 */
};

/* Opens (creating when create is set) the records folder. Returns 0, or -1
 * with one line in err naming the folder and what is wrong. */
int exit_history_open(struct exit_history *h, const char *efs_root, bool efs_enabled,
                      const char *run_dir, bool create, char *err, size_t cap);
void exit_history_close(struct exit_history *h);

/* Names this run's record, takes the lock of NAME.live (kept until
 * exit_history_end) and writes rec. Only the agent itself calls this: the
 * lock belongs to the calling process. Returns 0, or -1 with err. */
int exit_history_begin(struct exit_history *h, const struct exit_record *rec, char *err,
                       size_t cap);
/* Writes rec over this run's record (h->name set). Any process may. */
int exit_history_write(struct exit_history *h, const struct exit_record *rec, char *err,
                       size_t cap);
/* After the last write: NAME.live goes, and with it the lock. */
void exit_history_end(struct exit_history *h);

/* A record as read back. */
struct exit_entry {
    struct exit_record rec;
    bool running;         /* not ended and still held by its agent */
    bool killed;          /* not ended and held by nobody: the agent was killed */
    uint64_t last_ms;     /* end, or the last time the record was written */
};

struct exit_summary {
    unsigned records;                     /* records read */
    unsigned recent_abnormal;             /* abnormal ends within the last hour, any task */
    bool has_previous;
    struct exit_entry previous;           /* newest ended (or killed) run of family */
    int nnewest;
    struct exit_entry newest[EXIT_HISTORY_NEWEST]; /* newest first, any family */
    unsigned pruned;                      /* records removed beyond the newest 100 */
};

/* Reads every record (skipping own_name, may be ""), summarises them for
 * family at now_ms, and when prune is set removes records beyond the newest
 * EXIT_HISTORY_KEEP and temporaries older than an hour. Killed records
 * read as reason "killed" with exit status 137. Returns 0, or -1 when the
 * folder cannot be listed. */
int exit_history_read(int dirfd, const char *own_name, const char *family, uint64_t now_ms,
                      bool prune, struct exit_summary *out);

/* Pure: seconds a run lasted (for killed ones: at least). */
long long exit_entry_ran_s(const struct exit_entry *e);

/* The cgroup's oom_kill counter (v2 memory.events, v1 memory.oom_control)
 * of the agent's own cgroup. Returns 0, or -1 when there is none. */
int exit_read_oom_kills(uint64_t *out);

#endif
