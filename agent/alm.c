/* alm: ALM callback, licence URL fetch and reachability check (see alm.h). */
#include "alm.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "fetch.h"
#include "licence_token.h"
#include "log.h"
#include "util.h"

#ifndef PI_AGENT_VERSION
#define PI_AGENT_VERSION "0.0.0"
#endif

#define ALM_BACKOFF_BASE_MS 1000u
#define ALM_BACKOFF_MAX_MS 16000u
#define ALM_CONNECT_TIMEOUT_MAX_MS 10000L
#define ALM_ATTEMPT_TIMEOUT_MAX_MS 30000L
#define ALM_MIN_ATTEMPT_MS 1000u

static void set_reason(char *reason, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_reason(char *reason, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, cap, fmt, ap);
    va_end(ap);
}

uint64_t alm_backoff_ms(unsigned attempt, double jitter01)
{
    if (attempt == 0)
        attempt = 1;
    uint64_t delay = ALM_BACKOFF_BASE_MS;
    for (unsigned i = 1; i < attempt && delay < ALM_BACKOFF_MAX_MS; i++)
        delay *= 2;
    if (delay > ALM_BACKOFF_MAX_MS)
        delay = ALM_BACKOFF_MAX_MS;
    if (!(jitter01 >= 0.0))
        jitter01 = 0.0;
    if (jitter01 >= 1.0)
        jitter01 = 0.999999;
    /* Half fixed, half random: tasks started together spread out, yet each
     * still waits long enough for a struggling server. */
    return delay / 2 + (uint64_t)((double)(delay / 2) * jitter01);
}

bool alm_status_retryable(long status)
{
    return status == 429 || (status >= 500 && status <= 599);
}

bool alm_status_rejects(long status)
{
    return status == 401 || status == 403 || status == 404;
}

void alm_free_secret(char *s)
{
    if (!s)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

char *alm_request_body(const char *customer_key, const char *deployment_id)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    char *out = NULL;
    if (!cJSON_AddStringToObject(root, "customer_key", customer_key))
        goto done;
    if (deployment_id && deployment_id[0]) {
        if (!cJSON_AddStringToObject(root, "deployment", deployment_id))
            goto done;
    } else if (!cJSON_AddNullToObject(root, "deployment")) {
        goto done;
    }
    if (!cJSON_AddStringToObject(root, "product", "dashboard") ||
        !cJSON_AddStringToObject(root, "agent", "pi-agent/" PI_AGENT_VERSION))
        goto done;
    out = cJSON_PrintUnformatted(root);
done:
    /* The tree holds a copy of the key: wipe it before it is freed. */
    {
        cJSON *key = cJSON_GetObjectItemCaseSensitive(root, "customer_key");
        if (cJSON_IsString(key))
            explicit_bzero(key->valuestring, strlen(key->valuestring));
    }
    cJSON_Delete(root);
    return out;
}

int alm_parse_response(const char *body, size_t len, char **licence, char *reason, size_t cap)
{
    *licence = NULL;
    cJSON *root = body ? cJSON_ParseWithLength(body, len) : NULL;
    if (!root || !cJSON_IsObject(root)) {
        set_reason(reason, cap, "the answer is not a JSON object");
        cJSON_Delete(root);
        return -1;
    }
    int rc = -1;
    const cJSON *lic = cJSON_GetObjectItemCaseSensitive(root, "licence");
    if (!cJSON_IsString(lic) || lic->valuestring[0] == '\0') {
        set_reason(reason, cap, "the answer has no \"licence\" string");
    } else if (strlen(lic->valuestring) > LICENCE_MAX_LEN) {
        set_reason(reason, cap, "the licence in the answer is longer than %d bytes",
                   LICENCE_MAX_LEN);
    } else if (!(*licence = strdup(lic->valuestring))) {
        set_reason(reason, cap, "out of memory");
    } else {
        rc = 0;
    }
    if (cJSON_IsString(lic))
        explicit_bzero(lic->valuestring, strlen(lic->valuestring));
    cJSON_Delete(root);
    return rc;
}

void alm_result_free(struct alm_result *r)
{
    if (r->licence) {
        explicit_bzero(r->licence, r->len);
        free(r->licence);
    }
    r->licence = NULL;
    r->len = 0;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A uniform value in [0, 1) for the backoff's jitter. */
static double jitter(void)
{
    return (double)(uint32_t)util_random64() / 4294967296.0;
}

/* One request, retried per the rules above. what names the server in
 * reasons ("the ALM", "PI_LICENCE_URL"). */
static enum alm_outcome request_with_retries(const struct alm_settings *s,
                                             const struct fetch_request *base, const char *what,
                                             bool expect_json, struct alm_result *out)
{
    memset(out, 0, sizeof(*out));
    char shown[256];
    fetch_redact_url(base->url, shown, sizeof(shown));
    uint64_t start = util_mono_ms();
    uint64_t deadline = start + (uint64_t)s->timeout_s * 1000u;
    char last_error[256] = "no attempt was made";
    for (;;) {
        uint64_t now = util_mono_ms();
        long remaining = now < deadline ? (long)(deadline - now) : 1;
        struct fetch_request req = *base;
        req.total_timeout_ms = remaining < ALM_ATTEMPT_TIMEOUT_MAX_MS ? remaining
                                                                      : ALM_ATTEMPT_TIMEOUT_MAX_MS;
        req.connect_timeout_ms = remaining < ALM_CONNECT_TIMEOUT_MAX_MS ? remaining
                                                                        : ALM_CONNECT_TIMEOUT_MAX_MS;
        struct fetch_response res;
        out->attempts++;
        int rc = fetch_url(&req, &res);
        if (rc == 0) {
            out->http_status = res.status;
            if (res.status == 200) {
                char why[128];
                if (expect_json) {
                    if (alm_parse_response(res.body, res.len, &out->licence, why, sizeof(why)) != 0) {
                        set_reason(out->reason, sizeof(out->reason),
                                   "%s at %s answered 200 without a licence: %s", what, shown, why);
                        out->outcome = ALM_BAD_RESPONSE;
                    } else {
                        out->len = strlen(out->licence);
                        out->outcome = ALM_OK;
                    }
                } else if (!res.body || res.len == 0 || memchr(res.body, '\0', res.len)) {
                    set_reason(out->reason, sizeof(out->reason),
                               "%s at %s answered 200 with an empty or binary body", what, shown);
                    out->outcome = ALM_BAD_RESPONSE;
                } else {
                    out->licence = res.body;
                    out->len = res.len;
                    res.body = NULL;
                    out->outcome = ALM_OK;
                }
                if (res.body)
                    explicit_bzero(res.body, res.len);
                fetch_response_free(&res);
                return out->outcome;
            }
            if (res.body)
                explicit_bzero(res.body, res.len);
            fetch_response_free(&res);
            if (alm_status_rejects(res.status)) {
                set_reason(out->reason, sizeof(out->reason), "%s at %s refused with HTTP %ld", what,
                           shown, res.status);
                out->outcome = ALM_REJECTED;
                return out->outcome;
            }
            if (!alm_status_retryable(res.status)) {
                set_reason(out->reason, sizeof(out->reason),
                           "%s at %s answered with unexpected HTTP %ld", what, shown, res.status);
                out->outcome = ALM_BAD_RESPONSE;
                return out->outcome;
            }
            snprintf(last_error, sizeof(last_error), "HTTP %ld", res.status);
        } else {
            snprintf(last_error, sizeof(last_error), "%s", res.error);
            /* A refused scheme or a certificate that does not verify will
             * not get better by asking again. */
            if (fetch_error_is_permanent(res.curl_code)) {
                set_reason(out->reason, sizeof(out->reason), "%s at %s: %s", what, shown, res.error);
                out->outcome = ALM_UNREACHABLE;
                return out->outcome;
            }
        }
        uint64_t delay = alm_backoff_ms(out->attempts, jitter());
        now = util_mono_ms();
        /* An attempt squeezed into the last moments would only time out and
         * hide the real error behind "timed out". */
        if (now >= deadline || now + delay + ALM_MIN_ATTEMPT_MS > deadline)
            break;
        log_warn("licence server attempt failed, retrying", LF_STR("server", shown),
                 LF_INT("attempt", out->attempts), LF_STR("error", last_error),
                 LF_INT("retry_in_ms", delay));
        sleep_ms(delay);
    }
    set_reason(out->reason, sizeof(out->reason),
               "%s at %s could not be reached within %u s (%u attempt(s), last: %s)", what, shown,
               s->timeout_s, out->attempts, last_error);
    out->outcome = ALM_UNREACHABLE;
    return out->outcome;
}

enum alm_outcome alm_request_licence(const struct alm_settings *s, const char *url,
                                     const char *customer_key, struct alm_result *out)
{
    char *body = alm_request_body(customer_key, s->deployment_id);
    if (!body) {
        memset(out, 0, sizeof(*out));
        set_reason(out->reason, sizeof(out->reason), "out of memory building the ALM request");
        out->outcome = ALM_UNREACHABLE;
        return out->outcome;
    }
    struct fetch_request req = {
        .url = url,
        .method = "POST",
        .body = body,
        .content_type = "application/json",
        .ca_file = s->ca_file,
        .allow_http = s->allow_http,
        .max_body = LICENCE_MAX_LEN + 4096,
    };
    enum alm_outcome o = request_with_retries(s, &req, "the ALM", true, out);
    alm_free_secret(body);
    return o;
}

enum alm_outcome alm_fetch_licence_url(const struct alm_settings *s, const char *url,
                                       struct alm_result *out)
{
    struct fetch_request req = {
        .url = url,
        .ca_file = s->ca_file,
        .allow_http = s->allow_http,
        .max_body = LICENCE_MAX_LEN,
        .follow_redirects = true,
    };
    return request_with_retries(s, &req, "PI_LICENCE_URL", false, out);
}

int alm_check_reachable(const struct alm_settings *s, const char *url, char *reason, size_t cap)
{
    char host[256];
    if (fetch_url_host(url, host, sizeof(host)) != 0) {
        set_reason(reason, cap, "PI_ALM_CHECK_URL has no host");
        return -1;
    }
    enum fetch_step step;
    char cause[200];
    if (fetch_connect_check(url, s->ca_file, s->allow_http, (long)s->timeout_s * 1000L, &step, cause,
                            sizeof(cause)) == 0)
        return 0;
    const char *hint;
    switch (step) {
    case FETCH_STEP_DNS: hint = "no egress or DNS from this subnet?"; break;
    case FETCH_STEP_CONNECT: hint = "do the security group, NACL or proxy allow egress to it?"; break;
    case FETCH_STEP_TLS: hint = "a proxy intercepting TLS, or a CA missing (PI_ALM_CA_FILE)?"; break;
    default: hint = "is egress to it allowed?"; break;
    }
    const char *preposition = step == FETCH_STEP_DNS       ? "of"
                              : step == FETCH_STEP_CONNECT ? "to"
                                                           : "with";
    set_reason(reason, cap, "%s %s %s failed: %s: %s the dashboard will show an invalid-licence notice",
               fetch_step_name(step), preposition, host, cause, hint);
    return -1;
}
