/* health_report: what the health endpoint says, decided and rendered from
 * struct agent_state alone. Everything here is pure (state in, bytes out):
 * no clock reads, no file system, no network, so each request costs only
 * formatting and the rules are unit-tested directly.
 *
 * Readiness (/health 200) needs: the child running, the Tomcat probe
 * passing, storage not failed (and not over budget when the policy says
 * over = fail), and the licence acceptable when the policy requires it. */
#ifndef PI_HEALTH_REPORT_H
#define PI_HEALTH_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state.h"

enum health_status { HEALTH_STARTING, HEALTH_OK, HEALTH_DRAINING, HEALTH_UNHEALTHY };
#define HEALTH_STATUS_COUNT 4

/* The rules that are configuration, not state. */
struct health_policy {
    bool licence_required;  /* PI_AGENT_LICENCE_REQUIRED=true */
    bool efs_over_fails;    /* PI_EFS_OVER_BUDGET=fail */
};

enum health_check_id { CHECK_TOMCAT, CHECK_LICENCE, CHECK_EFS };
#define HEALTH_CHECK_COUNT 3

struct health_check {
    const char *name;     /* tomcat, licence, efs */
    const char *status;   /* the module's own status word ("unknown" if unset) */
    const char *reason;   /* "" when there is nothing to say */
    uint64_t since_ms;    /* wall clock, 0 when unknown */
    bool ok;              /* the check passes on its own terms */
    bool blocking;        /* it fails and that fails readiness */
};

struct health_verdict {
    enum health_status status;
    bool ready;                                  /* status == HEALTH_OK */
    struct health_check checks[HEALTH_CHECK_COUNT];
};

const char *health_status_name(enum health_status s);

/* The decision. Pure. */
void health_evaluate(const struct agent_state *st, const struct health_policy *policy,
                     struct health_verdict *v);

/* A bounded output buffer: appends stop (and overflow is set) at cap. */
struct outbuf {
    char *p;
    size_t len, cap;
    bool overflow;
};

void outbuf_init(struct outbuf *b, char *mem, size_t cap);
void outbuf_put(struct outbuf *b, const char *s, size_t n);
void outbuf_puts(struct outbuf *b, const char *s);
void outbuf_printf(struct outbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal, quotes included. */
void outbuf_json_string(struct outbuf *b, const char *s);
/* ISO 8601 UTC with milliseconds as a JSON string, or null for 0. */
void outbuf_json_time(struct outbuf *b, uint64_t wall_ms);
/* A finite number, valid in JSON and in the Prometheus text format: an
 * integral value up to 2^53 as an integer (a Unix time or a byte count keeps
 * every digit), any other as the shortest decimal that reads back as the same
 * double. The caller handles NaN and infinities. */
void outbuf_number(struct outbuf *b, double d);

/* The /health body (JSON, one line). Returns its length, or -1 when cap is
 * too small. Holds no secret: only status words, reasons, figures. */
int health_render_json(const struct agent_state *st, const struct health_verdict *v,
                       char *buf, size_t cap);

/* The /metrics body, Prometheus text exposition format 0.0.4. now_wall_ms
 * is passed in (uptime) to keep this pure. Returns length or -1. */
int health_render_metrics(const struct agent_state *st, const struct health_verdict *v,
                          uint64_t now_wall_ms, char *buf, size_t cap);

/* Liveness (/live): the child runs and the startup budget has not run out.
 * Readiness problems (licence, storage, probe) never fail it: ECS replaces
 * a task whose container check fails, which cures none of them. */
bool health_live(const struct agent_state *st);
/* The /live body (JSON, one line). Returns its length, or -1. */
int health_render_live(const struct agent_state *st, char *buf, size_t cap);

#endif
