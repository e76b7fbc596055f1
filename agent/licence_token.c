/* licence_token: pure licence parsing and checks (see licence_token.h). */
#include "licence_token.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <mbedtls/base64.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

/* Latest NumericDate accepted: 9999-12-31T23:59:59Z. */
#define NUMERIC_DATE_MAX 253402300799LL

void licence_reason(char *reason, size_t cap, const char *fmt, ...)
{
    if (!reason || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, cap, fmt, ap);
    va_end(ap);
}

const char *licence_form_name(enum licence_form form)
{
    switch (form) {
    case LICENCE_FORM_TOKEN: return "token";
    case LICENCE_FORM_XML: return "xml";
    case LICENCE_FORM_KEY: return "customer-key";
    case LICENCE_FORM_BROKEN_TOKEN: return "broken-token";
    case LICENCE_FORM_NONE: break;
    }
    return "none";
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

size_t licence_strip_whitespace(const char *in, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (!is_space(in[i]))
            out[n++] = in[i];
    out[n] = '\0';
    return n;
}

/* --- base64url --------------------------------------------------------- */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap, size_t *out_len)
{
    if (len % 4 == 1)
        return -1;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > cap)
        return -1;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Leftover bits must be zero: one encoding per byte string. */
    if (acc != 0)
        return -1;
    *out_len = n;
    return 0;
}

size_t b64url_encode(const unsigned char *in, size_t len, char *out, size_t cap)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t need = len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0);
    if (need + 1 > cap)
        return need;
    size_t n = 0;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[n++] = alphabet[v >> 18 & 63];
        out[n++] = alphabet[v >> 12 & 63];
        out[n++] = alphabet[v >> 6 & 63];
        out[n++] = alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[n++] = alphabet[v >> 18 & 63];
        out[n++] = alphabet[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[n++] = alphabet[v >> 18 & 63];
        out[n++] = alphabet[v >> 12 & 63];
        out[n++] = alphabet[v >> 6 & 63];
    }
    out[n] = '\0';
    return n;
}

/* Decodes a segment into a fresh NUL-terminated buffer (NULL on bad input). */
static unsigned char *b64url_decode_alloc(const char *in, size_t len, size_t *out_len)
{
    size_t cap = B64URL_DECODED_MAX(len);
    unsigned char *buf = malloc(cap + 1);
    if (!buf)
        return NULL;
    if (b64url_decode(in, len, buf, cap, out_len) != 0) {
        free(buf);
        return NULL;
    }
    buf[*out_len] = '\0';
    return buf;
}

/* --- JWS compact ------------------------------------------------------- */

int jws_split(const char *token, size_t len, struct jws_parts *out)
{
    const char *dots[2];
    int ndots = 0;
    for (size_t i = 0; i < len; i++) {
        if (token[i] == '.') {
            if (ndots == 2)
                return -1;
            dots[ndots++] = token + i;
        } else if (b64url_value((unsigned char)token[i]) < 0) {
            return -1;
        }
    }
    if (ndots != 2)
        return -1;
    out->header = token;
    out->header_len = (size_t)(dots[0] - token);
    out->payload = dots[0] + 1;
    out->payload_len = (size_t)(dots[1] - out->payload);
    out->signature = dots[1] + 1;
    out->signature_len = (size_t)(token + len - out->signature);
    out->signing_input_len = (size_t)(dots[1] - token);
    if (out->header_len == 0 || out->payload_len == 0 || out->signature_len == 0)
        return -1;
    return 0;
}

/* The start of what a base64url part decodes to, even when the part was cut
 * anywhere (it is padded with zero bits to whole groups): a cut part is what
 * the broken-token check looks for. At most cap bytes; 0 when the part holds
 * a character outside the alphabet. */
#define PART_PEEK_CHARS 1024
static size_t b64url_peek(const char *part, size_t len, unsigned char *out, size_t cap)
{
    char buf[PART_PEEK_CHARS + 4];
    if (len > PART_PEEK_CHARS)
        len = PART_PEEK_CHARS;
    for (size_t i = 0; i < len; i++)
        if (b64url_value((unsigned char)part[i]) < 0)
            return 0;
    memcpy(buf, part, len);
    while (len % 4 != 0)
        buf[len++] = 'A';
    size_t n;
    if (len == 0 || b64url_decode(buf, len, out, cap, &n) != 0)
        return 0;
    return n;
}

static bool starts_json_object(const unsigned char *b, size_t n)
{
    size_t k = 0;
    while (k < n && is_space((char)b[k]))
        k++;
    return k < n && b[k] == '{';
}

static bool holds_alg(const unsigned char *b, size_t n)
{
    static const char alg[] = "\"alg\"";
    for (size_t i = 0; i + sizeof alg - 1 <= n; i++)
        if (memcmp(b + i, alg, sizeof alg - 1) == 0)
            return true;
    return false;
}

/* Whether a stripped value that did not split as a token still looks like
 * one; if so, what is wrong with it goes to reason. */
static bool broken_token(const char *v, size_t n, char *reason, size_t cap)
{
    unsigned char peek[B64URL_DECODED_MAX(PART_PEEK_CHARS + 4)];
    size_t nparts = 1, empty_at = 0, bad_at = 0;
    bool all_b64 = true, any_json = false, first_alg = false;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && v[i] != '.')
            continue;
        const char *part = v + start;
        size_t plen = i - start;
        size_t bad = 0;
        for (size_t k = 0; k < plen && !bad; k++)
            if (b64url_value((unsigned char)part[k]) < 0)
                bad = 1;
        if (plen == 0 && !empty_at)
            empty_at = nparts;
        if (bad) {
            all_b64 = false;
            if (!bad_at)
                bad_at = nparts;
        } else if (plen > 0) {
            size_t d = b64url_peek(part, plen, peek, sizeof peek);
            bool json = starts_json_object(peek, d);
            any_json = any_json || json;
            if (nparts == 1)
                first_alg = json && holds_alg(peek, d);
        }
        if (i < n) {
            nparts++;
            start = i + 1;
        }
    }
    bool has_dots = nparts > 1;
    if (!first_alg && !(has_dots && all_b64 && any_json))
        return false;
    if (nparts < 3)
        licence_reason(reason, cap, "%zu of 3 parts: truncated?", nparts);
    else if (nparts > 3)
        licence_reason(reason, cap, "%zu parts where an offline licence has 3: two pasted together?",
                   nparts);
    else if (empty_at)
        licence_reason(reason, cap, "part %zu of 3 is empty: truncated?", empty_at);
    else if (bad_at)
        licence_reason(reason, cap, "part %zu of 3 has a character outside base64url: damaged in the "
                   "paste?", bad_at);
    else
        licence_reason(reason, cap, "3 parts, but the first is not a token header: damaged in the "
                   "paste?");
    return true;
}

enum licence_form licence_classify_reason(const char *value, size_t len, char *reason,
                                          size_t cap)
{
    size_t i = 0;
    licence_reason(reason, cap, "%s", "");
    while (i < len && is_space(value[i]))
        i++;
    if (i == len)
        return LICENCE_FORM_NONE;
    if (value[i] == '<')
        return LICENCE_FORM_XML;
    if (len > LICENCE_MAX_LEN)
        return LICENCE_FORM_KEY;

    char *stripped = malloc(len + 1);
    if (!stripped)
        return LICENCE_FORM_KEY;
    size_t n = licence_strip_whitespace(value, len, stripped);
    enum licence_form form = LICENCE_FORM_KEY;
    struct jws_parts parts;
    if (jws_split(stripped, n, &parts) == 0) {
        /* A JSON object header is what makes it a token rather than a
         * customer key that happens to hold two dots. */
        size_t hlen;
        unsigned char *h = b64url_decode_alloc(parts.header, parts.header_len, &hlen);
        if (h) {
            if (starts_json_object(h, hlen))
                form = LICENCE_FORM_TOKEN;
            free(h);
        }
    }
    if (form == LICENCE_FORM_KEY && broken_token(stripped, n, reason, cap))
        form = LICENCE_FORM_BROKEN_TOKEN;
    explicit_bzero(stripped, n);
    free(stripped);
    return form;
}

enum licence_form licence_classify(const char *value, size_t len)
{
    return licence_classify_reason(value, len, NULL, 0);
}

static int copy_string(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        return -1;
    memcpy(dst, src, n + 1);
    return 0;
}

int jws_parse_header(const char *json, size_t len, struct jws_header *out, char *reason,
                     size_t cap)
{
    memset(out, 0, sizeof(*out));
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        licence_reason(reason, cap, "the token header is not a JSON object");
        cJSON_Delete(root);
        return -1;
    }
    int rc = -1;
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(root, "alg");
    const cJSON *kid = cJSON_GetObjectItemCaseSensitive(root, "kid");
    if (!cJSON_IsString(alg)) {
        licence_reason(reason, cap, "the token header has no alg");
    } else if (strcmp(alg->valuestring, "ES256") != 0) {
        licence_reason(reason, cap, "the token is signed with an unsupported algorithm (ES256 expected)");
    } else if (cJSON_GetObjectItemCaseSensitive(root, "crit")) {
        licence_reason(reason, cap, "the token header names critical extensions, which are not supported");
    } else if (kid && !cJSON_IsString(kid)) {
        licence_reason(reason, cap, "the token header's kid is not a string");
    } else if (kid && copy_string(out->kid, sizeof(out->kid), kid->valuestring) != 0) {
        licence_reason(reason, cap, "the token header's kid is too long");
    } else {
        memcpy(out->alg, "ES256", 6);
        out->has_kid = kid != NULL;
        rc = 0;
    }
    cJSON_Delete(root);
    return rc;
}

/* A NumericDate (RFC 7519): seconds, possibly fractional, within year 9999. */
static int numeric_date(const cJSON *item, int64_t *out)
{
    if (!cJSON_IsNumber(item) || !isfinite(item->valuedouble) || item->valuedouble < 0 ||
        item->valuedouble > (double)NUMERIC_DATE_MAX)
        return -1;
    *out = (int64_t)item->valuedouble; /* truncation = floor for >= 0 */
    return 0;
}

int licence_parse_claims(const char *json, size_t len, struct licence_claims *out,
                         char *reason, size_t cap)
{
    memset(out, 0, sizeof(*out));
    out->users = -1;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        licence_reason(reason, cap, "the licence claims are not a JSON object");
        cJSON_Delete(root);
        return -1;
    }
    int rc = -1;
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(root, "sub");
    const cJSON *iat = cJSON_GetObjectItemCaseSensitive(root, "iat");
    const cJSON *nbf = cJSON_GetObjectItemCaseSensitive(root, "nbf");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(root, "exp");
    const cJSON *users = cJSON_GetObjectItemCaseSensitive(root, "users");
    const cJSON *modules = cJSON_GetObjectItemCaseSensitive(root, "modules");
    const cJSON *deployment = cJSON_GetObjectItemCaseSensitive(root, "deployment");

    if (!cJSON_IsString(sub) || sub->valuestring[0] == '\0') {
        licence_reason(reason, cap, "the licence has no sub (customer id) claim");
        goto out;
    }
    if (copy_string(out->sub, sizeof(out->sub), sub->valuestring) != 0) {
        licence_reason(reason, cap, "the licence's sub claim is longer than %zu bytes",
                   sizeof(out->sub) - 1);
        goto out;
    }
    if (!exp || numeric_date(exp, &out->exp) != 0) {
        licence_reason(reason, cap, "the licence has no valid exp (expiry) claim");
        goto out;
    }
    if (iat) {
        if (numeric_date(iat, &out->iat) != 0) {
            licence_reason(reason, cap, "the licence's iat claim is not a date");
            goto out;
        }
        out->has_iat = true;
    }
    if (nbf) {
        if (numeric_date(nbf, &out->nbf) != 0) {
            licence_reason(reason, cap, "the licence's nbf claim is not a date");
            goto out;
        }
        out->has_nbf = true;
    }
    if (out->has_nbf && out->nbf > out->exp) {
        licence_reason(reason, cap, "the licence's nbf is later than its exp");
        goto out;
    }
    if (!cJSON_IsNumber(users) || !isfinite(users->valuedouble) || users->valuedouble < 0 ||
        users->valuedouble > 1e12 ||
        users->valuedouble != (double)(long long)users->valuedouble) {
        licence_reason(reason, cap, "the licence has no users claim (a whole number)");
        goto out;
    }
    out->users = (long long)users->valuedouble;
    if (!cJSON_IsArray(modules)) {
        licence_reason(reason, cap, "the licence has no modules claim (an array of names)");
        goto out;
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, modules)
    {
        if (!cJSON_IsString(m)) {
            licence_reason(reason, cap, "the licence's modules claim holds something that is not a name");
            goto out;
        }
        if (out->nmodules == LICENCE_MODULES_MAX) {
            licence_reason(reason, cap, "the licence names more than %d modules", LICENCE_MODULES_MAX);
            goto out;
        }
        if (copy_string(out->modules[out->nmodules], LICENCE_MODULE_NAME_MAX, m->valuestring) != 0) {
            licence_reason(reason, cap, "a module name in the licence is longer than %d bytes",
                       LICENCE_MODULE_NAME_MAX - 1);
            goto out;
        }
        out->nmodules++;
    }
    if (deployment) {
        if (!cJSON_IsString(deployment) ||
            copy_string(out->deployment, sizeof(out->deployment), deployment->valuestring) != 0) {
            licence_reason(reason, cap, "the licence's deployment claim is not a short string");
            goto out;
        }
        out->has_deployment = true;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

enum licence_status licence_token_verify(const char *token, size_t len,
                                         const struct licence_keyset *keys,
                                         struct licence_claims *claims, char *reason,
                                         size_t cap)
{
    memset(claims, 0, sizeof(*claims));
    claims->users = -1;
    if (len > LICENCE_MAX_LEN) {
        licence_reason(reason, cap, "the licence token is longer than %d bytes", LICENCE_MAX_LEN);
        return LS_MALFORMED;
    }
    struct jws_parts parts;
    if (jws_split(token, len, &parts) != 0) {
        licence_reason(reason, cap, "the licence is not a JWS compact token (three base64url parts)");
        return LS_MALFORMED;
    }
    enum licence_status st = LS_MALFORMED;
    size_t hlen = 0, plen = 0, slen = 0;
    unsigned char *header = b64url_decode_alloc(parts.header, parts.header_len, &hlen);
    unsigned char *payload = b64url_decode_alloc(parts.payload, parts.payload_len, &plen);
    unsigned char *sig = b64url_decode_alloc(parts.signature, parts.signature_len, &slen);
    struct jws_header hdr;
    if (!header || !payload || !sig) {
        licence_reason(reason, cap, "a part of the licence token is not valid base64url");
        goto out;
    }
    if (jws_parse_header((const char *)header, hlen, &hdr, reason, cap) != 0)
        goto out;
    if (slen != 64) {
        licence_reason(reason, cap, "the licence signature is %zu bytes, ES256 needs 64%s", slen,
                   slen < 64 ? ": truncated?" : "");
        goto out;
    }
    /* Claims are parsed before the signature is checked so that a bad
     * signature can still be told apart from garbage; they are trusted only
     * when the signature holds. */
    if (licence_parse_claims((const char *)payload, plen, claims, reason, cap) != 0)
        goto out;

    st = LS_BAD_SIGNATURE;
    if (licence_keyset_count(keys) == 0) {
        licence_reason(reason, cap,
                   "no public key to check the licence signature: set PI_LICENCE_PUBLIC_KEY or "
                   "PI_LICENCE_PUBLIC_KEY_FILE");
        goto out;
    }
    unsigned char hash[32];
    if (mbedtls_sha256_ret((const unsigned char *)token, parts.signing_input_len, hash, 0) != 0) {
        licence_reason(reason, cap, "could not hash the licence token");
        goto out;
    }
    bool candidate = false;
    if (licence_keyset_verify_es256(keys, hdr.has_kid ? hdr.kid : NULL, hash, sig, &candidate)) {
        st = LS_VALID;
        goto out;
    }
    if (!candidate)
        licence_reason(reason, cap,
                   "the licence names signing key \"%.64s\", which is not among the %zu configured "
                   "public key(s)",
                   hdr.kid, licence_keyset_count(keys));
    else
        licence_reason(reason, cap, "the licence signature does not verify: it was altered or signed "
                                "by someone else");
out:
    if (st != LS_VALID) {
        /* Claims of a token that did not verify are nobody's word. */
        memset(claims, 0, sizeof(*claims));
        claims->users = -1;
    }
    free(header);
    free(payload);
    free(sig);
    return st;
}

void licence_iso8601(int64_t t, char *out, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        if (cap > 0)
            out[0] = '\0';
    }
}

enum licence_status licence_evaluate(const struct licence_claims *claims, int64_t now,
                                     unsigned warn_days, const char *deployment_id,
                                     long *days_left, char *reason, size_t cap)
{
    int64_t left = claims->exp - now;
    /* Whole days, rounded towards minus infinity so that "0 days" means
     * "less than a day". */
    *days_left = (long)(left >= 0 ? left / 86400 : -((-left + 86399) / 86400));
    char date[32];
    if (claims->has_deployment && deployment_id && deployment_id[0] &&
        strcmp(claims->deployment, deployment_id) != 0) {
        licence_reason(reason, cap,
                   "the licence is for deployment \"%.100s\", this is \"%.100s\" (PI_DEPLOYMENT_ID): "
                   "ask for a licence for this deployment",
                   claims->deployment, deployment_id);
        return LS_WRONG_DEPLOYMENT;
    }
    if (claims->has_nbf && now < claims->nbf) {
        licence_iso8601(claims->nbf, date, sizeof(date));
        licence_reason(reason, cap, "the licence is not valid before %s: check the clock or the licence",
                   date);
        return LS_NOT_YET_VALID;
    }
    licence_iso8601(claims->exp, date, sizeof(date));
    if (now >= claims->exp) {
        licence_reason(reason, cap, "the licence expired on %s: ask your CSM for a new one", date);
        return LS_EXPIRED;
    }
    if (left <= (int64_t)warn_days * 86400) {
        licence_reason(reason, cap, "the licence expires on %s (%ld day(s) left): renew it soon", date,
                   *days_left);
        return LS_EXPIRING;
    }
    licence_reason(reason, cap, "the licence is valid until %s", date);
    return LS_VALID;
}

/* --- XML --------------------------------------------------------------- */

static const char *find_bytes(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; n <= len && i <= len - n; i++)
        if (memcmp(hay + i, needle, n) == 0)
            return hay + i;
    return NULL;
}

int licence_xml_normalise(const char *in, size_t len, char *out, size_t *out_len, char *reason,
                          size_t cap)
{
    size_t start = 0, end = len;
    while (start < end && is_space(in[start]))
        start++;
    while (end > start && is_space(in[end - 1]))
        end--;
    size_t n = 0;
    bool in_tag = false;
    char quote = 0;
    for (size_t i = start; i < end;) {
        char c = in[i];
        if (c == '\0' || ((unsigned char)c < 0x20 && !is_space(c))) {
            licence_reason(reason, cap, "the XML licence holds a control character");
            *out_len = 0;
            out[0] = '\0';
            return -1;
        }
        if (!is_space(c)) {
            if (in_tag) {
                if (quote) {
                    if (c == quote)
                        quote = 0;
                } else if (c == '"' || c == '\'') {
                    quote = c;
                } else if (c == '>') {
                    in_tag = false;
                }
            } else if (c == '<') {
                in_tag = true;
            }
            out[n++] = c;
            i++;
            continue;
        }
        /* A run of whitespace: decide what it becomes as a whole. */
        size_t j = i;
        bool line_break = false;
        while (j < end && is_space(in[j])) {
            if (in[j] == '\r' || in[j] == '\n')
                line_break = true;
            j++;
        }
        if (in_tag && !quote) {
            if (line_break) {
                out[n++] = ' ';
            } else {
                memcpy(out + n, in + i, j - i);
                n += j - i;
            }
        } else if (quote) {
            /* Inside an attribute value: keep spaces, drop line breaks. */
            for (size_t k = i; k < j; k++)
                if (in[k] != '\r' && in[k] != '\n')
                    out[n++] = in[k];
        } else {
            bool between_tags = n > 0 && out[n - 1] == '>' && j < end && in[j] == '<';
            if (!line_break && !between_tags) {
                memcpy(out + n, in + i, j - i);
                n += j - i;
            }
        }
        i = j;
    }
    out[n] = '\0';
    *out_len = n;
    if (n == 0 || out[0] != '<' || out[n - 1] != '>' || in_tag) {
        licence_reason(reason, cap, "the XML licence is not a complete document (it must start with '<' "
                                "and end with '>')");
        return -1;
    }
    if (!find_bytes(out, n, "<licence") || !find_bytes(out, n, "</licence>")) {
        licence_reason(reason, cap, "the XML licence has no <licence>...</licence> element");
        return -1;
    }
    return 0;
}
