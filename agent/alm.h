/* alm: talking to the Automated Licence Manager and to licence URLs, over
 * fetch.h. The POST of a customer key with retries, the GET of
 * PI_LICENCE_URL, and the reachability check of PI_ALM_CHECK_URL that names
 * the step that failed. Runs in a worker: it sleeps between attempts. */
#ifndef PI_ALM_H
#define PI_ALM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct alm_settings {
    const char *ca_file;      /* PI_ALM_CA_FILE, NULL for the system bundle */
    bool allow_http;          /* PI_ALM_ALLOW_HTTP */
    unsigned timeout_s;       /* PI_ALM_TIMEOUT_SECONDS: retries stop after it */
    const char *deployment_id; /* PI_DEPLOYMENT_ID, may be NULL */
};

enum alm_outcome {
    ALM_OK,           /* licence holds what the server handed over */
    ALM_REJECTED,     /* 401, 403 or 404: the key (or URL) was refused */
    ALM_UNREACHABLE,  /* no answer, or only 429/5xx, until the time ran out */
    ALM_BAD_RESPONSE, /* an answer without a licence in it */
};

struct alm_result {
    enum alm_outcome outcome;
    char *licence; /* ALM_OK: malloc'd, NUL-terminated; alm_result_free wipes it */
    size_t len;
    long http_status; /* the last HTTP status, 0 when none arrived */
    unsigned attempts;
    char reason[256]; /* one line, never a secret */
};

/* POSTs {"customer_key", "deployment", "product", "agent"} to url and expects
 * 200 {"licence": "<token>"}. 401/403/404 are not retried; connection errors,
 * timeouts, 429 and 5xx are, with exponential backoff and jitter, until
 * timeout_s has passed. Returns the outcome (also in out->outcome). */
enum alm_outcome alm_request_licence(const struct alm_settings *s, const char *url,
                                     const char *customer_key, struct alm_result *out);

/* GETs a licence document (PI_LICENCE_URL) with the same retry rules. */
enum alm_outcome alm_fetch_licence_url(const struct alm_settings *s, const char *url,
                                       struct alm_result *out);

/* DNS, TCP connect and verified TLS handshake with url's host, within
 * timeout_s. Returns 0 when it can be reached, else -1 with a reason naming
 * the failed step and its cause. */
int alm_check_reachable(const struct alm_settings *s, const char *url, char *reason, size_t cap);

void alm_result_free(struct alm_result *r);

/* Pure helpers. */
/* Delay before retry number attempt (1 = after the first failure): 1 s
 * doubling up to 16 s, scaled by jitter01 in [0, 1) into [50%, 100%). */
uint64_t alm_backoff_ms(unsigned attempt, double jitter01);
/* Whether an HTTP status is worth another attempt (429 and 5xx). */
bool alm_status_retryable(long status);
/* Whether an HTTP status means the key was refused (401, 403, 404). */
bool alm_status_rejects(long status);
/* The JSON request body (malloc'd; free with alm_free_secret). */
char *alm_request_body(const char *customer_key, const char *deployment_id);
/* Takes the licence out of a 200 answer: malloc'd into *licence, or -1 with
 * a reason that never quotes the body. */
int alm_parse_response(const char *body, size_t len, char **licence, char *reason, size_t cap);
/* Wipes and frees a string that held a secret. */
void alm_free_secret(char *s);

#endif
