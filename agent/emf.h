/* emf: one CloudWatch Embedded Metric Format line every
 * PI_AGENT_EMF_INTERVAL_SECONDS on stderr, so the awslogs driver turns the
 * agent's key figures into CloudWatch metrics without an agent or API call.
 * Document shape (EMF specification):
 *   {"_aws":{"Timestamp":<ms>,"CloudWatchMetrics":[{"Namespace":"...",
 *     "Dimensions":[["ClusterName","TaskDefinitionFamily"]],
 *     "Metrics":[{"Name":"Healthy","Unit":"None"},...]}]},
 *    "ClusterName":"...","TaskDefinitionFamily":"...","Healthy":1,...}
 * ClusterName is the cluster's short name; when the metadata gave its ARN,
 * the ARN is the plain member ClusterArn.
 * Every dimension and metric named in the directive is a root member. */
#ifndef PI_EMF_H
#define PI_EMF_H

#include <stddef.h>
#include <stdint.h>

#include "health_report.h"

#include "config.h"

struct loop;
struct agent_state;
struct readiness;

struct emf_config {
    bool enabled;            /* PI_AGENT_EMF, default: ECS_CONTAINER_METADATA_URI_V4 set */
    unsigned interval_s;     /* PI_AGENT_EMF_INTERVAL_SECONDS, default 60 */
    char ns[256];            /* PI_AGENT_EMF_NAMESPACE, default Panintelligence/Agent */
};

/* Reads the variables above. Returns 0, or -1 with err naming the variable. */
int emf_config_load(struct emf_config *cfg, struct config_error *err);

/* Pure: renders the line (no newline) into buf. Returns its length, or -1
 * when cap is too small. */
int emf_render(const struct agent_state *st, const struct health_verdict *v,
               const char *ns, uint64_t now_wall_ms, char *buf, size_t cap);

/* Pure: checks a CloudWatch namespace (1-255 characters of letters, digits
 * and . - _ / # : space, not starting with "AWS/"). */
int emf_namespace_valid(const char *ns);

/* The periodic line's handle, held by its owner (struct agent) for as long
 * as the loop runs. */
struct emf {
    const struct emf_config *cfg;
    struct agent_state *state;
    const struct readiness *readiness;
};

/* Starts the periodic EMF line when cfg->enabled is set (a no-op otherwise).
 * Returns 0, or -1 when the timer cannot be added. */
int emf_attach(struct emf *e, struct loop *loop, const struct emf_config *cfg,
               struct agent_state *state, const struct readiness *readiness);

#endif
