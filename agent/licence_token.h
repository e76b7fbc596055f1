/* licence_token: the pure parts of licence handling. Bytes in, result out:
 * telling the forms of PI_LICENCE apart, base64url, JWS compact (RFC 7515)
 * with ES256 checked against the vendor's keys chosen by `kid`
 * (licence_keys.h), the claims and their checks, and the XML normaliser. Nothing here logs, reads the
 * environment or the clock; reasons never quote the licence itself. */
#ifndef PI_LICENCE_TOKEN_H
#define PI_LICENCE_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "licence_keys.h"
#include "licence_status.h"

/* Longest licence (token, XML document or customer key) the agent accepts. */
#define LICENCE_MAX_LEN (64 * 1024)
#define LICENCE_REASON_MAX 256

enum licence_form {
    LICENCE_FORM_NONE,  /* empty or only whitespace */
    LICENCE_FORM_TOKEN, /* JWS compact: an offline licence */
    LICENCE_FORM_XML,   /* <licence>...</licence> */
    LICENCE_FORM_KEY,   /* anything else: an ALM customer key */
    LICENCE_FORM_BROKEN_TOKEN, /* looks like an offline licence, is not a whole one */
};

const char *licence_form_name(enum licence_form form);

/* Writes the reason for a refusal into reason (cap bytes) unless reason is
 * NULL or cap 0: the one way the pure licence modules explain themselves. */
void licence_reason(char *reason, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Copies in without CR, LF, tab and space into out (room for len + 1 bytes);
 * returns the new length. People paste licences across lines. */
size_t licence_strip_whitespace(const char *in, size_t len, char *out);

/* Which form a PI_LICENCE value has. A token is three base64url segments
 * whose first decodes to a JSON object (after whitespace is stripped); XML
 * starts with '<'; anything else that is not blank is a customer key. */
enum licence_form licence_classify(const char *value, size_t len);
/* licence_classify, telling apart a value that looks like an offline licence
 * but is not a complete token: LICENCE_FORM_BROKEN_TOKEN, with what is wrong
 * in reason ("2 of 3 parts: truncated?"; reason may be NULL). It looks like
 * one when its first part decodes to (the start of) a JSON object holding
 * "alg", or when it has dots, all its parts are base64url and one of them
 * decodes to the start of a JSON object. Such a value is never a customer
 * key; "acme.corp.key" still is. The reason never quotes the value. */
enum licence_form licence_classify_reason(const char *value, size_t len, char *reason,
                                          size_t cap);

/* base64url without padding (RFC 7515 section 2). Decoding is strict: only the
 * alphabet, no '=', length mod 4 != 1, unused bits zero. Returns 0, or -1 on
 * bad input or when out (cap bytes) is too small. */
#define B64URL_DECODED_MAX(n) (((n) / 4) * 3 + 3)
int b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap, size_t *out_len);
/* Writes the encoding and a NUL when it fits in cap; returns its length. */
size_t b64url_encode(const unsigned char *in, size_t len, char *out, size_t cap);

/* The three segments of a JWS compact token (pointers into the token). */
struct jws_parts {
    const char *header;
    size_t header_len;
    const char *payload;
    size_t payload_len;
    const char *signature;
    size_t signature_len;
    size_t signing_input_len; /* header '.' payload */
};
/* Exactly two dots, three non-empty segments of the base64url alphabet. */
int jws_split(const char *token, size_t len, struct jws_parts *out);

struct jws_header {
    char alg[16];
    bool has_kid;
    char kid[128];
};
/* Parses the decoded header JSON: alg must be ES256; a "crit" member is
 * refused (no extension is understood). */
int jws_parse_header(const char *json, size_t len, struct jws_header *out, char *reason,
                     size_t cap);

#define LICENCE_MODULES_MAX 32
#define LICENCE_MODULE_NAME_MAX 64

struct licence_claims {
    char sub[128];
    bool has_iat, has_nbf;
    int64_t iat, nbf, exp;
    long long users;
    int nmodules;
    char modules[LICENCE_MODULES_MAX][LICENCE_MODULE_NAME_MAX];
    bool has_deployment;
    char deployment[128];
};
/* Parses the decoded payload JSON. Required: sub (string), exp (NumericDate),
 * users (integer >= 0), modules (array of strings). Optional: iat, nbf,
 * deployment. Returns 0, or -1 with a reason. */
int licence_parse_claims(const char *json, size_t len, struct licence_claims *out,
                         char *reason, size_t cap);

/* Checks a token whose whitespace is already stripped: split, header, ES256
 * signature against the key named by kid (or any key when there is no kid),
 * claims. keys may be NULL (no key configured). Returns LS_VALID with the
 * claims filled, LS_MALFORMED or LS_BAD_SIGNATURE with a reason. Time and
 * deployment are not looked at here: see licence_evaluate. */
enum licence_status licence_token_verify(const char *token, size_t len,
                                         const struct licence_keyset *keys,
                                         struct licence_claims *claims, char *reason,
                                         size_t cap);

/* Time and deployment checks of verified claims at unix time now:
 * wrong-deployment, not-yet-valid, expired, expiring (at most warn_days left)
 * or valid. deployment_id NULL or "" skips the deployment check. days_left
 * gets whole days until exp (negative once expired). */
enum licence_status licence_evaluate(const struct licence_claims *claims, int64_t now,
                                     unsigned warn_days, const char *deployment_id,
                                     long *days_left, char *reason, size_t cap);

/* Puts an XML licence on one line: line breaks (with the indentation after
 * them) removed, whitespace between tags removed, a line break inside a tag
 * becomes one space; text and attribute values are kept. out needs len + 1
 * bytes. The result must hold a <licence> element. Returns 0, or -1 with a
 * reason. */
int licence_xml_normalise(const char *in, size_t len, char *out, size_t *out_len, char *reason,
                          size_t cap);

/* ISO 8601 UTC ("2026-11-25T08:00:00Z") of unix seconds into out (>= 21 bytes). */
void licence_iso8601(int64_t t, char *out, size_t cap);

#endif
