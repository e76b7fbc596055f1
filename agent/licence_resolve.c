/* licence_resolve: see licence_resolve.h. */
#include "licence_resolve.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alm.h"
#include "licence_cache.h"
#include "log.h"

void licence_resolution_init(struct licence_resolution *r)
{
    memset(r, 0, sizeof(*r));
    r->st.users = -1;
}

void licence_resolution_free(struct licence_resolution *r)
{
    if (r->licence) {
        explicit_bzero(r->licence, r->len);
        free(r->licence);
    }
    r->licence = NULL;
    r->len = 0;
}

void licence_resolution_set(struct licence_resolution *r, enum licence_status status,
                            const char *source, const char *reason)
{
    r->st.status = status;
    snprintf(r->st.source, sizeof(r->st.source), "%s", source);
    snprintf(r->st.reason, sizeof(r->st.reason), "%s", reason);
}

static void fill_claims(struct licence_resolution *r)
{
    struct licence_state *st = &r->st;
    snprintf(st->subject, sizeof(st->subject), "%s", r->claims.sub);
    st->users = r->claims.users;
    st->not_before = r->claims.has_nbf ? r->claims.nbf : 0;
    st->expires = r->claims.exp;
}

/* Checks a token (form 1) from source and settles the resolution. */
static void resolve_token(const struct licence_config *cfg, const struct licence_keyset *keys,
                          const char *text, size_t len, const char *source, struct licence_resolution *r)
{
    char *token = malloc(len + 1);
    if (!token) {
        licence_resolution_set(r, LS_MALFORMED, source, "out of memory checking the licence");
        return;
    }
    size_t n = licence_strip_whitespace(text, len, token);
    char reason[LICENCE_REASON_MAX];
    enum licence_status st = licence_token_verify(token, n, keys, &r->claims, reason, sizeof(reason));
    if (st == LS_VALID) {
        long days = 0;
        st = licence_evaluate(&r->claims, (int64_t)time(NULL), cfg->warn_days, cfg->deployment_id,
                              &days, reason, sizeof(reason));
        r->have_claims = true;
        r->st.has_days_left = true;
        r->st.days_left = days;
        fill_claims(r);
    }
    licence_resolution_set(r, st, source, reason);
    if (licence_status_acceptable(st)) {
        r->licence = token;
        r->len = n;
    } else {
        explicit_bzero(token, n);
        free(token);
    }
}

static void resolve_xml(const char *text, size_t len, const char *source, struct licence_resolution *r)
{
    char *xml = malloc(len + 1);
    if (!xml) {
        licence_resolution_set(r, LS_MALFORMED, source, "out of memory normalising the licence");
        return;
    }
    size_t n;
    char reason[LICENCE_REASON_MAX];
    if (licence_xml_normalise(text, len, xml, &n, reason, sizeof(reason)) != 0) {
        licence_resolution_set(r, LS_MALFORMED, source, reason);
        explicit_bzero(xml, len + 1);
        free(xml);
        return;
    }
    licence_resolution_set(r, LS_UNVERIFIED, source,
               "XML licence put on one line; pi-agent cannot check the vendor's XML signature, the "
               "dashboard does");
    r->licence = xml;
    r->len = n;
}

/* Something shaped like an offline licence but not a whole one: a cut or
 * damaged paste. It is never a customer key, so it is never passed on. */
static void resolve_broken_token(const char *what, const char *why, const char *source,
                                 struct licence_resolution *r)
{
    char reason[STATE_REASON_MAX];
    snprintf(reason, sizeof(reason), "%s looks like an offline licence but is incomplete: %.160s",
             what, why);
    licence_resolution_set(r, LS_MALFORMED, source, reason);
}

/* A document from a licence URL or the ALM: a token or an XML licence. */
static void resolve_document(const struct licence_config *cfg, const struct licence_keyset *keys,
                             const char *text, size_t len, const char *source, bool token_only,
                             struct licence_resolution *r)
{
    char why[LICENCE_REASON_MAX];
    enum licence_form form = licence_classify_reason(text, len, why, sizeof(why));
    if (form == LICENCE_FORM_TOKEN)
        resolve_token(cfg, keys, text, len, source, r);
    else if (form == LICENCE_FORM_XML && !token_only)
        resolve_xml(text, len, source, r);
    else if (form == LICENCE_FORM_BROKEN_TOKEN)
        resolve_broken_token(token_only ? "the licence from the ALM" : "the licence at PI_LICENCE_URL",
                             why, source, r);
    else
        licence_resolution_set(r, LS_MALFORMED, source,
                   token_only ? "the ALM handed over something that is not a licence token"
                              : "PI_LICENCE_URL holds neither a licence token nor an XML licence");
}

static struct alm_settings alm_settings(const struct licence_config *cfg)
{
    return (struct alm_settings){
        .ca_file = cfg->ca_file,
        .allow_http = cfg->allow_http,
        .timeout_s = cfg->alm_timeout_s,
        .deployment_id = cfg->deployment_id,
    };
}

/* Form 2a: the customer key exchanged with the ALM, the EFS cache when the
 * ALM cannot be reached. */
static void resolve_with_alm(const struct licence_resolve_opts *o, const struct licence_keyset *keys,
                             struct licence_resolution *r)
{
    const struct licence_config *cfg = o->cfg;
    struct alm_settings s = alm_settings(cfg);
    struct alm_result res;
    enum alm_outcome outcome = alm_request_licence(&s, cfg->alm_url, cfg->licence, &res);
    if (outcome == ALM_OK) {
        resolve_document(cfg, keys, res.licence, res.len, "alm", true, r);
        alm_result_free(&res);
        if (o->write_cache && licence_status_verified(r->st.status))
            licence_cache_store(cfg->efs_root, r->licence, r->len);
        return;
    }
    alm_result_free(&res);
    if (outcome == ALM_REJECTED) {
        char reason[STATE_REASON_MAX];
        snprintf(reason, sizeof(reason), "%.200s: the customer key in PI_LICENCE was rejected",
                 res.reason);
        licence_resolution_set(r, LS_REJECTED, "alm", reason);
        return; /* a rejected key never falls back to the cache */
    }
    licence_resolution_set(r, outcome == ALM_UNREACHABLE ? LS_UNREACHABLE : LS_MALFORMED, "alm", res.reason);
    if (o->refresh_only)
        return;
    size_t len;
    char *cached = licence_cache_load(cfg->efs_root, &len);
    if (!cached)
        return;
    struct licence_resolution from_cache;
    licence_resolution_init(&from_cache);
    resolve_token(cfg, keys, cached, len, "cache", &from_cache);
    explicit_bzero(cached, len);
    free(cached);
    if (!licence_status_verified(from_cache.st.status)) {
        log_warn("the cached licence cannot be used",
                 LF_STR("status", licence_status_name(from_cache.st.status)),
                 LF_STR("reason", from_cache.st.reason));
        licence_resolution_free(&from_cache);
        return;
    }
    log_warn("the ALM cannot be reached: using the licence cached on EFS",
             LF_STR("alm_error", res.reason),
             LF_STR("cached_status", licence_status_name(from_cache.st.status)));
    char reason[STATE_REASON_MAX];
    snprintf(reason, sizeof(reason), "%.120s (cached; the ALM could not be reached)",
             from_cache.st.reason);
    snprintf(from_cache.st.reason, sizeof(from_cache.st.reason), "%s", reason);
    *r = from_cache;
}

/* Form 2b: the dashboard calls the ALM itself; the key is passed on untouched. */
static void resolve_passthrough(const struct licence_resolve_opts *o, struct licence_resolution *r)
{
    const struct licence_config *cfg = o->cfg;
    if (cfg->alm_check_url) {
        struct alm_settings s = alm_settings(cfg);
        s.allow_http = false;
        char reason[STATE_REASON_MAX];
        if (alm_check_reachable(&s, cfg->alm_check_url, reason, sizeof(reason)) != 0) {
            licence_resolution_set(r, LS_UNREACHABLE, "dashboard", reason);
        } else {
            licence_resolution_set(r, LS_UNVERIFIED, "dashboard",
                       "the dashboard performs the ALM callback itself (the ALM can be reached)");
        }
    } else {
        licence_resolution_set(r, LS_UNVERIFIED, "dashboard", "the dashboard performs the ALM callback itself");
    }
    if (r->st.status == LS_UNVERIFIED) {
        r->len = strlen(cfg->licence);
        r->licence = strdup(cfg->licence);
        if (!r->licence)
            r->len = 0;
    }
}

void licence_resolution_missing(struct licence_resolution *r)
{
    licence_resolution_set(r, LS_MISSING, "none",
               "PI_LICENCE is not set: set it to the customer key or an offline licence, or "
               "set PI_LICENCE_URL");
}

void licence_resolve(const struct licence_resolve_opts *o, struct licence_resolution *r)
{
    const struct licence_config *cfg = o->cfg;
    licence_resolution_init(r);
    struct licence_keyset *keys = NULL;
    char reason[LICENCE_REASON_MAX];
    if (cfg->public_keys &&
        licence_keyset_parse(cfg->public_keys, strlen(cfg->public_keys), cfg->keys_origin, &keys,
                             reason, sizeof(reason)) != 0) {
        licence_resolution_set(r, LS_BAD_SIGNATURE, "none", reason);
        return;
    }
    char why[LICENCE_REASON_MAX];
    enum licence_form form = cfg->licence ? licence_classify_reason(cfg->licence,
                                                                    strlen(cfg->licence), why,
                                                                    sizeof(why))
                                          : LICENCE_FORM_NONE;
    if (form != LICENCE_FORM_NONE && cfg->licence_url && !o->refresh_only)
        log_warn("PI_LICENCE_URL is ignored: PI_LICENCE is set and wins");
    if (o->refresh_only) {
        resolve_with_alm(o, keys, r);
    } else if (form == LICENCE_FORM_TOKEN) {
        resolve_token(cfg, keys, cfg->licence, strlen(cfg->licence), "inline", r);
    } else if (form == LICENCE_FORM_XML) {
        resolve_xml(cfg->licence, strlen(cfg->licence), "inline", r);
    } else if (form == LICENCE_FORM_BROKEN_TOKEN) {
        resolve_broken_token("PI_LICENCE", why, "inline", r);
    } else if (form == LICENCE_FORM_KEY && cfg->alm_url) {
        resolve_with_alm(o, keys, r);
    } else if (form == LICENCE_FORM_KEY) {
        resolve_passthrough(o, r);
    } else if (cfg->licence_url) {
        struct alm_settings s = alm_settings(cfg);
        struct alm_result res;
        enum alm_outcome outcome = alm_fetch_licence_url(&s, cfg->licence_url, &res);
        if (outcome == ALM_OK)
            resolve_document(cfg, keys, res.licence, res.len, "url", false, r);
        else
            licence_resolution_set(r,
                       outcome == ALM_REJECTED      ? LS_REJECTED
                       : outcome == ALM_UNREACHABLE ? LS_UNREACHABLE
                                                    : LS_MALFORMED,
                       "url", res.reason);
        alm_result_free(&res);
    } else {
        licence_resolution_missing(r);
    }
    licence_keyset_free(keys);
}
