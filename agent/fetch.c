/* fetch: the one libcurl wrapper (see fetch.h). */
#include "fetch.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#ifndef PI_AGENT_VERSION
#define PI_AGENT_VERSION "0.0.0"
#endif

#define FETCH_MAX_REDIRECTS 3L

static void set_error(char *error, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_error(char *error, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, cap, fmt, ap);
    va_end(ap);
}

int fetch_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void fetch_global_cleanup(void)
{
    curl_global_cleanup();
}

int fetch_url_is_https(const char *url)
{
    if (!url)
        return -1;
    if (strncasecmp(url, "https://", 8) == 0)
        return 1;
    if (strncasecmp(url, "http://", 7) == 0)
        return 0;
    return -1;
}

/* Start and length of the authority (after "scheme://", before / ? #). */
static int url_authority(const char *url, const char **start, size_t *len)
{
    const char *p = strstr(url, "://");
    if (!p)
        return -1;
    p += 3;
    *start = p;
    *len = strcspn(p, "/?#");
    return 0;
}

int fetch_url_host(const char *url, char *out, size_t cap)
{
    const char *auth;
    size_t len;
    if (!url || url_authority(url, &auth, &len) != 0)
        return -1;
    /* Skip user info: user:password@host. */
    for (size_t i = len; i > 0; i--) {
        if (auth[i - 1] == '@') {
            auth += i;
            len -= i;
            break;
        }
    }
    size_t hlen;
    if (len > 0 && auth[0] == '[') {
        const char *close = memchr(auth, ']', len);
        if (!close)
            return -1;
        auth++;
        hlen = (size_t)(close - auth);
    } else {
        const char *colon = memchr(auth, ':', len);
        hlen = colon ? (size_t)(colon - auth) : len;
    }
    if (hlen == 0 || hlen >= cap)
        return -1;
    memcpy(out, auth, hlen);
    out[hlen] = '\0';
    return 0;
}

void fetch_redact_url(const char *url, char *out, size_t cap)
{
    if (cap == 0)
        return;
    out[0] = '\0';
    const char *auth;
    size_t len;
    if (!url || url_authority(url, &auth, &len) != 0) {
        snprintf(out, cap, "(not a URL)");
        return;
    }
    size_t scheme_len = (size_t)(auth - url);
    const char *host = auth;
    size_t host_len = len;
    const char *hidden = "";
    for (size_t i = len; i > 0; i--) {
        if (auth[i - 1] == '@') {
            host = auth + i;
            host_len = len - i;
            break;
        }
    }
    if (host == auth) {
        /* A password holding an unencoded '/', '?' or '#' (generated secrets
         * often do) ends the authority early, and the rest of it would be
         * shown as the path. An '@' in the path, or anywhere after an
         * authority with a ':', marks user info: everything up to the last
         * such '@' is hidden. */
        const char *rest = auth + len;
        size_t span = memchr(auth, ':', len) ? strlen(rest) : strcspn(rest, "?#");
        const char *at = NULL;
        for (size_t i = span; i > 0; i--) {
            if (rest[i - 1] == '@') {
                at = rest + i - 1;
                break;
            }
        }
        if (at) {
            hidden = "(hidden)@";
            host = at + 1;
            host_len = strcspn(host, "/?#");
        }
    }
    const char *path = host + host_len;
    size_t path_len = strcspn(path, "?#");
    snprintf(out, cap, "%.*s%s%.*s%.*s", (int)scheme_len, url, hidden, (int)host_len, host,
             (int)path_len, path);
}

const char *fetch_step_name(enum fetch_step step)
{
    switch (step) {
    case FETCH_STEP_DNS: return "DNS lookup";
    case FETCH_STEP_CONNECT: return "TCP connect";
    case FETCH_STEP_TLS: return "TLS handshake";
    case FETCH_STEP_HTTP: return "HTTP exchange";
    case FETCH_STEP_NONE: break;
    }
    return "connection";
}

struct sink {
    char *data;
    size_t len;
    size_t max;
    bool overflow;
};

static size_t sink_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct sink *s = userdata;
    size_t n = size * nmemb;
    if (s->len + n > s->max) {
        s->overflow = true;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    /* Not realloc: the old buffer may hold part of a licence, and is wiped
     * before it is freed. */
    char *grown = malloc(s->len + n + 1);
    if (!grown)
        return 0;
    if (s->data) {
        memcpy(grown, s->data, s->len);
        explicit_bzero(s->data, s->len);
        free(s->data);
    }
    memcpy(grown + s->len, ptr, n);
    s->data = grown;
    s->len += n;
    s->data[s->len] = '\0';
    return n;
}

/* Options every handle gets: verification on, a named CA bundle, timeouts,
 * the allowed protocols. */
static int setup_common(CURL *curl, const char *url, const char *ca_file, bool allow_http,
                        long connect_timeout_ms, long total_timeout_ms, char *errbuf)
{
    const char *protocols = allow_http ? "http,https" : "https";
    /* PI_ALM_ALLOW_HTTP allows a plain http URL the user wrote, never a
     * downgrade: from an https URL, redirects go to https only. */
    const char *redirects = fetch_url_is_https(url) == 1 ? "https" : protocols;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                    \
    do {                                                 \
        if (rc == CURLE_OK)                              \
            rc = curl_easy_setopt(curl, opt, val);       \
    } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_PROTOCOLS_STR, protocols);
    SET(CURLOPT_REDIR_PROTOCOLS_STR, redirects);
    SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2); /* TLS 1.2 at least */
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_CAINFO, ca_file ? ca_file : FETCH_DEFAULT_CA_FILE);
    SET(CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms > 0 ? connect_timeout_ms : 10000L);
    SET(CURLOPT_TIMEOUT_MS, total_timeout_ms > 0 ? total_timeout_ms : 30000L);
    SET(CURLOPT_USERAGENT, "pi-agent/" PI_AGENT_VERSION);
    /* Workers are single-threaded processes: curl may use SIGALRM to bound a
     * synchronous DNS lookup there. */
    SET(CURLOPT_NOSIGNAL, 0L);
#undef SET
    if (rc != CURLE_OK)
        return -1;
    /* Only the named bundle: no directory the build happened to know. This
     * fails harmlessly on a libcurl without CA path support. */
    (void)curl_easy_setopt(curl, CURLOPT_CAPATH, NULL);
    return 0;
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Which step a failed transfer stopped at. */
static enum fetch_step failed_step(CURL *curl, CURLcode code, const char *url)
{
    switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return FETCH_STEP_DNS;
    case CURLE_COULDNT_CONNECT:
        return FETCH_STEP_CONNECT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_USE_SSL_FAILED:
        return FETCH_STEP_TLS;
    default:
        break;
    }
    curl_off_t connect_us = 0, tls_us = 0, dns_us = 0;
    curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME_T, &connect_us);
    curl_easy_getinfo(curl, CURLINFO_APPCONNECT_TIME_T, &tls_us);
    curl_easy_getinfo(curl, CURLINFO_NAMELOOKUP_TIME_T, &dns_us);
    if (connect_us == 0) {
        char host[256];
        if (dns_us == 0 && fetch_url_host(url, host, sizeof(host)) == 0 && !is_ip_literal(host))
            return FETCH_STEP_DNS;
        return FETCH_STEP_CONNECT;
    }
    if (fetch_url_is_https(url) == 1 && tls_us == 0)
        return FETCH_STEP_TLS;
    return FETCH_STEP_HTTP;
}

/* The cause of a failure in words: the OS error for refused or unreachable
 * connections, curl's message otherwise. */
static void describe_failure(CURL *curl, CURLcode code, const char *errbuf, char *out, size_t cap)
{
    long os_errno = 0;
    curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
    if (code == CURLE_COULDNT_CONNECT && os_errno != 0)
        set_error(out, cap, "%s", strerror((int)os_errno));
    else if (code == CURLE_OPERATION_TIMEDOUT)
        set_error(out, cap, "timed out");
    else
        set_error(out, cap, "%s", errbuf[0] ? errbuf : curl_easy_strerror(code));
}

static int check_scheme(const char *url, bool allow_http, char *error, size_t cap)
{
    int https = fetch_url_is_https(url);
    if (https < 0) {
        set_error(error, cap, "not an http(s) URL");
        return -1;
    }
    if (https == 0 && !allow_http) {
        set_error(error, cap, "plain http is refused: use https");
        return -1;
    }
    return 0;
}

int fetch_url(const struct fetch_request *req, struct fetch_response *res)
{
    memset(res, 0, sizeof(*res));
    if (check_scheme(req->url, req->allow_http, res->error, sizeof(res->error)) != 0)
        return -1;
    bool post = req->method && strcmp(req->method, "POST") == 0;
    if (req->method && !post && strcmp(req->method, "GET") != 0) {
        set_error(res->error, sizeof(res->error), "unsupported method");
        return -1;
    }
    CURL *curl = curl_easy_init();
    if (!curl) {
        set_error(res->error, sizeof(res->error), "cannot initialise libcurl");
        return -1;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    struct sink sink = { .max = req->max_body ? req->max_body : FETCH_DEFAULT_MAX_BODY };
    struct curl_slist *headers = NULL;
    int ret = -1;
    if (setup_common(curl, req->url, req->ca_file, req->allow_http, req->connect_timeout_ms,
                     req->total_timeout_ms, errbuf) != 0) {
        set_error(res->error, sizeof(res->error), "cannot configure libcurl");
        goto out;
    }
    char ctype[128];
    if (post) {
        snprintf(ctype, sizeof(ctype), "Content-Type: %s",
                 req->content_type ? req->content_type : "application/octet-stream");
        headers = curl_slist_append(NULL, ctype);
        struct curl_slist *h = headers ? curl_slist_append(headers, "Accept: application/json") : NULL;
        if (!h) {
            set_error(res->error, sizeof(res->error), "out of memory");
            goto out;
        }
        headers = h;
    }
    CURLcode rc = curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sink_write);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
    if (rc == CURLE_OK && req->follow_redirects) {
        rc = curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(curl, CURLOPT_MAXREDIRS, FETCH_MAX_REDIRECTS);
    }
    if (rc == CURLE_OK && post) {
        const char *body = req->body ? req->body : "";
        rc = curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    }
    if (rc != CURLE_OK) {
        set_error(res->error, sizeof(res->error), "cannot configure libcurl");
        goto out;
    }
    rc = curl_easy_perform(curl);
    res->curl_code = (int)rc;
    if (rc != CURLE_OK) {
        if (sink.overflow) {
            set_error(res->error, sizeof(res->error), "the response is larger than %zu bytes",
                      sink.max);
        } else if (rc == CURLE_UNSUPPORTED_PROTOCOL && req->follow_redirects &&
                   fetch_url_is_https(req->url) == 1) {
            /* https is allowed, so only a redirect can have asked for another
             * protocol. */
            set_error(res->error, sizeof(res->error),
                      "redirect refused: an https URL may only redirect to https (a downgrade to "
                      "plain http is refused whatever PI_ALM_ALLOW_HTTP says)");
        } else {
            char cause[200];
            describe_failure(curl, rc, errbuf, cause, sizeof(cause));
            set_error(res->error, sizeof(res->error), "%s failed: %s",
                      fetch_step_name(failed_step(curl, rc, req->url)), cause);
        }
        goto out;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &res->status);
    res->body = sink.data;
    res->len = sink.len;
    sink.data = NULL;
    ret = 0;
out:
    if (sink.data)
        explicit_bzero(sink.data, sink.len);
    free(sink.data);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return ret;
}

bool fetch_error_is_permanent(int curl_code)
{
    switch ((CURLcode)curl_code) {
    case CURLE_OK: /* refused before curl ran: a bad scheme or URL */
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return true;
    default:
        return false;
    }
}

void fetch_response_free(struct fetch_response *res)
{
    /* Bodies are licences and ALM answers: wiped before they are freed. */
    if (res->body)
        explicit_bzero(res->body, res->len);
    free(res->body);
    res->body = NULL;
    res->len = 0;
}

int fetch_connect_check(const char *url, const char *ca_file, bool allow_http, long timeout_ms,
                        enum fetch_step *step, char *error, size_t cap)
{
    *step = FETCH_STEP_NONE;
    if (check_scheme(url, allow_http, error, cap) != 0)
        return -1;
    CURL *curl = curl_easy_init();
    if (!curl) {
        set_error(error, cap, "cannot initialise libcurl");
        return -1;
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    int ret = -1;
    if (setup_common(curl, url, ca_file, allow_http, timeout_ms, timeout_ms, errbuf) != 0 ||
        curl_easy_setopt(curl, CURLOPT_CONNECT_ONLY, 1L) != CURLE_OK) {
        set_error(error, cap, "cannot configure libcurl");
        goto out;
    }
    CURLcode rc = curl_easy_perform(curl);
    if (rc != CURLE_OK) {
        *step = failed_step(curl, rc, url);
        describe_failure(curl, rc, errbuf, error, cap);
        goto out;
    }
    ret = 0;
out:
    curl_easy_cleanup(curl);
    return ret;
}
