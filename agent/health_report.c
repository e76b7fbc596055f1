/* health_report: see health_report.h. */
#include "health_report.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dbcheck.h"
#include "log.h"
#include "probe.h"

#ifndef PI_AGENT_VERSION
#define PI_AGENT_VERSION "0.0.0"
#endif

/* The one name table of health statuses (NULL-terminated for the metric). */
static const char *const status_names[HEALTH_STATUS_COUNT + 1] = { "starting", "ok", "draining",
                                                                   "unhealthy", NULL };

const char *health_status_name(enum health_status s)
{
    return (unsigned)s < HEALTH_STATUS_COUNT ? status_names[s] : "unknown";
}

void health_evaluate(const struct agent_state *st, const struct health_policy *policy,
                     struct health_verdict *v)
{
    memset(v, 0, sizeof(*v));

    struct health_check *t = &v->checks[CHECK_TOMCAT];
    t->name = "tomcat";
    if (!st->child_running) {
        t->status = "not-running";
        t->reason = "the dashboard process is not running";
        t->since_ms = 0;
    } else {
        t->status = probe_status_name(st->probe.status == PROBE_UNSET ? PROBE_STARTING
                                                                       : st->probe.status);
        t->reason = st->probe.reason;
        t->since_ms = st->probe.since_ms;
    }
    t->ok = st->child_running && st->probe.status == PROBE_OK;
    t->blocking = !t->ok;

    struct health_check *l = &v->checks[CHECK_LICENCE];
    l->name = "licence";
    l->status = licence_status_name(st->licence.status);
    l->reason = st->licence.reason;
    l->since_ms = st->licence.since_ms;
    l->ok = licence_status_acceptable(st->licence.status);
    l->blocking = licence_blocks_readiness(st->licence.status, policy->licence_required);

    struct health_check *e = &v->checks[CHECK_EFS];
    e->name = "efs";
    e->status = efs_status_name(st->efs.status);
    e->reason = st->efs.reason;
    e->since_ms = st->efs.since_ms;
    e->ok = efs_status_healthy(st->efs.status);
    e->blocking = efs_status_blocks_readiness(st->efs.status, policy->efs_over_fails);

    if (st->draining)
        v->status = HEALTH_DRAINING;
    else if (l->blocking || e->blocking)
        v->status = HEALTH_UNHEALTHY; /* configuration or storage: not a slow start */
    else if (t->blocking)
        v->status = st->ready_once ? HEALTH_UNHEALTHY : HEALTH_STARTING;
    else
        v->status = HEALTH_OK;
    v->ready = v->status == HEALTH_OK;
}

/* ---- output buffer ------------------------------------------------------ */

void outbuf_init(struct outbuf *b, char *mem, size_t cap)
{
    b->p = mem;
    b->len = 0;
    b->cap = cap;
    b->overflow = cap == 0;
    if (cap)
        mem[0] = '\0';
}

void outbuf_put(struct outbuf *b, const char *s, size_t n)
{
    if (b->overflow)
        return;
    if (n >= b->cap - b->len) {
        b->overflow = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void outbuf_puts(struct outbuf *b, const char *s)
{
    outbuf_put(b, s, strlen(s));
}

void outbuf_printf(struct outbuf *b, const char *fmt, ...)
{
    if (b->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len) {
        b->overflow = true;
        b->p[b->len] = '\0';
        return;
    }
    b->len += (size_t)n;
}

void outbuf_json_string(struct outbuf *b, const char *s)
{
    char esc[STATE_REASON_MAX * 6 + 1];
    size_t need = json_escape(esc, sizeof esc, s ? s : "");
    if (need >= sizeof esc) {
        b->overflow = true;
        return;
    }
    outbuf_put(b, "\"", 1);
    outbuf_put(b, esc, need);
    outbuf_put(b, "\"", 1);
}

void outbuf_json_time(struct outbuf *b, uint64_t wall_ms)
{
    if (wall_ms == 0) {
        outbuf_puts(b, "null");
        return;
    }
    time_t secs = (time_t)(wall_ms / 1000);
    struct tm tm;
    char when[32];
    if (gmtime_r(&secs, &tm) == NULL || strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        outbuf_puts(b, "null");
        return;
    }
    outbuf_printf(b, "\"%s.%03uZ\"", when, (unsigned)(wall_ms % 1000));
}

void outbuf_number(struct outbuf *b, double d)
{
    /* Range first: converting a double outside long long's range is undefined. */
    if (d >= -9007199254740992.0 && d <= 9007199254740992.0 && d == (double)(long long)d) {
        outbuf_printf(b, "%lld", (long long)d);
        return;
    }
    char text[32];
    snprintf(text, sizeof text, "%.15g", d);
    if (strtod(text, NULL) != d)
        snprintf(text, sizeof text, "%.17g", d);
    outbuf_puts(b, text);
}

/* ---- /health JSON ------------------------------------------------------- */

static void json_check_head(struct outbuf *b, const struct health_check *c)
{
    outbuf_json_string(b, c->name);
    outbuf_puts(b, ":{\"status\":");
    outbuf_json_string(b, c->status);
    outbuf_printf(b, ",\"ok\":%s,\"blocking\":%s,\"reason\":", c->ok ? "true" : "false",
                  c->blocking ? "true" : "false");
    outbuf_json_string(b, c->reason);
    outbuf_puts(b, ",\"since\":");
    outbuf_json_time(b, c->since_ms);
}

static void json_double(struct outbuf *b, double d)
{
    if (isfinite(d))
        outbuf_number(b, d);
    else
        outbuf_puts(b, "null");
}

/* checks.database, only when PI_DB_HOST is set. Informational: never
 * blocking, never among the checks that decide readiness. */
static void json_database(struct outbuf *b, const struct database_state *db)
{
    if (!db->configured)
        return;
    bool ok = db->status == DATABASE_OK;
    outbuf_puts(b, ",\"database\":{\"status\":");
    outbuf_json_string(b, database_status_name(db->status));
    outbuf_printf(b, ",\"ok\":%s,\"blocking\":false,\"reason\":", ok ? "true" : "false");
    outbuf_json_string(b, db->reason);
    outbuf_puts(b, ",\"since\":");
    outbuf_json_time(b, db->since_ms);
    outbuf_puts(b, ",\"latency_seconds\":");
    if (db->measured)
        json_double(b, db->last_latency_s);
    else
        outbuf_puts(b, "null");
    outbuf_puts(b, ",\"target\":");
    outbuf_json_string(b, db->target);
    outbuf_printf(b, ",\"passes\":%llu,\"failures\":%llu}", (unsigned long long)db->passes,
                  (unsigned long long)db->failures);
}

/* The previous run of this task family, or null. */
static void json_previous_run(struct outbuf *b, const struct previous_run_state *p)
{
    outbuf_puts(b, ",\"previous_run\":");
    if (!p->known) {
        outbuf_puts(b, "null");
        return;
    }
    outbuf_puts(b, "{\"task\":");
    outbuf_json_string(b, p->task);
    outbuf_puts(b, ",\"reason\":");
    outbuf_json_string(b, p->reason);
    outbuf_printf(b, ",\"exit_status\":%d,\"ran_s\":%lld,\"ended\":", p->exit_status, p->ran_s);
    outbuf_json_time(b, p->ended_ms);
    outbuf_puts(b, "}");
}

int health_render_json(const struct agent_state *st, const struct health_verdict *v,
                       char *buf, size_t cap)
{
    struct outbuf b;
    outbuf_init(&b, buf, cap);

    outbuf_puts(&b, "{\"status\":");
    outbuf_json_string(&b, health_status_name(v->status));
    outbuf_printf(&b, ",\"ready\":%s,\"failing\":[", v->ready ? "true" : "false");
    bool first = true;
    for (int i = 0; i < HEALTH_CHECK_COUNT; i++) {
        if (!v->checks[i].blocking)
            continue;
        if (!first)
            outbuf_puts(&b, ",");
        outbuf_json_string(&b, v->checks[i].name);
        first = false;
    }
    outbuf_puts(&b, "],\"version\":");
    outbuf_json_string(&b, PI_AGENT_VERSION);
    outbuf_puts(&b, ",\"started\":");
    outbuf_json_time(&b, st->started_ms);
    outbuf_printf(&b, ",\"child\":{\"running\":%s,\"pid\":%ld,\"restarts\":%u}",
                  st->child_running ? "true" : "false", (long)st->child_pid, st->child_restarts);

    outbuf_puts(&b, ",\"checks\":{");
    const struct health_check *t = &v->checks[CHECK_TOMCAT];
    json_check_head(&b, t);
    outbuf_puts(&b, ",\"latency_seconds\":");
    if (st->probe.passes + st->probe.failures > 0)
        json_double(&b, st->probe.last_latency_s);
    else
        outbuf_puts(&b, "null");
    outbuf_printf(&b, ",\"passes\":%llu,\"failures\":%llu}",
                  (unsigned long long)st->probe.passes, (unsigned long long)st->probe.failures);

    outbuf_puts(&b, ",");
    const struct licence_state *lic = &st->licence;
    json_check_head(&b, &v->checks[CHECK_LICENCE]);
    outbuf_puts(&b, ",\"source\":");
    outbuf_json_string(&b, lic->source[0] ? lic->source : "none");
    outbuf_puts(&b, ",\"days_left\":");
    if (lic->has_days_left)
        outbuf_printf(&b, "%ld", lic->days_left);
    else
        outbuf_puts(&b, "null");
    outbuf_puts(&b, ",\"expires\":");
    outbuf_json_time(&b, lic->expires > 0 ? (uint64_t)lic->expires * 1000u : 0);
    outbuf_puts(&b, "}");

    outbuf_puts(&b, ",");
    const struct efs_state *efs = &st->efs;
    json_check_head(&b, &v->checks[CHECK_EFS]);
    outbuf_puts(&b, ",\"mode\":");
    outbuf_json_string(&b, efs->mode[0] ? efs->mode : "unknown");
    outbuf_printf(&b, ",\"scanned\":%s", efs->scanned ? "true" : "false");
    if (efs->scanned)
        outbuf_printf(&b, ",\"used_bytes\":%llu,\"files\":%llu",
                      (unsigned long long)efs->total_bytes, (unsigned long long)efs->files);
    else
        outbuf_puts(&b, ",\"used_bytes\":null,\"files\":null");
    outbuf_puts(&b, ",\"budget_bytes\":");
    if (efs->budget_bytes)
        outbuf_printf(&b, "%llu", (unsigned long long)efs->budget_bytes);
    else
        outbuf_puts(&b, "null");
    outbuf_puts(&b, "}");
    json_database(&b, &st->database);
    outbuf_puts(&b, "}");

    outbuf_puts(&b, ",\"hooks\":{\"last_failure\":");
    if (st->hooks_failure[0])
        outbuf_json_string(&b, st->hooks_failure);
    else
        outbuf_puts(&b, "null");
    outbuf_puts(&b, "}");
    json_previous_run(&b, &st->previous_run);
    outbuf_puts(&b, "}");

    return b.overflow ? -1 : (int)b.len;
}

/* ---- /metrics ----------------------------------------------------------- */

/* A label value: backslash, double quote and line feed are escaped. */
static void prom_label(struct outbuf *b, const char *s)
{
    outbuf_put(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            outbuf_put(b, "\\\\", 2);
        else if (*p == '"')
            outbuf_put(b, "\\\"", 2);
        else if (*p == '\n')
            outbuf_put(b, "\\n", 2);
        else
            outbuf_put(b, p, 1);
    }
    outbuf_put(b, "\"", 1);
}

static void prom_head(struct outbuf *b, const char *name, const char *type, const char *help)
{
    outbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_u64(struct outbuf *b, const char *name, const char *type, const char *help,
                     uint64_t value)
{
    prom_head(b, name, type, help);
    outbuf_printf(b, "%s %llu\n", name, (unsigned long long)value);
}

static void prom_i64(struct outbuf *b, const char *name, const char *type, const char *help,
                     int64_t value)
{
    prom_head(b, name, type, help);
    outbuf_printf(b, "%s %lld\n", name, (long long)value);
}

static void prom_double(struct outbuf *b, const char *name, const char *type, const char *help,
                        double value)
{
    prom_head(b, name, type, help);
    outbuf_printf(b, "%s ", name);
    if (isfinite(value))
        outbuf_number(b, value);
    else
        outbuf_puts(b, "NaN");
    outbuf_puts(b, "\n");
}

/* One sample per known word plus the current one if it is not among them:
 * 1 for the current word, 0 for the others. */
static void prom_state_set(struct outbuf *b, const char *name, const char *label, const char *help,
                           const char *const *known, const char *current)
{
    prom_head(b, name, "gauge", help);
    bool seen = false;
    for (const char *const *w = known; *w; w++) {
        bool on = strcmp(*w, current) == 0;
        seen |= on;
        outbuf_printf(b, "%s{%s=", name, label);
        prom_label(b, *w);
        outbuf_printf(b, "} %d\n", on ? 1 : 0);
    }
    if (!seen) {
        outbuf_printf(b, "%s{%s=", name, label);
        prom_label(b, current);
        outbuf_puts(b, "} 1\n");
    }
}


/* Folder names come from another module: never read past the array. */
static const char *folder_name(const struct efs_folder_usage *f, char *out, size_t cap)
{
    size_t n = strnlen(f->name, sizeof f->name);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, f->name, n);
    out[n] = '\0';
    return out;
}

/* The probe's and the traffic count's figures. */
static void metrics_tomcat(struct outbuf *b, const struct agent_state *st)
{
    prom_double(b, "pi_agent_probe_latency_seconds", "gauge",
                "Duration of the last Tomcat probe.", st->probe.last_latency_s);
    prom_u64(b, "pi_agent_probe_passes_total", "counter", "Tomcat probes that passed.",
             st->probe.passes);
    prom_u64(b, "pi_agent_probe_failures_total", "counter", "Tomcat probes that failed.",
             st->probe.failures);

    prom_double(b, "pi_tomcat_probe_seconds", "gauge", "Duration of the last Tomcat probe.",
                st->probe.last_latency_s);
    if (st->traffic.sampled) {
        prom_u64(b, "pi_tomcat_connections", "gauge",
                 "Established connections to Tomcat's port (the agent's probe left out).",
                 st->traffic.connections);
        if (st->traffic.has_bytes)
            prom_u64(b, "pi_tomcat_received_bytes_total", "counter",
                     "Bytes Tomcat received on its connections (the agent's probe left out).",
                     st->traffic.received_bytes);
    }
}

int health_render_metrics(const struct agent_state *st, const struct health_verdict *v,
                          uint64_t now_wall_ms, char *buf, size_t cap)
{
    struct outbuf b;
    outbuf_init(&b, buf, cap);

    prom_u64(&b, "pi_agent_up", "gauge", "1 while pi-agent runs.", 1);
    prom_head(&b, "pi_agent_info", "gauge", "pi-agent build information.");
    outbuf_puts(&b, "pi_agent_info{version=");
    prom_label(&b, PI_AGENT_VERSION);
    outbuf_puts(&b, "} 1\n");
    double uptime = now_wall_ms > st->started_ms && st->started_ms
                        ? (double)(now_wall_ms - st->started_ms) / 1000.0
                        : 0.0;
    prom_double(&b, "pi_agent_uptime_seconds", "gauge", "Seconds since pi-agent started.", uptime);
    prom_u64(&b, "pi_agent_child_running", "gauge", "1 while the dashboard process runs.",
             st->child_running ? 1 : 0);
    prom_u64(&b, "pi_agent_child_restarts_total", "counter",
             "Times the dashboard process was restarted.", st->child_restarts);
    prom_u64(&b, "pi_agent_ready", "gauge", "1 when /health answers 200.", v->ready ? 1 : 0);
    prom_state_set(&b, "pi_agent_health_state", "state", "Overall health state (1 = current).",
                   status_names, health_status_name(v->status));

    prom_head(&b, "pi_agent_check_ok", "gauge", "1 when the check passes on its own terms.");
    for (int i = 0; i < HEALTH_CHECK_COUNT; i++)
        outbuf_printf(&b, "pi_agent_check_ok{check=\"%s\"} %d\n", v->checks[i].name,
                      v->checks[i].ok ? 1 : 0);
    prom_head(&b, "pi_agent_check_blocking", "gauge", "1 when the check fails readiness.");
    for (int i = 0; i < HEALTH_CHECK_COUNT; i++)
        outbuf_printf(&b, "pi_agent_check_blocking{check=\"%s\"} %d\n", v->checks[i].name,
                      v->checks[i].blocking ? 1 : 0);

    metrics_tomcat(&b, st);

    prom_state_set(&b, "pi_agent_licence_state", "status", "Licence status (1 = current).",
                   licence_status_words(), v->checks[CHECK_LICENCE].status);
    /* Seconds, the base unit Prometheus names use (this replaces the former
     * pi_agent_licence_days_left); negative once the licence has expired. */
    if (st->licence.expires > 0) {
        prom_i64(&b, "pi_agent_licence_remaining_seconds", "gauge",
                 "Seconds until the licence expires (negative after).",
                 st->licence.expires - (int64_t)(now_wall_ms / 1000u));
        prom_i64(&b, "pi_agent_licence_expiry_timestamp_seconds", "gauge",
                 "Unix time the licence expires.", st->licence.expires);
    }

    prom_state_set(&b, "pi_agent_efs_state", "status", "Storage status (1 = current).", efs_status_words(),
                   v->checks[CHECK_EFS].status);
    if (st->efs.budget_bytes)
        prom_u64(&b, "pi_agent_efs_budget_bytes", "gauge", "Storage budget in bytes.",
                 st->efs.budget_bytes);
    if (st->efs.scanned) {
        prom_u64(&b, "pi_agent_efs_used_bytes", "gauge", "Bytes used on EFS by all folders.",
                 st->efs.total_bytes);
        prom_u64(&b, "pi_agent_efs_files", "gauge", "Files on EFS in all folders.", st->efs.files);
        prom_double(&b, "pi_agent_efs_scan_duration_seconds", "gauge",
                    "Duration of the last budget scan.", st->efs.scan_seconds);
        int n = st->efs.nfolders;
        if (n > STATE_EFS_FOLDERS_MAX)
            n = STATE_EFS_FOLDERS_MAX;
        char name[sizeof st->efs.folders[0].name + 1];
        if (n > 0) {
            prom_head(&b, "pi_agent_efs_folder_bytes", "gauge", "Bytes used per EFS folder.");
            for (int i = 0; i < n; i++) {
                outbuf_puts(&b, "pi_agent_efs_folder_bytes{folder=");
                prom_label(&b, folder_name(&st->efs.folders[i], name, sizeof name));
                outbuf_printf(&b, "} %llu\n", (unsigned long long)st->efs.folders[i].bytes);
            }
            prom_head(&b, "pi_agent_efs_folder_files", "gauge", "Files per EFS folder.");
            for (int i = 0; i < n; i++) {
                outbuf_puts(&b, "pi_agent_efs_folder_files{folder=");
                prom_label(&b, folder_name(&st->efs.folders[i], name, sizeof name));
                outbuf_printf(&b, "} %llu\n", (unsigned long long)st->efs.folders[i].files);
            }
        }
    }
    if (st->database.configured) {
        prom_u64(&b, "pi_agent_database_up", "gauge",
                 "1 when the repository database accepted a TCP connection at the last check.",
                 st->database.status == DATABASE_OK ? 1 : 0);
        if (st->database.measured)
            prom_double(&b, "pi_agent_database_connect_seconds", "gauge",
                        "Duration of the last database connection attempt.",
                        st->database.last_latency_s);
    }
    if (st->recent_abnormal_known)
        prom_u64(&b, "pi_agent_recent_abnormal_exits", "gauge",
                 "Runs of any task on this storage that ended abnormally in the last hour.",
                 st->recent_abnormal_exits);
    return b.overflow ? -1 : (int)b.len;
}

/* ---- /live -------------------------------------------------------------- */

bool health_live(const struct agent_state *st)
{
    return st->child_running && !st->startup_timed_out;
}

int health_render_live(const struct agent_state *st, char *buf, size_t cap)
{
    struct outbuf b;
    outbuf_init(&b, buf, cap);
    const char *status = health_live(st)         ? "alive"
                         : st->startup_timed_out ? "startup-timeout"
                                                 : "child-not-running";
    outbuf_puts(&b, "{\"status\":");
    outbuf_json_string(&b, status);
    outbuf_printf(&b, ",\"child_running\":%s,\"pid\":%ld,\"reason\":",
                  st->child_running ? "true" : "false", (long)st->child_pid);
    if (st->startup_timed_out)
        outbuf_json_string(&b, st->live_reason);
    else if (!st->child_running)
        outbuf_json_string(&b, "the dashboard process is not running");
    else
        outbuf_puts(&b, "null");
    outbuf_puts(&b, "}");
    return b.overflow ? -1 : (int)b.len;
}
