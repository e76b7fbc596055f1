/* emf: see emf.h. */
#include "emf.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "loop.h"
#include "readiness.h"

int emf_namespace_valid(const char *ns)
{
    size_t n = strlen(ns);
    if (n == 0 || n > 255 || strncmp(ns, "AWS/", 4) == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)ns[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  strchr(".-_/#: ", c) != NULL;
        if (!ok)
            return 0;
    }
    return 1;
}

/* The task metadata gives the cluster's ARN on Fargate
 * (arn:aws:ecs:REGION:ACCOUNT:cluster/NAME) and may give the bare name
 * elsewhere; the dimension is the name, as the ECS console and Container
 * Insights show it and as operators filter by it. */
static const char *cluster_short_name(const char *cluster)
{
    const char *res = strncmp(cluster, "arn:", 4) == 0 ? strstr(cluster, ":cluster/") : NULL;
    return res && res[9] ? res + 9 : cluster;
}

struct emf_metric {
    const char *name;
    const char *unit;
    bool present;
    bool integral;
    uint64_t u;
    double d;
};

int emf_render(const struct agent_state *st, const struct health_verdict *v,
               const char *ns, uint64_t now_wall_ms, char *buf, size_t cap)
{
    const struct efs_state *efs = &st->efs;
    struct emf_metric m[] = {
        { "Healthy", "None", true, true, v->ready ? 1 : 0, 0 },
        { "HealthState", "None", true, true, (uint64_t)v->status, 0 },
        { "ChildRestarts", "Count", true, true, st->child_restarts, 0 },
        { "LicenceDaysLeft", "None", st->licence.has_days_left, false, 0,
          (double)st->licence.days_left },
        { "EfsUsedBytes", "Bytes", efs->scanned, true, efs->total_bytes, 0 },
        { "EfsBudgetBytes", "Bytes", efs->budget_bytes > 0, true, efs->budget_bytes, 0 },
        { "TomcatProbeLatency", "Milliseconds", st->probe.passes + st->probe.failures > 0,
          false, 0, st->probe.last_latency_s * 1000.0 },
        { "DatabaseUp", "None", st->database.configured, true,
          st->database.status == DATABASE_OK ? 1 : 0, 0 },
        { "DatabaseConnectSeconds", "Seconds", st->database.configured && st->database.measured,
          false, 0, st->database.last_latency_s },
        { "TomcatConnections", "Count", st->traffic.sampled, true, st->traffic.connections, 0 },
        { "TomcatReceivedBytesPerSecond", "Bytes/Second", st->traffic.has_rate, false, 0,
          st->traffic.received_bytes_per_s },
        { "RecentAbnormalExits", "Count", st->recent_abnormal_known, true,
          st->recent_abnormal_exits, 0 },
    };
    const size_t nm = sizeof m / sizeof m[0];

    /* Dimensions: only those the task metadata actually gave us. An empty
     * DimensionSet is allowed by the specification. */
    const char *dim_names[2];
    const char *dim_values[2];
    size_t nd = 0;
    if (st->metadata.known && st->metadata.cluster[0]) {
        dim_names[nd] = "ClusterName";
        dim_values[nd++] = cluster_short_name(st->metadata.cluster);
    }
    if (st->metadata.known && st->metadata.family[0]) {
        dim_names[nd] = "TaskDefinitionFamily";
        dim_values[nd++] = st->metadata.family;
    }

    struct outbuf b;
    outbuf_init(&b, buf, cap);
    outbuf_printf(&b, "{\"_aws\":{\"Timestamp\":%llu,\"CloudWatchMetrics\":[{\"Namespace\":",
                  (unsigned long long)now_wall_ms);
    outbuf_json_string(&b, ns);
    outbuf_puts(&b, ",\"Dimensions\":[[");
    for (size_t i = 0; i < nd; i++) {
        if (i)
            outbuf_puts(&b, ",");
        outbuf_json_string(&b, dim_names[i]);
    }
    outbuf_puts(&b, "]],\"Metrics\":[");
    bool first = true;
    for (size_t i = 0; i < nm; i++) {
        if (!m[i].present)
            continue;
        outbuf_printf(&b, "%s{\"Name\":\"%s\",\"Unit\":\"%s\"}", first ? "" : ",", m[i].name,
                      m[i].unit);
        first = false;
    }
    outbuf_puts(&b, "]}]}");
    for (size_t i = 0; i < nd; i++) {
        outbuf_puts(&b, ",");
        outbuf_json_string(&b, dim_names[i]);
        outbuf_puts(&b, ":");
        outbuf_json_string(&b, dim_values[i]);
    }
    for (size_t i = 0; i < nm; i++) {
        if (!m[i].present)
            continue;
        if (m[i].integral)
            outbuf_printf(&b, ",\"%s\":%llu", m[i].name, (unsigned long long)m[i].u);
        else if (isfinite(m[i].d)) { /* NaN and infinities are not JSON numbers */
            outbuf_printf(&b, ",\"%s\":", m[i].name);
            outbuf_number(&b, m[i].d);
        }
        else
            outbuf_printf(&b, ",\"%s\":0", m[i].name);
    }
    /* Plain members for Logs Insights; not metrics. The full cluster ARN
     * tells apart clusters of one name in other accounts or regions without
     * splitting the metrics by another dimension. */
    outbuf_puts(&b, ",\"HealthStatus\":");
    outbuf_json_string(&b, health_status_name(v->status));
    if (st->metadata.known && strncmp(st->metadata.cluster, "arn:", 4) == 0) {
        outbuf_puts(&b, ",\"ClusterArn\":");
        outbuf_json_string(&b, st->metadata.cluster);
    }
    outbuf_puts(&b, "}");
    return b.overflow ? -1 : (int)b.len;
}

int emf_config_load(struct emf_config *cfg, struct config_error *err)
{
    unsigned long long v;
    memset(cfg, 0, sizeof *cfg);
    bool on_ecs = config_env_str("ECS_CONTAINER_METADATA_URI_V4") != NULL;
    if (config_env_bool("PI_AGENT_EMF", on_ecs, &cfg->enabled, err))
        return -1;
    if (config_env_uint("PI_AGENT_EMF_INTERVAL_SECONDS", 60, 1, 86400, &v, err))
        return -1;
    cfg->interval_s = (unsigned)v;
    const char *ns = config_env_str("PI_AGENT_EMF_NAMESPACE");
    if (ns == NULL)
        ns = "Panintelligence/Agent";
    if (!emf_namespace_valid(ns))
        return config_fail(err, "PI_AGENT_EMF_NAMESPACE",
                           "expected 1-255 letters, digits or . - _ / # : and spaces, not "
                           "starting with AWS/, got \"%.64s\"", ns);
    snprintf(cfg->ns, sizeof cfg->ns, "%s", ns);
    return 0;
}

static void on_emf_timer(struct loop *loop, void *ctx)
{
    struct emf *e = ctx;
    char line[4096];
    (void)loop;
    int n = emf_render(e->state, readiness_verdict(e->readiness), e->cfg->ns, wall_now_ms(),
                       line, sizeof line);
    if (n < 0) {
        log_warn("EMF line did not fit its buffer: skipped");
        return;
    }
    log_raw_line(line);
}

int emf_attach(struct emf *e, struct loop *loop, const struct emf_config *cfg,
               struct agent_state *state, const struct readiness *readiness)
{
    if (!cfg->enabled)
        return 0;
    e->cfg = cfg;
    e->state = state;
    e->readiness = readiness;
    uint64_t every = (uint64_t)cfg->interval_s * 1000u;
    if (loop_timer_add(loop, every, every, on_emf_timer, e) < 0) {
        log_error("cannot start the EMF timer");
        return -1;
    }
    log_info("CloudWatch EMF metrics enabled", LF_STR("namespace", cfg->ns),
             LF_INT("interval_s", cfg->interval_s));
    return 0;
}
