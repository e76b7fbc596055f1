/* licence_handover: see licence_handover.h. */
#include "licence_handover.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "procstat.h"
#include "util.h"
#include "worker.h"

/* Writes dir/name through a temporary file and rename, so that a reader
 * sees the old or the new content, never half of one. The hand-over
 * describes this run only and is written again at every start: atomic, but
 * not worth fsyncs on the start path. */
static int write_handover_file(const char *dir, const char *name, const void *data, size_t len,
                               mode_t mode, const struct run_as *owner, char *error, size_t cap)
{
    char path[512], tmp[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    /* A random part and O_EXCL: an earlier run's leftover (or a file linked
     * there) is never truncated. (The EFS cache goes through fsafe.) */
    int fd = -1;
    for (int attempt = 0; attempt < 8 && fd < 0; attempt++) {
        uint64_t rnd = util_random64();
        snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.%ld.%016llx", dir, name, (long)getpid(),
                 (unsigned long long)rnd);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        snprintf(error, cap, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    const char *step = NULL;
    if (fchmod(fd, mode) != 0)
        step = "chmod";
    else if (owner && owner->set && fchown(fd, owner->uid, owner->gid) != 0)
        step = "chown";
    else if (worker_write_all(fd, data, len) != 0)
        step = "write";
    int saved = errno;
    if (close(fd) != 0 && !step) {
        step = "close";
        saved = errno;
    }
    if (!step && rename(tmp, path) != 0) {
        step = "rename";
        saved = errno;
    }
    if (step) {
        unlink(tmp);
        snprintf(error, cap, "cannot write %s (%s): %s", path, step, strerror(saved));
        return -1;
    }
    return 0;
}

static int ensure_dir(const char *path, mode_t mode)
{
    if (mkdir(path, mode) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
        errno = ENOTDIR;
    }
    return -1;
}

static cJSON *add_date(cJSON *obj, const char *key, int64_t t)
{
    if (t <= 0)
        return cJSON_AddNullToObject(obj, key);
    char iso[32];
    licence_iso8601(t, iso, sizeof(iso));
    return cJSON_AddStringToObject(obj, key, iso);
}

cJSON *licence_status_object(const struct licence_state *st, const struct licence_claims *claims,
                             bool have_claims)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    bool ok = cJSON_AddStringToObject(o, "status", licence_status_name(st->status)) &&
              cJSON_AddStringToObject(o, "reason", st->reason) &&
              cJSON_AddStringToObject(o, "source", st->source);
    if (ok && have_claims) {
        cJSON *mods = NULL;
        ok = cJSON_AddStringToObject(o, "subject", claims->sub) &&
             cJSON_AddNumberToObject(o, "users", (double)claims->users) &&
             (mods = cJSON_AddArrayToObject(o, "modules")) != NULL &&
             add_date(o, "not_before", claims->has_nbf ? claims->nbf : 0) &&
             add_date(o, "expires", claims->exp) &&
             cJSON_AddNumberToObject(o, "days_left", (double)st->days_left) &&
             (claims->has_deployment ? cJSON_AddStringToObject(o, "deployment", claims->deployment)
                                     : cJSON_AddNullToObject(o, "deployment")) != NULL;
        for (int i = 0; ok && i < claims->nmodules; i++) {
            cJSON *m = cJSON_CreateString(claims->modules[i]);
            ok = m && cJSON_AddItemToArray(mods, m);
        }
    } else if (ok) {
        ok = cJSON_AddNullToObject(o, "subject") && cJSON_AddNullToObject(o, "users") &&
             cJSON_AddNullToObject(o, "modules") && cJSON_AddNullToObject(o, "not_before") &&
             cJSON_AddNullToObject(o, "expires") && cJSON_AddNullToObject(o, "days_left");
    }
    ok = ok && add_date(o, "checked_at", (int64_t)time(NULL));
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

char *licence_json_print(cJSON *o)
{
    char *out = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return out;
}

/* The status file also names its writer (pid and start time), so that
 * `pi-agent licence` can tell the running agent's view from a file left
 * behind by one that is gone. */
static char *status_file_json(const struct licence_state *st, const struct licence_claims *claims,
                              bool have_claims)
{
    cJSON *o = licence_status_object(st, claims, have_claims);
    struct procstat self;
    if (o && procstat_read(0, &self) == 0) {
        cJSON *w = cJSON_AddObjectToObject(o, "writer");
        if (!w || !cJSON_AddNumberToObject(w, "pid", (double)getpid()) ||
            !cJSON_AddNumberToObject(w, "start_ticks", (double)self.start_ticks)) {
            cJSON_Delete(o);
            return NULL;
        }
    }
    return licence_json_print(o);
}

int licence_handover_write(const char *run_dir, const struct licence_resolution *r,
                           const struct run_as *owner, bool with_licence)
{
    char error[600];
    if (ensure_dir(run_dir, 0755) != 0) {
        log_error("cannot create the licence hand-over directory", LF_STR("path", run_dir),
                  LF_STR("error", strerror(errno)), LF_STR("variable", "PI_AGENT_RUN_DIR"));
        return -1;
    }
    int written = 0;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", run_dir, LICENCE_HANDOVER_FILE);
    if (!with_licence) {
        /* Only the status changed: the licence file stays as it is. */
    } else if (r->licence && licence_status_acceptable(r->st.status)) {
        if (write_handover_file(run_dir, LICENCE_HANDOVER_FILE, r->licence, r->len, 0600, owner, error,
                                sizeof(error)) != 0)
            log_error("cannot hand the licence over", LF_STR("error", error));
        else
            written = 1;
    } else if (unlink(path) != 0 && errno != ENOENT) {
        log_warn("cannot remove the previous licence file", LF_STR("path", path),
                 LF_STR("error", strerror(errno)));
    }
    char *json = status_file_json(&r->st, &r->claims, r->have_claims);
    if (!json) {
        log_error("out of memory writing the licence status");
    } else {
        size_t n = strlen(json);
        json[n] = '\n';
        if (write_handover_file(run_dir, LICENCE_STATUS_FILE, json, n + 1, 0644, NULL, error,
                                sizeof(error)) != 0)
            log_error("cannot write the licence status", LF_STR("error", error));
        free(json);
    }
    return written;
}

void licence_handover_env(const struct licence_config *cfg, const struct licence_resolution *r,
                          int written, struct childenv *env)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", cfg->run_dir, LICENCE_HANDOVER_FILE);
    if (childenv_set(env, "PI_LICENCE_STATUS", licence_status_name(r->st.status)) != 0 ||
        (written == 1 && childenv_set(env, "PI_LICENCE_FILE", path) != 0)) {
        log_error("out of memory setting the licence variables");
    }
    if (written != 1)
        childenv_unset(env, "PI_LICENCE_FILE");
    if (cfg->inline_env && r->licence && licence_status_acceptable(r->st.status)) {
        if (childenv_set(env, "PI_LICENCE", r->licence) != 0)
            log_error("out of memory setting PI_LICENCE for the dashboard");
        else
            log_info("the dashboard gets the resolved licence in PI_LICENCE",
                     LF_STR("source", r->st.source));
    }
}
