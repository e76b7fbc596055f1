/* Unit tests for licence_token.c: base64url, JWS split, classification,
 * claims and their checks, ES256 verification with keys made at test time,
 * and the XML normaliser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_licence_keys.h"

#define NOW 1800000000LL /* 2027-01-15 */
#define DAY 86400LL

/* ---- base64url ---------------------------------------------------------- */

static void b64url_encodes_rfc4648_vectors_without_padding(void **s)
{
    (void)s;
    const char *in[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
    const char *out[] = { "", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy" };
    for (size_t i = 0; i < 7; i++) {
        char buf[16];
        assert_int_equal(b64url_encode((const unsigned char *)in[i], strlen(in[i]), buf, sizeof(buf)),
                         strlen(out[i]));
        assert_string_equal(buf, out[i]);
        unsigned char dec[16];
        size_t n = 99;
        assert_int_equal(b64url_decode(out[i], strlen(out[i]), dec, sizeof(dec), &n), 0);
        assert_int_equal(n, strlen(in[i]));
        assert_memory_equal(dec, in[i], n);
    }
}

static void b64url_uses_the_url_alphabet(void **s)
{
    (void)s;
    const unsigned char bytes[] = { 0xfb, 0xff, 0xbf };
    char buf[8];
    b64url_encode(bytes, 3, buf, sizeof(buf));
    assert_string_equal(buf, "-_-_");
    unsigned char dec[4];
    size_t n;
    assert_int_equal(b64url_decode("-_-_", 4, dec, sizeof(dec), &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(dec, bytes, 3);
}

static void b64url_decode_is_strict(void **s)
{
    (void)s;
    unsigned char dec[16];
    size_t n;
    const char *bad[] = { "Zg==", "Zg=", "Z", "Zm9vY", "Zh", "Zm+v", "Zm/v", "Zm9 ", "Zm\n9" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(b64url_decode(bad[i], strlen(bad[i]), dec, sizeof(dec), &n), -1);
    /* Too small an output buffer is refused, not overrun. */
    assert_int_equal(b64url_decode("Zm9vYmFy", 8, dec, 5, &n), -1);
    assert_int_equal(b64url_decode("Zm9vYmFy", 8, dec, 6, &n), 0);
}

static void b64url_encode_reports_needed_size_when_too_small(void **s)
{
    (void)s;
    char buf[4] = "xyz";
    assert_int_equal(b64url_encode((const unsigned char *)"foobar", 6, buf, sizeof(buf)), 8);
    assert_string_equal(buf, "xyz");
}

/* ---- whitespace, split, classify ---------------------------------------- */

static void strip_removes_cr_lf_space_tab_anywhere(void **s)
{
    (void)s;
    const char in[] = " ab\r\n c\td \n";
    char out[sizeof(in)];
    assert_int_equal(licence_strip_whitespace(in, strlen(in), out), 4);
    assert_string_equal(out, "abcd");
}

static void jws_split_finds_three_parts(void **s)
{
    (void)s;
    struct jws_parts p;
    const char *t = "aaa.bb.c";
    assert_int_equal(jws_split(t, strlen(t), &p), 0);
    assert_int_equal(p.header_len, 3);
    assert_int_equal(p.payload_len, 2);
    assert_int_equal(p.signature_len, 1);
    assert_int_equal(p.signing_input_len, 6);
    assert_ptr_equal(p.signature, t + 7);
    const char *bad[] = { "a.b", "a.b.c.d", ".b.c", "a..c", "a.b.", "a+b.c.d", "a.b.c=", "abc", "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(jws_split(bad[i], strlen(bad[i]), &p), -1);
}

static void classify_tells_the_forms_apart(void **s)
{
    (void)s;
    struct test_key k;
    test_key_new(&k, MBEDTLS_ECP_DP_SECP256R1);
    char claims[512];
    test_claims(claims, sizeof(claims), NOW - DAY, NOW + 100 * DAY, NULL);
    char *tok = test_token(&k, "{\"alg\":\"ES256\"}", claims);

    assert_int_equal(licence_classify("", 0), LICENCE_FORM_NONE);
    assert_int_equal(licence_classify(" \r\n\t", 4), LICENCE_FORM_NONE);
    assert_int_equal(licence_classify(tok, strlen(tok)), LICENCE_FORM_TOKEN);
    assert_int_equal(licence_classify("<licence/>", 10), LICENCE_FORM_XML);
    assert_int_equal(licence_classify("\n  <licence>", 12), LICENCE_FORM_XML);
    assert_int_equal(licence_classify("ACME-1234-5678", 14), LICENCE_FORM_KEY);
    /* Two dots do not make a token: the header must be a JSON object. */
    assert_int_equal(licence_classify("acme.corp.key", 13), LICENCE_FORM_KEY);

    /* A token pasted over several lines is still a token. */
    size_t n = strlen(tok);
    char *wrapped = malloc(n * 2 + 8);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 20 == 0)
            wrapped[w++] = i % 40 ? '\n' : ' ';
        wrapped[w++] = tok[i];
    }
    wrapped[w++] = '\r';
    wrapped[w++] = '\n';
    assert_int_equal(licence_classify(wrapped, w), LICENCE_FORM_TOKEN);
    free(wrapped);
    free(tok);
    test_key_free(&k);
}

/* Classifies a value built from a real token; returns the form and leaves the
 * reason in why. */
static enum licence_form classify_why(const char *v, char *why, size_t cap)
{
    return licence_classify_reason(v, strlen(v), why, cap);
}

static void cut_or_damaged_tokens_are_broken_never_customer_keys(void **s)
{
    (void)s;
    struct test_key k;
    test_key_new(&k, MBEDTLS_ECP_DP_SECP256R1);
    char claims[512];
    test_claims(claims, sizeof(claims), NOW - DAY, NOW + 100 * DAY, NULL);
    char *tok = test_token(&k, "{\"alg\":\"ES256\",\"kid\":\"k1\"}", claims);
    size_t n = strlen(tok);
    const char *dot1 = strchr(tok, '.');
    const char *dot2 = strchr(dot1 + 1, '.');
    size_t h = (size_t)(dot1 - tok), hp = (size_t)(dot2 - tok);
    char *v = malloc(2 * n + 8);
    char why[LICENCE_REASON_MAX];

    /* Cut after the payload, with or without its dot: 2 of 3 parts. */
    memcpy(v, tok, hp), v[hp] = '\0';
    assert_int_equal(classify_why(v, why, sizeof why), LICENCE_FORM_BROKEN_TOKEN);
    assert_string_equal(why, "2 of 3 parts: truncated?");
    memcpy(v, tok, hp + 1), v[hp + 1] = '\0';
    assert_int_equal(classify_why(v, why, sizeof why), LICENCE_FORM_BROKEN_TOKEN);
    assert_string_equal(why, "part 3 of 3 is empty: truncated?");
    /* Cut inside the payload: still 2 of 3, whatever the cut. */
    for (size_t cut = h + 2; cut < hp; cut += 7) {
        memcpy(v, tok, cut), v[cut] = '\0';
        assert_int_equal(classify_why(v, why, sizeof why), LICENCE_FORM_BROKEN_TOKEN);
        assert_string_equal(why, "2 of 3 parts: truncated?");
    }
    /* The header alone, whole or cut anywhere after "alg": 1 of 3. */
    for (size_t cut = 12; cut <= h; cut++) {
        memcpy(v, tok, cut), v[cut] = '\0';
        assert_int_equal(classify_why(v, why, sizeof why), LICENCE_FORM_BROKEN_TOKEN);
        assert_string_equal(why, "1 of 3 parts: truncated?");
    }
    /* Header and dot only: the payload is missing. */
    memcpy(v, tok, h + 1), v[h + 1] = '\0';
    assert_int_equal(classify_why(v, why, sizeof why), LICENCE_FORM_BROKEN_TOKEN);
    assert_string_equal(why, "2 of 3 parts: truncated?");
    /* Cut inside the signature: still a token; the check says truncated. */
    memcpy(v, tok, n - 10), v[n - 10] = '\0';
    assert_int_equal(classify_why(v, why, sizeof why), LICENCE_FORM_TOKEN);
    struct licence_claims c;
    assert_int_equal(licence_token_verify(v, strlen(v), NULL, &c, why, sizeof why), LS_MALFORMED);
    assert_non_null(strstr(why, "truncated?"));
    /* Two tokens pasted together. */
    snprintf(v, 2 * n + 8, "%s%s", tok, tok);
    assert_int_equal(classify_why(v, why, sizeof why), LICENCE_FORM_BROKEN_TOKEN);
    assert_string_equal(why, "5 parts where an offline licence has 3: two pasted together?");
    /* A character outside base64url in the payload. */
    snprintf(v, 2 * n + 8, "%s", tok);
    v[h + 5] = '+';
    assert_int_equal(classify_why(v, why, sizeof why), LICENCE_FORM_BROKEN_TOKEN);
    assert_string_equal(why, "part 2 of 3 has a character outside base64url: damaged in the paste?");
    /* The header lost its first character; the payload still decodes. */
    snprintf(v, 2 * n + 8, "%s", tok + 1);
    assert_int_equal(classify_why(v, why, sizeof why), LICENCE_FORM_BROKEN_TOKEN);
    assert_string_equal(why, "3 parts, but the first is not a token header: damaged in the paste?");
    /* Wrapped over lines and cut: still broken, not a key. */
    snprintf(v, 2 * n + 8, "  %.*s\n%.*s\r\n", (int)h, tok, (int)(hp - h), tok + h);
    assert_int_equal(classify_why(v, why, sizeof why), LICENCE_FORM_BROKEN_TOKEN);
    /* The reason never quotes the value. */
    assert_null(strstr(why, "eyJ"));

    /* Customer keys stay customer keys, dots or not. */
    const char *keys[] = { "ACME-1234-5678", "acme.corp.key", "acme.corp", "a.b", "eyJfoo",
                           "customer-key-SECRET-1234567890", "x..y", "3f2504e0-4f89-11d3-9a0c" };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        assert_int_equal(classify_why(keys[i], why, sizeof why), LICENCE_FORM_KEY);
        assert_string_equal(why, "");
    }
    /* The whole token is a token, without a reason. */
    assert_int_equal(classify_why(tok, why, sizeof why), LICENCE_FORM_TOKEN);
    assert_string_equal(why, "");
    assert_int_equal(licence_classify_reason(tok, h, NULL, 0), LICENCE_FORM_BROKEN_TOKEN);
    assert_string_equal(licence_form_name(LICENCE_FORM_BROKEN_TOKEN), "broken-token");
    free(v);
    free(tok);
    test_key_free(&k);
}

static void form_and_status_names(void **s)
{
    (void)s;
    assert_string_equal(licence_form_name(LICENCE_FORM_KEY), "customer-key");
    assert_string_equal(licence_status_name(LS_NOT_YET_VALID), "not-yet-valid");
    enum licence_status st;
    assert_int_equal(licence_status_parse("wrong-deployment", &st), 0);
    assert_int_equal(st, LS_WRONG_DEPLOYMENT);
    assert_int_equal(licence_status_parse("fine", &st), -1);
    assert_true(licence_status_acceptable(LS_VALID));
    assert_true(licence_status_acceptable(LS_EXPIRING));
    assert_true(licence_status_acceptable(LS_UNVERIFIED));
    assert_false(licence_status_acceptable(LS_EXPIRED));
    assert_false(licence_status_acceptable(LS_UNREACHABLE));
    assert_false(licence_status_acceptable(LS_MISSING));
}

/* ---- header and claims -------------------------------------------------- */

static void header_requires_es256_and_refuses_crit(void **s)
{
    (void)s;
    struct jws_header h;
    char reason[LICENCE_REASON_MAX];
    const char *ok = "{\"alg\":\"ES256\",\"kid\":\"vendor-2026\",\"typ\":\"JWT\"}";
    assert_int_equal(jws_parse_header(ok, strlen(ok), &h, reason, sizeof(reason)), 0);
    assert_true(h.has_kid);
    assert_string_equal(h.kid, "vendor-2026");
    const char *bad[] = { "{\"alg\":\"none\"}", "{\"alg\":\"HS256\"}", "{}", "[1]", "nope",
                          "{\"alg\":\"ES256\",\"crit\":[\"b64\"]}", "{\"alg\":\"ES256\",\"kid\":7}" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reason[0] = '\0';
        assert_int_equal(jws_parse_header(bad[i], strlen(bad[i]), &h, reason, sizeof(reason)), -1);
        assert_true(reason[0] != '\0');
    }
}

static void claims_parse_all_fields(void **s)
{
    (void)s;
    struct licence_claims c;
    char reason[LICENCE_REASON_MAX];
    char json[512];
    test_claims(json, sizeof(json), NOW, NOW + 10 * DAY, "prod-eu");
    assert_int_equal(licence_parse_claims(json, strlen(json), &c, reason, sizeof(reason)), 0);
    assert_string_equal(c.sub, "acme-42");
    assert_int_equal(c.nbf, NOW);
    assert_int_equal(c.exp, NOW + 10 * DAY);
    assert_true(c.has_iat);
    assert_int_equal(c.users, 25);
    assert_int_equal(c.nmodules, 2);
    assert_string_equal(c.modules[1], "reports");
    assert_true(c.has_deployment);
    assert_string_equal(c.deployment, "prod-eu");

    const char *minimal = "{\"sub\":\"x\",\"exp\":1900000000.5,\"users\":0,\"modules\":[]}";
    assert_int_equal(licence_parse_claims(minimal, strlen(minimal), &c, reason, sizeof(reason)), 0);
    assert_false(c.has_nbf);
    assert_false(c.has_deployment);
    assert_int_equal(c.exp, 1900000000);
}

static void claims_reject_missing_or_wrong_types(void **s)
{
    (void)s;
    const char *bad[] = {
        "[]",
        "{\"exp\":1900000000,\"users\":1,\"modules\":[]}",
        "{\"sub\":\"\",\"exp\":1900000000,\"users\":1,\"modules\":[]}",
        "{\"sub\":\"x\",\"users\":1,\"modules\":[]}",
        "{\"sub\":\"x\",\"exp\":\"tomorrow\",\"users\":1,\"modules\":[]}",
        "{\"sub\":\"x\",\"exp\":-5,\"users\":1,\"modules\":[]}",
        "{\"sub\":\"x\",\"exp\":1e300,\"users\":1,\"modules\":[]}",
        "{\"sub\":\"x\",\"exp\":1900000000,\"modules\":[]}",
        "{\"sub\":\"x\",\"exp\":1900000000,\"users\":-1,\"modules\":[]}",
        "{\"sub\":\"x\",\"exp\":1900000000,\"users\":2.5,\"modules\":[]}",
        "{\"sub\":\"x\",\"exp\":1900000000,\"users\":1}",
        "{\"sub\":\"x\",\"exp\":1900000000,\"users\":1,\"modules\":\"all\"}",
        "{\"sub\":\"x\",\"exp\":1900000000,\"users\":1,\"modules\":[1]}",
        "{\"sub\":\"x\",\"exp\":1900000000,\"nbf\":1900000001,\"users\":1,\"modules\":[]}",
        "{\"sub\":\"x\",\"exp\":1900000000,\"iat\":true,\"users\":1,\"modules\":[]}",
        "{\"sub\":\"x\",\"exp\":1900000000,\"users\":1,\"modules\":[],\"deployment\":3}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct licence_claims c;
        char reason[LICENCE_REASON_MAX] = "";
        assert_int_equal(licence_parse_claims(bad[i], strlen(bad[i]), &c, reason, sizeof(reason)), -1);
        assert_true(reason[0] != '\0');
    }
}

static void claims_limit_module_count(void **s)
{
    (void)s;
    char json[4096] = "{\"sub\":\"x\",\"exp\":1900000000,\"users\":1,\"modules\":[";
    for (int i = 0; i <= LICENCE_MODULES_MAX; i++)
        strcat(json, i ? ",\"m\"" : "\"m\"");
    strcat(json, "]}");
    struct licence_claims c;
    char reason[LICENCE_REASON_MAX];
    assert_int_equal(licence_parse_claims(json, strlen(json), &c, reason, sizeof(reason)), -1);
    assert_non_null(strstr(reason, "modules"));
}

/* ---- time and deployment checks ---------------------------------------- */

static struct licence_claims claims_for(long long nbf, long long exp, const char *deployment)
{
    struct licence_claims c;
    char json[512], reason[LICENCE_REASON_MAX];
    test_claims(json, sizeof(json), nbf, exp, deployment);
    if (licence_parse_claims(json, strlen(json), &c, reason, sizeof(reason)) != 0)
        abort();
    return c;
}

static void evaluate_time_window(void **s)
{
    (void)s;
    char reason[LICENCE_REASON_MAX];
    long days;
    struct licence_claims c = claims_for(NOW - DAY, NOW + 100 * DAY, NULL);
    assert_int_equal(licence_evaluate(&c, NOW, 30, NULL, &days, reason, sizeof(reason)), LS_VALID);
    assert_int_equal(days, 100);

    c = claims_for(NOW - DAY, NOW + 30 * DAY, NULL);
    assert_int_equal(licence_evaluate(&c, NOW, 30, NULL, &days, reason, sizeof(reason)), LS_EXPIRING);
    assert_int_equal(days, 30);
    assert_non_null(strstr(reason, "30 day"));
    assert_int_equal(licence_evaluate(&c, NOW, 29, NULL, &days, reason, sizeof(reason)), LS_VALID);

    c = claims_for(NOW - 10 * DAY, NOW, NULL);
    assert_int_equal(licence_evaluate(&c, NOW, 30, NULL, &days, reason, sizeof(reason)), LS_EXPIRED);
    assert_int_equal(licence_evaluate(&c, NOW - 1, 30, NULL, &days, reason, sizeof(reason)),
                     LS_EXPIRING);
    assert_int_equal(days, 0);
    assert_int_equal(licence_evaluate(&c, NOW + DAY + 1, 30, NULL, &days, reason, sizeof(reason)),
                     LS_EXPIRED);
    assert_int_equal(days, -2);
    assert_non_null(strstr(reason, "expired"));

    c = claims_for(NOW + DAY, NOW + 100 * DAY, NULL);
    assert_int_equal(licence_evaluate(&c, NOW, 30, NULL, &days, reason, sizeof(reason)),
                     LS_NOT_YET_VALID);
    assert_non_null(strstr(reason, "not valid before"));
}

static void evaluate_deployment_binding(void **s)
{
    (void)s;
    char reason[LICENCE_REASON_MAX];
    long days;
    struct licence_claims c = claims_for(NOW - DAY, NOW + 100 * DAY, "prod-eu");
    assert_int_equal(licence_evaluate(&c, NOW, 30, "prod-eu", &days, reason, sizeof(reason)), LS_VALID);
    assert_int_equal(licence_evaluate(&c, NOW, 30, "staging", &days, reason, sizeof(reason)),
                     LS_WRONG_DEPLOYMENT);
    assert_non_null(strstr(reason, "PI_DEPLOYMENT_ID"));
    /* Unset PI_DEPLOYMENT_ID cannot be compared: not checked. */
    assert_int_equal(licence_evaluate(&c, NOW, 30, NULL, &days, reason, sizeof(reason)), LS_VALID);
    assert_int_equal(licence_evaluate(&c, NOW, 30, "", &days, reason, sizeof(reason)), LS_VALID);
    /* A licence for no deployment in particular fits every deployment. */
    c = claims_for(NOW - DAY, NOW + 100 * DAY, NULL);
    assert_int_equal(licence_evaluate(&c, NOW, 30, "staging", &days, reason, sizeof(reason)), LS_VALID);
}

/* ---- keys and signatures ------------------------------------------------ */

static struct test_key key_a, key_b;
static char keyset_pem[2048];

static int keys_setup(void **s)
{
    (void)s;
    test_key_new(&key_a, MBEDTLS_ECP_DP_SECP256R1);
    test_key_new(&key_b, MBEDTLS_ECP_DP_SECP256R1);
    snprintf(keyset_pem, sizeof(keyset_pem), "# vendor keys\nkid: vendor-a\n%s\nkid: vendor-b\n%s",
             key_a.pem, key_b.pem);
    return 0;
}

static int keys_teardown(void **s)
{
    (void)s;
    test_key_free(&key_a);
    test_key_free(&key_b);
    test_rng_free();
    return 0;
}

static struct licence_keyset *parse_keys(const char *pem)
{
    struct licence_keyset *ks = NULL;
    char reason[LICENCE_REASON_MAX];
    assert_int_equal(licence_keyset_parse(pem, strlen(pem), "TEST", &ks, reason, sizeof(reason)), 0);
    return ks;
}

static void keyset_reads_labels_and_thumbprints(void **s)
{
    (void)s;
    struct licence_keyset *ks = parse_keys(keyset_pem);
    assert_int_equal(licence_keyset_count(ks), 2);
    assert_string_equal(licence_keyset_label(ks, 0), "vendor-a");
    assert_string_equal(licence_keyset_label(ks, 1), "vendor-b");
    assert_int_equal(strlen(licence_keyset_thumbprint(ks, 0)), 43);
    assert_string_not_equal(licence_keyset_thumbprint(ks, 0), licence_keyset_thumbprint(ks, 1));
    assert_null(licence_keyset_label(ks, 2));
    licence_keyset_free(ks);

    /* A key whose line breaks were flattened into literal "\n" or spaces. */
    char flat[1024];
    size_t n = 0;
    for (const char *p = key_a.pem; *p; p++) {
        if (*p == '\n') {
            flat[n++] = '\\';
            flat[n++] = 'n';
        } else {
            flat[n++] = *p;
        }
    }
    flat[n] = '\0';
    ks = parse_keys(flat);
    assert_int_equal(licence_keyset_count(ks), 1);
    assert_string_equal(licence_keyset_label(ks, 0), "");
    licence_keyset_free(ks);
}

static void keyset_rejects_bad_pem(void **s)
{
    (void)s;
    struct test_key p384;
    test_key_new(&p384, MBEDTLS_ECP_DP_SECP384R1);
    char truncated[600];
    snprintf(truncated, sizeof(truncated), "%.*s", (int)(strlen(key_a.pem) - 30), key_a.pem);
    const char *bad[] = {
        "",
        "not a key",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n",
        truncated,
        p384.pem,
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct licence_keyset *ks = (struct licence_keyset *)1;
        char reason[LICENCE_REASON_MAX] = "";
        assert_int_equal(licence_keyset_parse(bad[i], strlen(bad[i]), "PI_LICENCE_PUBLIC_KEY", &ks,
                                              reason, sizeof(reason)),
                         -1);
        assert_null(ks);
        assert_non_null(strstr(reason, "PI_LICENCE_PUBLIC_KEY"));
    }
    test_key_free(&p384);
}

static enum licence_status verify(const char *tok, const struct licence_keyset *ks,
                                  struct licence_claims *c, char *reason)
{
    return licence_token_verify(tok, strlen(tok), ks, c, reason, LICENCE_REASON_MAX);
}

static void verify_accepts_tokens_by_kid_label_thumbprint_or_none(void **s)
{
    (void)s;
    struct licence_keyset *ks = parse_keys(keyset_pem);
    char claims[512], header[256], reason[LICENCE_REASON_MAX];
    struct licence_claims c;
    test_claims(claims, sizeof(claims), NOW, NOW + DAY, NULL);

    char *t1 = test_token(&key_b, "{\"alg\":\"ES256\",\"kid\":\"vendor-b\"}", claims);
    assert_int_equal(verify(t1, ks, &c, reason), LS_VALID);
    assert_string_equal(c.sub, "acme-42");

    snprintf(header, sizeof(header), "{\"alg\":\"ES256\",\"kid\":\"%s\"}", licence_keyset_thumbprint(ks, 0));
    char *t2 = test_token(&key_a, header, claims);
    assert_int_equal(verify(t2, ks, &c, reason), LS_VALID);

    char *t3 = test_token(&key_b, "{\"alg\":\"ES256\"}", claims);
    assert_int_equal(verify(t3, ks, &c, reason), LS_VALID);
    free(t1);
    free(t2);
    free(t3);
    licence_keyset_free(ks);
}

static void verify_refuses_bad_signatures(void **s)
{
    (void)s;
    struct licence_keyset *ks = parse_keys(keyset_pem);
    char claims[512], reason[LICENCE_REASON_MAX];
    struct licence_claims c;
    test_claims(claims, sizeof(claims), NOW, NOW + DAY, NULL);

    /* Signed by key a, claiming to be key b. */
    char *wrong = test_token(&key_a, "{\"alg\":\"ES256\",\"kid\":\"vendor-b\"}", claims);
    assert_int_equal(verify(wrong, ks, &c, reason), LS_BAD_SIGNATURE);
    assert_int_equal(c.users, -1); /* unverified claims are not handed out */
    assert_string_equal(c.sub, "");

    /* Unknown kid. */
    char *unknown = test_token(&key_a, "{\"alg\":\"ES256\",\"kid\":\"vendor-z\"}", claims);
    assert_int_equal(verify(unknown, ks, &c, reason), LS_BAD_SIGNATURE);
    assert_non_null(strstr(reason, "vendor-z"));
    assert_non_null(strstr(reason, "not among"));

    /* The payload altered after signing (users 25 -> 99). */
    char *tok = test_token(&key_a, "{\"alg\":\"ES256\",\"kid\":\"vendor-a\"}", claims);
    char forged_claims[512];
    snprintf(forged_claims, sizeof(forged_claims), "%s", claims);
    char *u = strstr(forged_claims, "25");
    u[0] = '9';
    u[1] = '9';
    char payload[1024];
    b64url_encode((const unsigned char *)forged_claims, strlen(forged_claims), payload, sizeof(payload));
    char *d1 = strchr(tok, '.'), *d2 = strchr(d1 + 1, '.');
    char forged[4096];
    snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)(d1 - tok), tok, payload, d2);
    assert_int_equal(verify(forged, ks, &c, reason), LS_BAD_SIGNATURE);
    assert_null(strstr(reason, forged));

    /* No key configured at all. */
    assert_int_equal(verify(tok, NULL, &c, reason), LS_BAD_SIGNATURE);
    assert_non_null(strstr(reason, "PI_LICENCE_PUBLIC_KEY"));

    free(wrong);
    free(unknown);
    free(tok);
    licence_keyset_free(ks);
}

static void verify_calls_garbage_malformed(void **s)
{
    (void)s;
    struct licence_keyset *ks = parse_keys(keyset_pem);
    char claims[512], reason[LICENCE_REASON_MAX];
    struct licence_claims c;
    test_claims(claims, sizeof(claims), NOW, NOW + DAY, NULL);
    char *tok = test_token(&key_a, "{\"alg\":\"ES256\"}", claims);

    char shortsig[4096];
    snprintf(shortsig, sizeof(shortsig), "%.*s", (int)(strlen(tok) - 4), tok);
    const char *none_alg = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln";
    char *bad_claims = test_token(&key_a, "{\"alg\":\"ES256\"}", "{\"sub\":\"x\"}");
    const char *bad[] = { "abc", "a.b.c.d", "eyJ.e30.AAAA", none_alg, shortsig, bad_claims };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reason[0] = '\0';
        assert_int_equal(verify(bad[i], ks, &c, reason), LS_MALFORMED);
        assert_true(reason[0] != '\0');
    }
    free(tok);
    free(bad_claims);
    licence_keyset_free(ks);
}

/* ---- XML ---------------------------------------------------------------- */

static int normalise(const char *in, char *out, char *reason)
{
    size_t n;
    return licence_xml_normalise(in, strlen(in), out, &n, reason, LICENCE_REASON_MAX);
}

static void xml_is_put_on_one_line(void **s)
{
    (void)s;
    char out[1024], reason[LICENCE_REASON_MAX];
    const char *in = "\r\n  <?xml version=\"1.0\"?>\r\n<licence version=\"2\">\r\n"
                     "    <customer>Acme Ltd</customer>\n"
                     "    <users> 25 </users>\n"
                     "    <signature>\n      ABCD\n      EFGH==\n    </signature>\n"
                     "</licence>\n\n";
    assert_int_equal(normalise(in, out, reason), 0);
    assert_string_equal(out, "<?xml version=\"1.0\"?><licence version=\"2\"><customer>Acme Ltd</customer>"
                             "<users> 25 </users><signature>ABCDEFGH==</signature></licence>");
}

static void xml_tags_over_lines_and_attribute_values(void **s)
{
    (void)s;
    char out[1024], reason[LICENCE_REASON_MAX];
    const char *in = "<licence\n    id=\"a b\"\n    note='x >\n y'>  <a>1</a>   <b/>\t</licence>";
    assert_int_equal(normalise(in, out, reason), 0);
    assert_string_equal(out, "<licence id=\"a b\" note='x > y'><a>1</a><b/></licence>");
}

static void xml_rejects_what_is_not_a_licence_document(void **s)
{
    (void)s;
    char out[1024], reason[LICENCE_REASON_MAX];
    const char *bad[] = { "<licence>unterminated", "<other>x</other>", "<licence", "   ",
                          "<licence>\x01</licence>", "<licence x=\"1>" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reason[0] = '\0';
        assert_int_equal(normalise(bad[i], out, reason), -1);
        assert_true(reason[0] != '\0');
    }
    size_t n;
    assert_int_equal(licence_xml_normalise("<licence>\0</licence>", 20, out, &n, reason, sizeof(reason)), -1);
}

static void iso8601_dates(void **s)
{
    (void)s;
    char buf[32];
    licence_iso8601(0, buf, sizeof(buf));
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    licence_iso8601(1800000000, buf, sizeof(buf));
    assert_string_equal(buf, "2027-01-15T08:00:00Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(b64url_encodes_rfc4648_vectors_without_padding),
        cmocka_unit_test(b64url_uses_the_url_alphabet),
        cmocka_unit_test(b64url_decode_is_strict),
        cmocka_unit_test(b64url_encode_reports_needed_size_when_too_small),
        cmocka_unit_test(strip_removes_cr_lf_space_tab_anywhere),
        cmocka_unit_test(jws_split_finds_three_parts),
        cmocka_unit_test(classify_tells_the_forms_apart),
        cmocka_unit_test(cut_or_damaged_tokens_are_broken_never_customer_keys),
        cmocka_unit_test(form_and_status_names),
        cmocka_unit_test(header_requires_es256_and_refuses_crit),
        cmocka_unit_test(claims_parse_all_fields),
        cmocka_unit_test(claims_reject_missing_or_wrong_types),
        cmocka_unit_test(claims_limit_module_count),
        cmocka_unit_test(evaluate_time_window),
        cmocka_unit_test(evaluate_deployment_binding),
        cmocka_unit_test(keyset_reads_labels_and_thumbprints),
        cmocka_unit_test(keyset_rejects_bad_pem),
        cmocka_unit_test(verify_accepts_tokens_by_kid_label_thumbprint_or_none),
        cmocka_unit_test(verify_refuses_bad_signatures),
        cmocka_unit_test(verify_calls_garbage_malformed),
        cmocka_unit_test(xml_is_put_on_one_line),
        cmocka_unit_test(xml_tags_over_lines_and_attribute_values),
        cmocka_unit_test(xml_rejects_what_is_not_a_licence_document),
        cmocka_unit_test(iso8601_dates),
    };
    return cmocka_run_group_tests(tests, keys_setup, keys_teardown);
}
