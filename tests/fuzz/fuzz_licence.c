/* libFuzzer target over the whole licence parser (licence_token.c): form
 * classification, whitespace stripping, base64url (with a round-trip check),
 * JWS split and header, JSON claims and their checks, ES256 verification
 * against a fixed key, PEM key sets, and the XML normaliser (with an
 * idempotence check). Any crash, leak, sanitizer report or failed check is a
 * finding. Seeds: tests/fuzz/corpus-licence (seed-token is signed by the key
 * below, whose private half was thrown away). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "licence_token.h"

static const char FUZZ_KEY[] =
    "kid: fuzz\n"
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE3T8f78O7V/iEOaTYmQ5+uhq6/Qp0\n"
    "Lso2U8n650wW9kx45oxbqOrgKolVLx1Rz1uDfUkjpBXXZdE7qIbtZ3fYZA==\n"
    "-----END PUBLIC KEY-----\n";

static struct licence_keyset *keys;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char reason[LICENCE_REASON_MAX];
    if (licence_keyset_parse(FUZZ_KEY, strlen(FUZZ_KEY), "fuzz", &keys, reason, sizeof(reason)) != 0)
        abort();
    return 0;
}

static void check_b64url(const char *in, size_t len)
{
    size_t cap = B64URL_DECODED_MAX(len);
    unsigned char *dec = malloc(cap + 1);
    size_t n;
    if (!dec)
        return;
    if (b64url_decode(in, len, dec, cap, &n) == 0) {
        /* Strict decoding means one encoding per byte string. */
        char *enc = malloc(len + 2);
        if (enc) {
            size_t m = b64url_encode(dec, n, enc, len + 2);
            if (m != len || memcmp(enc, in, len) != 0)
                abort();
            free(enc);
        }
    }
    free(dec);
}

static void check_xml(const char *in, size_t len)
{
    char *out = malloc(len + 1);
    char reason[LICENCE_REASON_MAX];
    size_t n;
    if (!out)
        return;
    if (licence_xml_normalise(in, len, out, &n, reason, sizeof(reason)) == 0) {
        if (n > len || strlen(out) != n || memchr(out, '\n', n) || memchr(out, '\r', n))
            abort();
        /* Normalising twice changes nothing. */
        char *again = malloc(n + 1);
        size_t m;
        if (again) {
            if (licence_xml_normalise(out, n, again, &m, reason, sizeof(reason)) != 0 || m != n ||
                memcmp(again, out, n) != 0)
                abort();
            free(again);
        }
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > LICENCE_MAX_LEN)
        return 0;
    const char *in = (const char *)data;
    char reason[LICENCE_REASON_MAX];

    enum licence_form form = licence_classify(in, size);
    (void)licence_form_name(form);
    /* The reason is there exactly when the value is a broken token. */
    if (licence_classify_reason(in, size, reason, sizeof(reason)) != form ||
        (form == LICENCE_FORM_BROKEN_TOKEN) != (reason[0] != '\0'))
        abort();

    char *stripped = malloc(size + 1);
    if (!stripped)
        return 0;
    size_t n = licence_strip_whitespace(in, size, stripped);

    struct licence_claims claims;
    enum licence_status st = licence_token_verify(stripped, n, keys, &claims, reason, sizeof(reason));
    if (st == LS_VALID) {
        long days;
        st = licence_evaluate(&claims, 1800000000, 30, "d1", &days, reason, sizeof(reason));
        char iso[32];
        licence_iso8601(claims.exp, iso, sizeof(iso));
    } else if (st != LS_MALFORMED && st != LS_BAD_SIGNATURE) {
        abort();
    }
    if (form == LICENCE_FORM_TOKEN) {
        struct jws_parts parts;
        if (jws_split(stripped, n, &parts) != 0)
            abort(); /* classify said token: the split must agree */
    }
    free(stripped);

    check_b64url(in, size);
    check_xml(in, size);

    /* The raw bytes as a header, claims and PEM. */
    struct jws_header hdr;
    (void)jws_parse_header(in, size, &hdr, reason, sizeof(reason));
    (void)licence_parse_claims(in, size, &claims, reason, sizeof(reason));
    struct licence_keyset *ks = NULL;
    if (licence_keyset_parse(in, size, "fuzz", &ks, reason, sizeof(reason)) == 0)
        licence_keyset_free(ks);
    return 0;
}
