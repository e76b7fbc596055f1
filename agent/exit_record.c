/* exit_record: see exit_record.h. */
#include "exit_record.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cjson/cJSON.h>

static const char *const reasons[] = {
    EXIT_REASON_STOPPED, EXIT_REASON_EXITED,  EXIT_REASON_SIGNAL,  EXIT_REASON_OOM,
    EXIT_REASON_KILLED_AFTER_GRACE, EXIT_REASON_STARTUP_TIMEOUT, EXIT_REASON_LICENCE,
    EXIT_REASON_STORAGE, EXIT_REASON_HOOK, EXIT_REASON_CONFIG, EXIT_REASON_KILLED, NULL,
};

bool exit_reason_known(const char *word)
{
    for (const char *const *r = reasons; *r; r++)
        if (strcmp(*r, word) == 0)
            return true;
    return false;
}

bool exit_reason_abnormal(const char *reason, int exit_status)
{
    if (strcmp(reason, EXIT_REASON_STOPPED) == 0)
        return false;
    if (strcmp(reason, EXIT_REASON_EXITED) == 0)
        return exit_status != 0;
    return true;
}

/* ---- format ------------------------------------------------------------- */

static int add_ms(cJSON *o, const char *key, uint64_t ms)
{
    cJSON *v = ms ? cJSON_CreateNumber((double)ms) : cJSON_CreateNull();
    return v && cJSON_AddItemToObject(o, key, v) ? 0 : -1;
}

int exit_record_format(const struct exit_record *rec, char *buf, size_t cap)
{
    cJSON *o = cJSON_CreateObject();
    bool ended = rec->end_ms != 0;
    int rc = -1;
    if (o == NULL)
        return -1;
    if (!cJSON_AddStringToObject(o, "format", EXIT_RECORD_FORMAT) ||
        !cJSON_AddStringToObject(o, "task", rec->task) ||
        !cJSON_AddStringToObject(o, "family", rec->family) || add_ms(o, "start_ms", rec->start_ms) ||
        add_ms(o, "ready_ms", rec->ready_ms) || add_ms(o, "stop_ms", rec->stop_ms) ||
        add_ms(o, "end_ms", rec->end_ms))
        goto out;
    if (ended ? !cJSON_AddStringToObject(o, "reason", rec->reason)
              : !cJSON_AddNullToObject(o, "reason"))
        goto out;
    if (ended && rec->exit_status >= 0 ? !cJSON_AddNumberToObject(o, "exit_status", rec->exit_status)
                                       : !cJSON_AddNullToObject(o, "exit_status"))
        goto out;
    if (!cJSON_AddStringToObject(o, "probe", rec->probe) ||
        !cJSON_AddStringToObject(o, "detail", rec->detail))
        goto out;
    if (cJSON_PrintPreallocated(o, buf, (int)(cap > 1 ? cap - 1 : 0), false)) {
        size_t n = strlen(buf);
        if (n + 1 < cap) {
            buf[n] = '\n';
            buf[n + 1] = '\0';
            rc = (int)n + 1;
        }
    }
out:
    cJSON_Delete(o);
    return rc;
}

/* ---- parse -------------------------------------------------------------- */

static int get_string(const cJSON *o, const char *key, char *out, size_t cap, bool required)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    out[0] = '\0';
    if (v == NULL || cJSON_IsNull(v))
        return required ? -1 : 0;
    if (!cJSON_IsString(v) || v->valuestring == NULL)
        return -1;
    size_t n = strlen(v->valuestring);
    if (n >= cap)
        n = cap - 1; /* a longer text is cut, not refused */
    memcpy(out, v->valuestring, n);
    out[n] = '\0';
    /* One line: control characters become spaces. */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
            out[i] = ' ';
    return 0;
}

/* A time in ms: null/absent = 0, else a whole number in a sane range. */
static int get_ms(const cJSON *o, const char *key, uint64_t *out, bool required)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = 0;
    if (v == NULL || cJSON_IsNull(v))
        return required ? -1 : 0;
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    /* 1 ms after 1970 up to 2^53 (exact in a double) */
    if (!(d >= 1.0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d)
        return -1;
    *out = (uint64_t)d;
    return 0;
}

int exit_record_parse(const char *text, size_t len, struct exit_record *out)
{
    memset(out, 0, sizeof *out);
    out->exit_status = -1;
    if (len == 0 || len > EXIT_RECORD_MAX)
        return -1;
    cJSON *o = cJSON_ParseWithLength(text, len);
    int rc = -1;
    if (!cJSON_IsObject(o))
        goto out;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, EXIT_RECORD_FORMAT) != 0)
        goto out;
    if (get_string(o, "task", out->task, sizeof out->task, true) ||
        get_string(o, "family", out->family, sizeof out->family, false) ||
        get_ms(o, "start_ms", &out->start_ms, true) || get_ms(o, "ready_ms", &out->ready_ms, false) ||
        get_ms(o, "stop_ms", &out->stop_ms, false) || get_ms(o, "end_ms", &out->end_ms, false) ||
        get_string(o, "reason", out->reason, sizeof out->reason, false) ||
        get_string(o, "probe", out->probe, sizeof out->probe, false) ||
        get_string(o, "detail", out->detail, sizeof out->detail, false))
        goto out;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "exit_status");
    if (cJSON_IsNumber(st)) {
        if (!(st->valuedouble >= 0 && st->valuedouble <= 255) ||
            st->valuedouble != (double)(int)st->valuedouble)
            goto out;
        out->exit_status = (int)st->valuedouble;
    } else if (st != NULL && !cJSON_IsNull(st)) {
        goto out;
    }
    /* An ended run says how; a running one says nothing yet. */
    if (out->end_ms) {
        if (!exit_reason_known(out->reason) || out->end_ms < out->start_ms)
            goto out;
    } else if (out->reason[0] || out->exit_status >= 0) {
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(o);
    if (rc != 0) {
        memset(out, 0, sizeof *out);
        out->exit_status = -1;
    }
    return rc;
}

/* ---- the end of a run ----------------------------------------------------- */

int exit_parse_oom_kill(const char *text, size_t len, uint64_t *out)
{
    size_t i = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && text[e] != '\n')
            e++;
        if (e - i > 9 && memcmp(text + i, "oom_kill ", 9) == 0) {
            uint64_t v = 0;
            size_t j = i + 9, digits = 0;
            while (j < e && text[j] >= '0' && text[j] <= '9' && digits < 19) {
                v = v * 10 + (uint64_t)(text[j] - '0');
                j++;
                digits++;
            }
            if (digits > 0 && j == e) {
                *out = v;
                return 0;
            }
        }
        i = e + 1;
    }
    return -1;
}

static bool ended_by_stop_signal(int ws)
{
    if (WIFEXITED(ws)) {
        int c = WEXITSTATUS(ws);
        /* A JVM that handled SIGTERM exits with 143 itself. */
        return c == 0 || c == 128 + SIGTERM || c == 128 + SIGINT;
    }
    return WIFSIGNALED(ws) && (WTERMSIG(ws) == SIGTERM || WTERMSIG(ws) == SIGINT);
}

static int status_of(int ws)
{
    if (WIFEXITED(ws))
        return WEXITSTATUS(ws);
    if (WIFSIGNALED(ws))
        return 128 + WTERMSIG(ws);
    return 1;
}

void exit_decide(const struct exit_facts *f, const char **reason, int *exit_status)
{
    if (f->internal_rc) {
        *reason = EXIT_REASON_EXITED;
        *exit_status = f->internal_rc;
        return;
    }
    if (!f->child_started) {
        if (f->start_signal) {
            *reason = EXIT_REASON_STOPPED;
            *exit_status = f->stop_exit_status >= 0 ? f->stop_exit_status : 128 + f->start_signal;
            return;
        }
        *exit_status = f->start_rc;
        switch (f->start_rc) {
        case 73: *reason = EXIT_REASON_STORAGE; break;
        case 75: *reason = EXIT_REASON_HOOK; break;
        case 77: *reason = EXIT_REASON_LICENCE; break;
        case 78: *reason = EXIT_REASON_CONFIG; break;
        default: *reason = EXIT_REASON_EXITED; break;
        }
        return;
    }
    int ws = f->wait_status;
    int child = status_of(ws);
    bool sigkill = (WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL) ||
                   (WIFEXITED(ws) && WEXITSTATUS(ws) == 128 + SIGKILL);
    bool requested_ok = f->stop_requested && !f->killed_after_grace && ended_by_stop_signal(ws);

    *exit_status = child;
    /* The agent's own SIGKILL after the grace is a known cause; an OOM kill
     * is the kernel's SIGKILL with the cgroup's counter grown meanwhile. */
    if (f->killed_after_grace)
        *reason = EXIT_REASON_KILLED_AFTER_GRACE;
    else if (f->oom_killed && sigkill)
        *reason = EXIT_REASON_OOM;
    else if (f->startup_timed_out)
        *reason = EXIT_REASON_STARTUP_TIMEOUT;
    else if (requested_ok)
        *reason = EXIT_REASON_STOPPED;
    else if (WIFSIGNALED(ws))
        *reason = EXIT_REASON_SIGNAL;
    else
        *reason = EXIT_REASON_EXITED;
    if (strcmp(*reason, EXIT_REASON_STOPPED) == 0 && f->stop_exit_status >= 0)
        *exit_status = f->stop_exit_status;
}
