/* metadata: the ECS task metadata endpoint (v4), read once at start-up so
 * that the first log lines say which cluster, task and zone this is. */
#ifndef PI_METADATA_H
#define PI_METADATA_H

#include <stddef.h>

#include "state.h"

/* Pure: fills out from the JSON of GET ${ECS_CONTAINER_METADATA_URI_V4}/task.
 * Returns 0 when it was a JSON object (missing fields stay empty), -1 else. */
int metadata_parse_task(const char *json, size_t len, struct task_metadata *out);

/* When ECS_CONTAINER_METADATA_URI_V4 is set: fetches /task in a worker with
 * a 1 s limit, fills *out and logs one line. A failure is one warning. */
void metadata_load(struct task_metadata *out);

#endif
