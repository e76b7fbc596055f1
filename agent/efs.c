/* efs: the start phase (the storage plan carried out in a worker, its
 * report taken into the state) and readiness. See efs.h and docs/storage.md. */
#include "efs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "loop.h"
#include "state.h"
#include "worker.h"

#define EFS_REPORT_MAGIC 0x70694566u /* "piEf" */

static void set_word(char *dst, size_t cap, const char *word)
{
    snprintf(dst, cap, "%s", word);
}


/* ---- start phase (worker) ------------------------------------------------- */

struct start_report {
    uint32_t magic;
    int rc;
    struct efs_state st;
    struct efs_scan_set plan;
};

struct start_args {
    const struct efs_config *cfg;
    const struct run_as *run_as;
};

static void log_report(void *ctx, enum efs_level level, const char *check, const char *text)
{
    (void)ctx;
    enum log_level l = level == EFS_FAIL ? LOG_ERROR : level == EFS_WARN ? LOG_WARN : LOG_INFO;
    log_emit(l, text, (const struct log_field[]){ LF_STR("check", check), { 0 } });
}

static int start_work(void *arg, int out_fd)
{
    const struct start_args *a = arg;
    struct start_report *rep = calloc(1, sizeof(*rep));
    if (!rep)
        return 1;
    rep->magic = EFS_REPORT_MAGIC;
    rep->rc = efs_prepare(a->cfg, a->run_as, log_report, NULL, &rep->st, &rep->plan);
    int ok = worker_write_all(out_fd, rep, sizeof(*rep)) == 0;
    free(rep);
    return ok ? 0 : 1;
}

int efs_start(struct efs_service *svc, const struct efs_config *cfg,
              const struct run_as *run_as, struct agent_state *state)
{
    struct efs_state *st = &state->efs;
    svc->cfg = cfg;
    svc->state = state;
    svc->scan.nscan = 0;
    svc->run_as = run_as;
    if (cfg->mode == EFS_MODE_OFF) {
        memset(st, 0, sizeof(*st));
        set_word(st->mode, sizeof(st->mode), "off");
        st->status = EFS_STATUS_OFF;
        st->since_ms = wall_now_ms();
        log_debug("storage: PI_EFS_MODE=off, no storage work");
        return 0;
    }
    struct start_args args = { .cfg = cfg, .run_as = run_as };
    struct worker_result res;
    int fatal_ok = cfg->mode == EFS_MODE_REQUIRED || cfg->require_nfs;
    if (worker_run("efs-start", start_work, &args, (int)(cfg->start_timeout_s * 1000u), &res) < 0) {
        memset(st, 0, sizeof(*st));
        st->status = EFS_STATUS_FAILED;
        efs_fmt(st->reason, sizeof(st->reason), "PI_EFS_ROOT=%s: storage preparation could not start",
                 cfg->root);
        log_error("storage preparation could not start", LF_STR("root", cfg->root));
        return fatal_ok ? EXIT_STORAGE : 0;
    }
    if (res.len != sizeof(struct start_report) ||
        ((const struct start_report *)(const void *)res.data)->magic != EFS_REPORT_MAGIC) {
        memset(st, 0, sizeof(*st));
        set_word(st->mode, sizeof(st->mode), cfg->mode == EFS_MODE_REQUIRED ? "managed" : "?");
        st->status = EFS_STATUS_FAILED;
        st->budget_bytes = cfg->budget_bytes;
        st->since_ms = wall_now_ms();
        if (res.interrupted)
            efs_fmt(st->reason, sizeof(st->reason),
                     "PI_EFS_ROOT=%s: storage preparation was ended by a stop request", cfg->root);
        else if (res.timed_out)
            efs_fmt(st->reason, sizeof(st->reason),
                     "PI_EFS_ROOT=%s: storage preparation did not finish within "
                     "PI_EFS_START_TIMEOUT_SECONDS=%u",
                     cfg->root, cfg->start_timeout_s);
        else if (res.signal)
            efs_fmt(st->reason, sizeof(st->reason),
                     "PI_EFS_ROOT=%s: storage preparation crashed (signal %d)", cfg->root,
                     res.signal);
        else
            efs_fmt(st->reason, sizeof(st->reason),
                     "PI_EFS_ROOT=%s: storage preparation failed (exit %d)", cfg->root,
                     res.exit_code);
        log_error("storage is not usable", LF_STR("error", st->reason));
        worker_result_free(&res);
        return fatal_ok ? EXIT_STORAGE : 0;
    }
    struct start_report rep;
    memcpy(&rep, res.data, sizeof(rep));
    worker_result_free(&res);
    *st = rep.st;
    svc->scan = rep.plan;
    if (rep.rc == EXIT_STORAGE) {
        log_error("storage is not usable", LF_STR("error", st->reason),
                  LF_STR("mode", cfg->mode == EFS_MODE_REQUIRED ? "required" : "auto"));
        return EXIT_STORAGE;
    }
    if (st->status == EFS_STATUS_FAILED)
        log_error("storage failed: readiness will fail", LF_STR("error", st->reason));
    else
        log_info("storage ready", LF_STR("mode", st->mode), LF_STR("fs_type", st->fs_type),
                 LF_INT("folders", svc->scan.nscan));
    return 0;
}

bool efs_ready(const struct efs_config *cfg, const struct agent_state *state, char *why,
               size_t cap)
{
    const struct efs_state *st = &state->efs;
    if (!efs_status_blocks_readiness(st->status, cfg->over_budget_fail))
        return true;
    if (!why || cap == 0)
        return false;
    if (st->status == EFS_STATUS_FAILED)
        snprintf(why, cap, "storage failed: %s", st->reason);
    else
        snprintf(why, cap, "storage over budget: %llu of %llu bytes",
                 (unsigned long long)st->total_bytes, (unsigned long long)st->budget_bytes);
    return false;
}

