/* fetch: the project's one libcurl wrapper. Peer and host verification are
 * always on, the CA bundle is always named (the release libcurl has no
 * built-in one), every call has connect and total timeouts, plain http is
 * refused unless asked for, and responses are capped. HTTPS_PROXY and
 * NO_PROXY are honoured by libcurl itself. Call it from a worker process:
 * fetch_global_init/cleanup bracket its use there. */
#ifndef PI_FETCH_H
#define PI_FETCH_H

#include <stdbool.h>
#include <stddef.h>

#define FETCH_DEFAULT_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
#define FETCH_DEFAULT_MAX_BODY (1024 * 1024)

struct fetch_request {
    const char *url;
    const char *method;       /* "GET" (default when NULL) or "POST" */
    const char *body;         /* POST body, may be NULL */
    const char *content_type; /* e.g. "application/json" */
    long connect_timeout_ms;
    long total_timeout_ms;
    const char *ca_file;      /* NULL: the system bundle (FETCH_DEFAULT_CA_FILE) */
    bool allow_http;          /* plain http refused unless true */
    size_t max_body;          /* response cap, 0 = 1 MiB */
    bool follow_redirects;    /* at most 3, and never from https down to http */
};

struct fetch_response {
    long status;
    char *body; /* NUL-terminated, NULL when empty */
    size_t len;
    int curl_code;
    char error[256];
};

/* 0 when an HTTP response arrived (any status), -1 otherwise (error[] says
 * why, never containing the request body or secrets). */
int fetch_url(const struct fetch_request *req, struct fetch_response *res);
void fetch_response_free(struct fetch_response *res);

/* The stages of a connection, for naming the one that failed. */
enum fetch_step { FETCH_STEP_NONE, FETCH_STEP_DNS, FETCH_STEP_CONNECT, FETCH_STEP_TLS,
                  FETCH_STEP_HTTP };
const char *fetch_step_name(enum fetch_step step);

/* Connects to url (DNS, TCP, verified TLS for https) without sending a
 * request. Returns 0 when it succeeded; otherwise -1 with *failed_step and
 * error[] (never a secret). */
int fetch_connect_check(const char *url, const char *ca_file, bool allow_http, long timeout_ms,
                        enum fetch_step *failed_step, char *error, size_t cap);

/* Whether a failed transfer's curl_code is one that another attempt cannot
 * fix: the server's certificate failed verification, the CA file is bad, the
 * scheme is not allowed. */
bool fetch_error_is_permanent(int curl_code);

/* curl_global_init / curl_global_cleanup, for the worker process. */
int fetch_global_init(void);
void fetch_global_cleanup(void);

/* Pure: scheme://host[:port]/path of url, without user info, query or
 * fragment (a presigned URL carries its credentials in the query). */
void fetch_redact_url(const char *url, char *out, size_t cap);
/* Pure: the host of an http(s) URL into out; -1 when there is none. */
int fetch_url_host(const char *url, char *out, size_t cap);
/* Pure: 1 for https://, 0 for http://, -1 for anything else. */
int fetch_url_is_https(const char *url);

#endif
