/* licence_cli: see licence_cli.h. */
#include "licence_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "fetch.h"
#include "licence_handover.h"
#include "licence_resolve.h"
#include "log.h"
#include "loop.h"
#include "procstat.h"
#include "util.h"

/* Resolves in this process, without writing the cache or hand-over. */
static void resolve_here(const struct licence_config *cfg, struct licence_resolution *r)
{
    struct licence_resolve_opts opts = { .cfg = cfg };
    if (fetch_global_init() != 0)
        log_warn("cannot initialise libcurl");
    licence_resolve(&opts, r);
    fetch_global_cleanup();
}

int licence_check(const struct licence_config *cfg, struct licence_state *out)
{
    struct licence_resolution r;
    resolve_here(cfg, &r);
    *out = r.st;
    out->since_ms = wall_now_ms();
    int rc = licence_status_acceptable(r.st.status) ? 0 : 1;
    licence_resolution_free(&r);
    return rc;
}

/* Whether the writer recorded in a status file is this container's running
 * agent: the same process (pid and start time) and PID 1, or a subreaper
 * right under PID 1 (ECS's initProcessEnabled). Else why not, in why. */
static bool writer_is_running_agent(const cJSON *status, char *why, size_t cap)
{
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(status, "writer");
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(w, "pid");
    const cJSON *ticks = cJSON_GetObjectItemCaseSensitive(w, "start_ticks");
    if (!cJSON_IsNumber(pid) || !cJSON_IsNumber(ticks) || pid->valuedouble < 1 ||
        pid->valuedouble > 4194304) {
        snprintf(why, cap, "it does not name the agent that wrote it");
        return false;
    }
    pid_t p = (pid_t)pid->valuedouble;
    struct procstat ps;
    if (procstat_read(p, &ps) != 0) {
        snprintf(why, cap, "its writer (pid %d) is not running in this container", (int)p);
        return false;
    }
    if ((double)ps.start_ticks != ticks->valuedouble) {
        snprintf(why, cap, "pid %d is no longer the agent that wrote it (restarted?)", (int)p);
        return false;
    }
    if (p != 1 && ps.ppid != 1) {
        snprintf(why, cap, "its writer (pid %d) is not this container's PID 1 nor a subreaper "
                 "under it", (int)p);
        return false;
    }
    return true;
}

static int print_status(cJSON *o, const char *view, const char *note)
{
    if (!o || !cJSON_AddStringToObject(o, "view", view) ||
        (note && !cJSON_AddStringToObject(o, "view_note", note))) {
        cJSON_Delete(o);
        fprintf(stderr, "pi-agent: out of memory\n");
        return -1;
    }
    char *out = licence_json_print(o);
    if (!out) {
        fprintf(stderr, "pi-agent: out of memory\n");
        return -1;
    }
    printf("%s\n", out);
    free(out);
    return 0;
}

int licence_command(void)
{
    struct licence_config cfg;
    struct config_error err = { "" };
    if (licence_config_load(&cfg, &err) != 0) {
        fprintf(stderr, "pi-agent: configuration error: %s\n", err.msg);
        return EXIT_CONFIG;
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", cfg.run_dir, LICENCE_STATUS_FILE);
    size_t len;
    char *json = licence_read_small_file(path, 64 * 1024, &len);
    enum licence_status status = LS_MALFORMED;
    char note[STATE_REASON_MAX] = "";
    int rc = 0;
    if (json) {
        /* The running agent's view (what the dashboard was given), but only
         * while that agent runs: a file left by one that is gone, or written
         * on a host, says nothing about now. */
        cJSON *o = cJSON_ParseWithLength(json, len);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "status");
        free(json);
        if (!cJSON_IsString(s) || licence_status_parse(s->valuestring, &status) != 0) {
            fprintf(stderr, "pi-agent: %s is not a licence status file\n", path);
            cJSON_Delete(o);
            licence_config_free(&cfg);
            return 1;
        }
        char why[160];
        if (writer_is_running_agent(o, why, sizeof(why))) {
            rc = print_status(o, "running-agent", NULL);
            o = NULL;
        } else {
            snprintf(note, sizeof(note), "%s was set aside: %.160s; resolved afresh",
                     LICENCE_STATUS_FILE, why);
            log_info("the licence status file is not the running agent's: resolving afresh",
                     LF_STR("path", path), LF_STR("why", why));
        }
        cJSON_Delete(o);
        if (!note[0]) {
            licence_config_free(&cfg);
            return rc != 0 ? 1 : licence_status_acceptable(status) ? 0 : 1;
        }
    }
    /* No running agent has written a status: resolve now, writing nothing
     * (log lines go to stderr, so stdout holds only the status). */
    struct licence_resolution r;
    resolve_here(&cfg, &r);
    status = r.st.status;
    cJSON *o = licence_status_object(&r.st, &r.claims, r.have_claims);
    licence_resolution_free(&r);
    rc = print_status(o, "resolved-now", note[0] ? note : NULL);
    fflush(stdout);
    licence_config_free(&cfg);
    return rc != 0 ? 1 : licence_status_acceptable(status) ? 0 : 1;
}
