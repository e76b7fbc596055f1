/* housekeeping: nothing rotates Tomcat's logs inside the container, so once a
 * day the agent removes the files in Tomcat's log folder that are older than
 * PI_AGENT_LOG_RETENTION_DAYS. Only regular files directly in that folder:
 * no recursion, no symlinks followed, nothing else touched. */
#ifndef PI_HOUSEKEEPING_H
#define PI_HOUSEKEEPING_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "util.h"

struct loop;

#define HOUSEKEEPING_INTERVAL_MS (24ull * 3600 * 1000)

struct housekeeping_config {
    unsigned retention_days;  /* PI_AGENT_LOG_RETENTION_DAYS, 0 = never remove */
    char log_dir[PATH_MAX];   /* PI_AGENT_TOMCAT_LOG_DIR */
};

/* dashboard_home gives the default log folder (DASHBOARD/tomcat/logs). */
int housekeeping_config_load(struct housekeeping_config *cfg, const char *dashboard_home,
                             struct config_error *err);

/* Pure: should a file last modified at mtime be removed at now (unix seconds)? */
bool housekeeping_expired(int64_t mtime, int64_t now, unsigned retention_days);

struct housekeeping_result {
    uint64_t removed;
    uint64_t kept;
    struct util_first_error errors;   /* how many files could not be removed, and why */
};

/* One pass over the folder. Returns 0, or -1 when the folder cannot be read
 * (a missing folder is not an error: removed == 0). */
int housekeeping_run(const struct housekeeping_config *cfg, int64_t now,
                     struct housekeeping_result *out);

/* The daily pass inside the loop. The caller owns the handle (storage that
 * outlives the loop) and passes it explicitly; it holds no hidden state. */
struct housekeeping {
    const struct housekeeping_config *cfg; /* must outlive the loop */
    struct run_as run_as;  /* the user Tomcat runs as (PI_AGENT_RUN_AS), or unset */
    bool running;          /* a pass is under way: the next tick is skipped */
};

/* Runs housekeeping_run in a worker shortly after start, then once a day.
 * run_as (or NULL) is the user Tomcat runs as: the worker removes files
 * with that user's rights only. Tomcat's log folder (or its parent) is that
 * user's to change, so it could point the folder elsewhere; a root worker
 * would then remove old files there. Returns 0, or -1 when the timer cannot
 * be armed. */
int housekeeping_attach(struct housekeeping *hk, struct loop *loop,
                        const struct housekeeping_config *cfg, const struct run_as *run_as);

#endif
