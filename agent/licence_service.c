/* licence_service: see licence_service.h. */
#include "licence_service.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fetch.h"
#include "licence_handover.h"
#include "log.h"
#include "loop.h"
#include "util.h"
#include "worker.h"

/* A refresh while the licence is about to expire is tried at most this often. */
#define EXPIRING_REFRESH_MIN_MS (6ull * 3600 * 1000)

/* ---- the worker and its report ------------------------------------------
 * The report crosses a pipe from a process that parsed untrusted input: it
 * is checked field by field before anything in it is believed. */

#define REPORT_MAGIC 0x4c494331u /* "LIC1" */

struct report_head {
    uint32_t magic;
    int32_t status;
    int32_t have_claims;
    struct licence_state st;
    struct licence_claims claims;
    uint64_t licence_len;
};

int licence_report_write(int fd, const struct licence_resolution *r)
{
    struct report_head h;
    memset(&h, 0, sizeof(h));
    h.magic = REPORT_MAGIC;
    h.status = (int32_t)r->st.status;
    h.have_claims = r->have_claims;
    h.st = r->st;
    h.claims = r->claims;
    h.licence_len = r->licence ? r->len : 0;
    if (worker_write_all(fd, &h, sizeof(h)) != 0)
        return -1;
    if (h.licence_len && worker_write_all(fd, r->licence, r->len) != 0)
        return -1;
    return 0;
}

int licence_report_read(const void *data, size_t len, struct licence_resolution *r)
{
    licence_resolution_init(r);
    struct report_head h;
    if (!data || len < sizeof(h))
        return -1;
    memcpy(&h, data, sizeof(h));
    if (h.magic != REPORT_MAGIC || len - sizeof(h) != h.licence_len ||
        !licence_status_checked(h.st.status) || (int32_t)h.st.status != h.status)
        return -1;
    r->have_claims = h.have_claims != 0;
    r->st = h.st;
    r->st.reason[sizeof(r->st.reason) - 1] = '\0';
    r->st.source[sizeof(r->st.source) - 1] = '\0';
    r->st.subject[sizeof(r->st.subject) - 1] = '\0';
    r->claims = h.claims;
    r->claims.sub[sizeof(r->claims.sub) - 1] = '\0';
    r->claims.deployment[sizeof(r->claims.deployment) - 1] = '\0';
    if (r->claims.nmodules < 0 || r->claims.nmodules > LICENCE_MODULES_MAX)
        return -1;
    for (int i = 0; i < r->claims.nmodules; i++)
        r->claims.modules[i][LICENCE_MODULE_NAME_MAX - 1] = '\0';
    if (h.licence_len) {
        r->licence = malloc(h.licence_len + 1);
        if (!r->licence)
            return -1;
        memcpy(r->licence, (const char *)data + sizeof(h), h.licence_len);
        r->licence[h.licence_len] = '\0';
        r->len = h.licence_len;
    }
    return 0;
}

static int resolve_worker(void *arg, int out_fd)
{
    const struct licence_resolve_opts *o = arg;
    struct licence_resolution r;
    if (fetch_global_init() != 0)
        log_warn("cannot initialise libcurl");
    licence_resolve(o, &r);
    int rc = licence_report_write(out_fd, &r) == 0 ? 0 : 1;
    licence_resolution_free(&r);
    fetch_global_cleanup();
    return rc;
}

/* Runs resolve in a worker before the loop. */
static void resolve_in_worker(const struct licence_resolve_opts *o, struct licence_resolution *r)
{
    struct worker_result wr;
    int timeout_ms = (int)o->cfg->alm_timeout_s * 2000 + 30000;
    if (worker_run("licence", resolve_worker, (void *)o, timeout_ms, &wr) != 0) {
        licence_resolution_init(r);
        licence_resolution_set(r, LS_MALFORMED, "none",
                               "the licence check could not be started (fork failed)");
        return;
    }
    if (licence_report_read(wr.data, wr.len, r) != 0) {
        licence_resolution_free(r);
        licence_resolution_init(r);
        char reason[STATE_REASON_MAX];
        if (wr.interrupted)
            snprintf(reason, sizeof(reason), "the licence check was ended by a stop request");
        else if (wr.timed_out)
            snprintf(reason, sizeof(reason), "the licence check did not finish within %d s",
                     timeout_ms / 1000);
        else if (wr.signal)
            snprintf(reason, sizeof(reason), "the licence check crashed (signal %d)", wr.signal);
        else
            snprintf(reason, sizeof(reason), "the licence check gave no usable report");
        licence_resolution_set(r, wr.timed_out ? LS_UNREACHABLE : LS_MALFORMED, "none", reason);
    }
    if (wr.data)
        explicit_bzero(wr.data, wr.len);
    worker_result_free(&wr);
}

/* ---- state -------------------------------------------------------------- */

static void log_status(const char *msg, const struct licence_state *st)
{
    enum log_level level = st->status == LS_VALID || st->status == LS_UNVERIFIED ? LOG_INFO
                           : st->status == LS_EXPIRING                           ? LOG_WARN
                                                                                 : LOG_ERROR;
    char expires[32] = "";
    if (st->expires > 0)
        licence_iso8601(st->expires, expires, sizeof(expires));
    log_emit(level, msg,
             LOG_FIELDS_(LF_STR("status", licence_status_name(st->status)),
                         LF_STR("reason", st->reason), LF_STR("source", st->source),
                         LF_STR("subject", st->subject), LF_STR("expires", expires),
                         LF_INT("days_left", st->has_days_left ? st->days_left : -1)));
}

/* Records r as the licence in use: its claims here (for expiry), its status
 * in the agent's state (since_ms moves only when the status changes). */
static void remember(struct licence_service *svc, const struct licence_resolution *r)
{
    svc->have_claims = r->have_claims;
    svc->claims = r->claims;
    struct agent_state *state = svc->state;
    bool changed = state->licence.status != r->st.status;
    uint64_t since = state->licence.since_ms;
    state->licence = r->st;
    state->licence.since_ms = changed || since == 0 ? wall_now_ms() : since;
    state_changed(state);
}

static const struct run_as *owner_of(const struct licence_service *svc)
{
    return svc->has_owner ? &svc->owner : NULL;
}

int licence_start(struct licence_service *svc, const struct licence_config *cfg,
                  const struct run_as *run_as, struct agent_state *state, struct childenv *env)
{
    memset(svc, 0, sizeof(*svc));
    svc->cfg = cfg;
    svc->state = state;
    svc->has_owner = run_as && run_as->set;
    if (svc->has_owner)
        svc->owner = *run_as;

    struct licence_resolve_opts opts = { .cfg = cfg, .write_cache = true };
    struct licence_resolution r;
    if (cfg->licence == NULL && cfg->licence_url == NULL) {
        /* Nothing to resolve: no worker to fork and wait for. */
        licence_resolution_init(&r);
        licence_resolution_missing(&r);
    } else {
        resolve_in_worker(&opts, &r);
    }
    remember(svc, &r);
    log_status("licence checked", &r.st);
    if (r.have_claims && !r.claims.has_deployment && cfg->deployment_id == NULL)
        log_debug("the licence is not bound to a deployment");
    if (r.have_claims && r.claims.has_deployment && cfg->deployment_id == NULL)
        log_warn("the licence is bound to a deployment, but PI_DEPLOYMENT_ID is not set: it is not "
                 "checked", LF_STR("deployment", r.claims.deployment));

    int written = licence_handover_write(cfg->run_dir, &r, owner_of(svc), true);
    licence_handover_env(cfg, &r, written, env);
    int rc = 0;
    if (licence_blocks_readiness(r.st.status, cfg->required)) {
        log_error("licence required and not acceptable: not starting the dashboard",
                  LF_STR("status", licence_status_name(r.st.status)), LF_STR("reason", r.st.reason),
                  LF_STR("variable", "PI_AGENT_LICENCE_REQUIRED"));
        rc = EXIT_LICENCE;
    }
    licence_resolution_free(&r);
    return rc;
}

/* ---- loop timers -------------------------------------------------------- */

static void start_refresh(struct licence_service *svc, struct loop *loop);

static void on_refresh_timer(struct loop *loop, void *ctx)
{
    struct licence_service *svc = ctx;
    svc->refresh_timer = 0;
    start_refresh(svc, loop);
}

static void arm_refresh(struct licence_service *svc, struct loop *loop)
{
    if (svc->refresh_timer > 0)
        loop_timer_cancel(loop, svc->refresh_timer);
    /* Jittered, so that tasks started together do not call the ALM together. */
    uint64_t after = util_jitter_ms((uint64_t)svc->cfg->refresh_interval_s * 1000u,
                                    util_random64());
    svc->refresh_timer = loop_timer_add(loop, after, 0, on_refresh_timer, svc);
    if (svc->refresh_timer < 0)
        log_error("cannot arm the licence refresh timer");
}

static void on_refresh_done(struct loop *loop, const struct worker_result *wr, void *ctx)
{
    struct licence_service *svc = ctx;
    svc->refreshing = false;
    struct licence_resolution r;
    enum licence_status current = svc->state->licence.status;
    if (licence_report_read(wr->data, wr->len, &r) != 0) {
        log_warn("licence refresh failed: the worker gave no usable report",
                 LF_BOOL("timed_out", wr->timed_out), LF_INT("signal", wr->signal));
    } else if (licence_status_verified(r.st.status)) {
        bool changed = r.st.status != current;
        remember(svc, &r);
        if (licence_handover_write(svc->cfg->run_dir, &r, owner_of(svc), true) < 0)
            log_warn("the refreshed licence could not be handed over");
        log_status(changed ? "licence refreshed from the ALM: status changed"
                           : "licence refreshed from the ALM",
                   &r.st);
    } else {
        log_emit(r.st.status == LS_REJECTED ? LOG_ERROR : LOG_WARN,
                 "licence refresh failed: the current licence stays in use",
                 LOG_FIELDS_(LF_STR("status", licence_status_name(r.st.status)),
                             LF_STR("reason", r.st.reason),
                             LF_STR("current_status", licence_status_name(current))));
    }
    licence_resolution_free(&r);
    arm_refresh(svc, loop);
}

static void start_refresh(struct licence_service *svc, struct loop *loop)
{
    if (svc->refreshing)
        return;
    svc->refresh_opts = (struct licence_resolve_opts){
        .cfg = svc->cfg, .write_cache = true, .refresh_only = true };
    svc->last_refresh_ms = loop_now_ms();
    int timeout_ms = (int)svc->cfg->alm_timeout_s * 2000 + 30000;
    if (worker_start(loop, "licence-refresh", resolve_worker, &svc->refresh_opts, timeout_ms,
                     on_refresh_done, svc) < 0) {
        log_warn("cannot start the licence refresh");
        arm_refresh(svc, loop);
        return;
    }
    svc->refreshing = true;
    log_debug("licence refresh started");
}

/* Re-evaluates the claims in use against the clock: days_left moves every
 * day, the status when a threshold is crossed. */
static void reevaluate_expiry(struct licence_service *svc)
{
    struct agent_state *state = svc->state;
    char reason[LICENCE_REASON_MAX];
    long days = 0;
    enum licence_status st =
        licence_evaluate(&svc->claims, (int64_t)(wall_now_ms() / 1000), svc->cfg->warn_days,
                         svc->cfg->deployment_id, &days, reason, sizeof(reason));
    enum licence_status current = state->licence.status;
    bool day_passed = days != state->licence.days_left;
    state->licence.days_left = days;
    state->licence.has_days_left = true;
    state_changed(state);
    if (st == current && !day_passed)
        return;
    struct licence_resolution r = { .have_claims = true, .claims = svc->claims };
    r.st = state->licence;
    if (st != current) {
        licence_resolution_set(&r, st, state->licence.source, reason);
        log_status("licence status changed", &r.st);
    }
    remember(svc, &r);
    if (licence_handover_write(svc->cfg->run_dir, &r, owner_of(svc), false) < 0)
        log_warn("the licence status could not be written");
}

static void on_check_timer(struct loop *loop, void *ctx)
{
    struct licence_service *svc = ctx;
    if (svc->have_claims)
        reevaluate_expiry(svc);
    enum licence_status st = svc->state->licence.status;
    if (licence_config_refreshable(svc->cfg) && (st == LS_EXPIRING || st == LS_EXPIRED) &&
        !svc->refreshing && loop_now_ms() - svc->last_refresh_ms >= EXPIRING_REFRESH_MIN_MS)
        start_refresh(svc, loop);
}

int licence_attach(struct licence_service *svc, struct loop *loop)
{
    svc->last_refresh_ms = loop_now_ms();
    uint64_t every = (uint64_t)svc->cfg->check_interval_s * 1000u;
    if (loop_timer_add(loop, every, every, on_check_timer, svc) < 0) {
        log_error("cannot arm the licence expiry timer");
        return -1;
    }
    if (licence_config_refreshable(svc->cfg))
        arm_refresh(svc, loop);
    return svc->refresh_timer < 0 ? -1 : 0;
}
