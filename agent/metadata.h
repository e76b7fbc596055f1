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

/* Pure: the task's memory limit in MiB (Limits.Memory of the /task JSON).
 * Returns 0, or -1 when there is none (absent, not a positive number). */
int metadata_parse_memory_mib(const char *json, size_t len, unsigned long long *mib);

/* `pi-agent task-memory`: prints the task's memory limit in MiB from
 * ECS_CONTAINER_METADATA_URI_V4/task (for the heap hook on Fargate, where
 * the cgroup may show no limit). Exit 0 with the number; 1 with one line on
 * stderr when there is no endpoint, no answer within 1 s, or no limit. */
int metadata_memory_command(int argc, char **argv);

#endif
