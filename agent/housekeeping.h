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
    uint64_t errors;
    char first_error[256];
};

/* One pass over the folder. Returns 0, or -1 when the folder cannot be read
 * (a missing folder is not an error: removed == 0). */
int housekeeping_run(const struct housekeeping_config *cfg, int64_t now,
                     struct housekeeping_result *out);

/* The user Tomcat runs as (PI_AGENT_RUN_AS), or NULL: the daily worker
 * removes files with that user's rights only. Tomcat's log folder (or its
 * parent) is the run-as user's to change, so it could point the folder
 * elsewhere; a root worker would then remove old files there. */
void housekeeping_set_run_as(const struct run_as *run_as);

/* Runs housekeeping_run in a worker shortly after start, then once a day. */
int housekeeping_attach(struct loop *loop, const struct housekeeping_config *cfg);

#endif
