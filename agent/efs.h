/* efs: persistent storage for the dashboard's folders (themes, images, files,
 * svg, locale, keys, custom_jdbc). The storage module's public face:
 *   settings            efs_config.c   (each PI_EFS_* read once)
 *   status and rule     efs_status.h   (enum, names, "blocks readiness")
 *   plan, then act      efs_plan.h     (planning pass; efs_act.c, efs_show.c)
 *   start phase         efs.c          (the plan carried out in a worker)
 *   while running       efs_service.c  (budget scans, housekeeping, `du`)
 * See docs/storage.md. */
#ifndef PI_EFS_H
#define PI_EFS_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "efs_layout.h"
#include "efs_status.h"
#include "util.h"
#include "housekeeping.h"

struct loop;
struct agent_state;
struct efs_state;

#define EXIT_STORAGE 73 /* EX_CANTCREAT: PI_EFS_MODE=required and the root is not usable */

enum efs_mode { EFS_MODE_AUTO, EFS_MODE_REQUIRED, EFS_MODE_OFF };

struct efs_config {
    enum efs_mode mode;            /* PI_EFS_MODE */
    char root[PATH_MAX];           /* PI_EFS_ROOT */
    bool require_nfs;              /* PI_EFS_REQUIRE_NFS */
    char dashboard_home[PATH_MAX]; /* PI_DASHBOARD_HOME */
    char seed_dir[PATH_MAX];       /* PI_EFS_SEED_DIR: image content moved by image-links */
    struct efs_links links;        /* PI_EFS_LINKS, else the default table */
    uint64_t budget_bytes;         /* PI_EFS_BUDGET_BYTES */
    unsigned warn_percent;         /* PI_EFS_WARN_PERCENT */
    bool over_budget_fail;         /* PI_EFS_OVER_BUDGET=fail */
    unsigned scan_interval_s;      /* PI_EFS_SCAN_INTERVAL_SECONDS, 0 = first scan only */
    unsigned scan_timeout_s;       /* PI_EFS_SCAN_TIMEOUT_SECONDS */
    unsigned start_timeout_s;      /* PI_EFS_START_TIMEOUT_SECONDS */
    struct housekeeping_config housekeeping;
};

#define EFS_DEFAULT_ROOT "/mnt/efs"

int efs_config_load(struct efs_config *cfg, struct config_error *err);

/* PI_EFS_ROOT, the one rule for it: an absolute path (default /mnt/efs), not
 * "/", trailing slashes dropped. Returns 0, or -1 with err naming it. */
int efs_config_root(char *out, size_t cap, struct config_error *err);

/* The folders a budget scan measures: what the start phase found. */
struct efs_scan_set {
    int nscan;
    char names[EFS_LINKS_MAX][EFS_NAME_MAX + 1];
    char paths[EFS_LINKS_MAX][PATH_MAX];
};

/* The storage of one agent while it runs, owned by the caller (PID 1 keeps
 * one in its struct agent, zeroed) and passed to efs_start and efs_attach:
 * the settings and state it works on, the folders the start phase found,
 * and the rescans' loop. Nothing of it is hidden in this module. */
struct efs_service {
    const struct efs_config *cfg;
    struct agent_state *state;
    struct loop *loop;
    const struct run_as *run_as; /* PI_AGENT_RUN_AS, or NULL: for housekeeping */
    struct housekeeping housekeeping; /* the daily log housekeeping */
    bool scanning;              /* a scan worker is running */
    uint64_t writer;            /* this agent's id in the fleet's scan record */
    struct efs_scan_set scan;   /* read up to nscan only: the rest stays untouched */
};

/* Start phase, as root, before Tomcat starts (see docs/storage.md). Runs the
 * work in a worker. Fills state->efs. Returns 0, or EXIT_STORAGE (73) when
 * PI_EFS_MODE=required or PI_EFS_REQUIRE_NFS=true is not met; the error is
 * logged as one line naming PI_EFS_ROOT and what was found. */
int efs_start(struct efs_service *svc, const struct efs_config *cfg,
              const struct run_as *run_as, struct agent_state *state);

/* Inside the loop, after efs_start on the same svc: budget scans (first one
 * right away, in a worker; then every PI_EFS_SCAN_INTERVAL_SECONDS +-10%)
 * and the daily log housekeeping. Updates svc->state->efs. Returns 0, or -1
 * when a timer could not be set. */
int efs_attach(struct efs_service *svc, struct loop *loop);

/* For readiness: false when storage blocks it (efs_status_blocks_readiness
 * with PI_EFS_OVER_BUDGET); why (may be NULL) then gets the reason. */
bool efs_ready(const struct efs_config *cfg, const struct agent_state *state, char *why,
               size_t cap);

/* `pi-agent du PATH...`: the budget walk on its own, printing what
 * `du -s -x --apparent-size -b -c PATH...` would (bytes, tab, path; then the
 * total) plus the file count. Exit 0, 1 when a path could not be read. */
int efs_du_command(int argc, char **argv);

/* The start phase's work itself (what the start worker runs), and what
 * `pi-agent check` shows instead: both plan first (efs_plan.h), then a start
 * carries the plan out while check says what a start would do. Each fills st
 * (mode, status, reason, fs_type, folders' names) and the folders a budget
 * scan measures, and reports one line per check ("root", "folder themes",
 * "link keys", ...). Return 0, or EXIT_STORAGE when the configuration's
 * requirements are not met. */
enum efs_level { EFS_OK, EFS_WARN, EFS_FAIL };
typedef void (*efs_report_fn)(void *ctx, enum efs_level level, const char *check,
                              const char *text);
int efs_prepare(const struct efs_config *cfg, const struct run_as *run_as,
                efs_report_fn report, void *report_ctx, struct efs_state *st,
                struct efs_scan_set *scan);
int efs_check_storage(const struct efs_config *cfg, const struct run_as *run_as,
                      efs_report_fn report, void *report_ctx, struct efs_state *st,
                      struct efs_scan_set *scan);

/* Measures the scan set's folders into st (figures, status against the
 * budget). Returns 0, or -1 when nothing could be measured; err counts the
 * unreadable entries and names the first. */
int efs_measure(const struct efs_config *cfg, const struct efs_scan_set *scan,
                struct efs_state *st, struct util_first_error *err);

#endif
