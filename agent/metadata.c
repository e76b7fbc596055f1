/* metadata: one GET of the task metadata endpoint, in a worker. */
#include "metadata.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "fetch.h"
#include "log.h"
#include "worker.h"

#define METADATA_TIMEOUT_MS 1000

static void copy_field(const cJSON *obj, const char *key, char *out, size_t cap)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsString(item) && item->valuestring)
        snprintf(out, cap, "%s", item->valuestring);
    else if (cJSON_IsNumber(item))
        snprintf(out, cap, "%g", item->valuedouble);
}

int metadata_parse_task(const char *json, size_t len, struct task_metadata *out)
{
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return -1;
    }
    copy_field(root, "Cluster", out->cluster, sizeof out->cluster);
    copy_field(root, "TaskARN", out->task_arn, sizeof out->task_arn);
    copy_field(root, "Family", out->family, sizeof out->family);
    copy_field(root, "Revision", out->revision, sizeof out->revision);
    copy_field(root, "AvailabilityZone", out->availability_zone, sizeof out->availability_zone);
    out->known = true;
    cJSON_Delete(root);
    return 0;
}

/* The worker's report: the parsed metadata, or an error line. */
struct metadata_report {
    int ok;
    char error[256];
    struct task_metadata md;
};

static int metadata_worker(void *arg, int out_fd)
{
    const char *base = arg;
    struct metadata_report rep = { 0 };
    char url[1024];
    struct fetch_response res = { 0 };

    snprintf(url, sizeof url, "%s/task", base);
    struct fetch_request req = {
        .url = url,
        .connect_timeout_ms = METADATA_TIMEOUT_MS,
        .total_timeout_ms = METADATA_TIMEOUT_MS,
        .allow_http = true, /* the endpoint is link-local plain http by design */
        .max_body = 256 * 1024,
    };
    if (fetch_global_init() != 0) {
        snprintf(rep.error, sizeof rep.error, "libcurl initialisation failed");
    } else if (fetch_url(&req, &res) != 0) {
        snprintf(rep.error, sizeof rep.error, "%s", res.error);
    } else if (res.status != 200) {
        snprintf(rep.error, sizeof rep.error, "HTTP status %ld", res.status);
    } else if (metadata_parse_task(res.body ? res.body : "", res.len, &rep.md) != 0) {
        snprintf(rep.error, sizeof rep.error, "the answer is not a JSON object");
    } else {
        rep.ok = 1;
    }
    fetch_response_free(&res);
    fetch_global_cleanup();
    return worker_write_all(out_fd, &rep, sizeof rep) == 0 ? 0 : 1;
}

void metadata_load(struct task_metadata *out)
{
    const char *base = config_env_str("ECS_CONTAINER_METADATA_URI_V4");
    struct worker_result res;
    char redacted[512];

    memset(out, 0, sizeof *out);
    if (base == NULL)
        return;
    fetch_redact_url(base, redacted, sizeof redacted);
    /* The worker's own curl timeout fires first; this is the backstop. */
    if (worker_run("task-metadata", metadata_worker, (void *)base, METADATA_TIMEOUT_MS + 1000, &res) != 0)
        return;
    if (res.len == sizeof(struct metadata_report)) {
        struct metadata_report rep;
        memcpy(&rep, res.data, sizeof rep);
        if (rep.ok) {
            *out = rep.md;
            char family[192];
            snprintf(family, sizeof family, "%s:%s", out->family, out->revision);
            log_info("ECS task", LF_STR("cluster", out->cluster), LF_STR("task_arn", out->task_arn),
                     LF_STR("family", family), LF_STR("availability_zone", out->availability_zone));
        } else {
            log_warn("cannot read the ECS task metadata", LF_STR("url", redacted),
                     LF_STR("error", rep.error));
        }
    } else {
        log_warn("cannot read the ECS task metadata", LF_STR("url", redacted),
                 LF_STR("error", res.timed_out ? "timed out" : "the worker failed"));
    }
    worker_result_free(&res);
}

/* ---- the task's memory limit ---------------------------------------------- */

int metadata_parse_memory_mib(const char *json, size_t len, unsigned long long *mib)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *limits = cJSON_GetObjectItemCaseSensitive(root, "Limits");
    const cJSON *mem = cJSON_GetObjectItemCaseSensitive(limits, "Memory");
    int rc = -1;
    /* Whole MiB, at most a petabyte: anything else is not a limit. */
    if (cJSON_IsNumber(mem) && mem->valuedouble >= 1 && mem->valuedouble <= 1e9 &&
        mem->valuedouble == (double)(unsigned long long)mem->valuedouble) {
        *mib = (unsigned long long)mem->valuedouble;
        rc = 0;
    }
    cJSON_Delete(root);
    return rc;
}

int metadata_memory_command(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: pi-agent task-memory   (the ECS task's memory limit in MiB)\n");
        return 2;
    }
    const char *base = config_env_str("ECS_CONTAINER_METADATA_URI_V4");
    if (base == NULL) {
        fprintf(stderr, "pi-agent task-memory: ECS_CONTAINER_METADATA_URI_V4 is not set (not on ECS)\n");
        return 1;
    }
    char url[1024], redacted[512];
    snprintf(url, sizeof url, "%s/task", base);
    fetch_redact_url(url, redacted, sizeof redacted);
    struct fetch_response res = { 0 };
    struct fetch_request req = {
        .url = url,
        .connect_timeout_ms = METADATA_TIMEOUT_MS,
        .total_timeout_ms = METADATA_TIMEOUT_MS,
        .allow_http = true, /* the endpoint is link-local plain http by design */
        .max_body = 256 * 1024,
    };
    int rc = 1;
    unsigned long long mib;
    if (fetch_global_init() != 0)
        fprintf(stderr, "pi-agent task-memory: libcurl initialisation failed\n");
    else if (fetch_url(&req, &res) != 0)
        fprintf(stderr, "pi-agent task-memory: %s: %s\n", redacted, res.error);
    else if (res.status != 200)
        fprintf(stderr, "pi-agent task-memory: %s: HTTP status %ld\n", redacted, res.status);
    else if (metadata_parse_memory_mib(res.body ? res.body : "", res.len, &mib) != 0)
        fprintf(stderr, "pi-agent task-memory: %s has no Limits.Memory\n", redacted);
    else {
        printf("%llu\n", mib);
        rc = 0;
    }
    fetch_response_free(&res);
    fetch_global_cleanup();
    return rc;
}
