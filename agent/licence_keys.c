/* licence_keys: see licence_keys.h. */
#include "licence_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

#include "licence_token.h"

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

struct licence_key {
    mbedtls_pk_context pk;
    char label[128];
    char thumbprint[48];
};

struct licence_keyset {
    size_t count;
    struct licence_key keys[];
};

static const char PEM_BEGIN[] = "-----BEGIN PUBLIC KEY-----";
static const char PEM_END[] = "-----END PUBLIC KEY-----";

/* The first marker (a PEM line) in [from, end), or NULL. */
static const char *find_marker(const char *from, const char *end, const char *marker)
{
    return memmem(from, (size_t)(end - from), marker, strlen(marker));
}

/* "kid: NAME" on the last non-blank line of the text before a PEM block. */
static void find_label(const char *text, size_t len, char *label, size_t cap)
{
    label[0] = '\0';
    size_t end = len;
    while (end > 0 && is_space(text[end - 1]))
        end--;
    size_t start = end;
    while (start > 0 && text[start - 1] != '\n')
        start--;
    const char *line = text + start;
    size_t n = end - start;
    if (n > 4 && memcmp(line, "kid:", 4) == 0) {
        line += 4;
        n -= 4;
        while (n > 0 && is_space(*line)) {
            line++;
            n--;
        }
        if (n > 0 && n < cap) {
            memcpy(label, line, n);
            label[n] = '\0';
        }
    }
}

/* RFC 7638 thumbprint of an EC P-256 key, base64url of SHA-256. */
static int jwk_thumbprint(const mbedtls_ecp_keypair *ec, char *out, size_t cap)
{
    unsigned char x[32], y[32];
    char xs[48], ys[48];
    if (mbedtls_mpi_write_binary(&ec->Q.X, x, sizeof(x)) != 0 ||
        mbedtls_mpi_write_binary(&ec->Q.Y, y, sizeof(y)) != 0)
        return -1;
    b64url_encode(x, sizeof(x), xs, sizeof(xs));
    b64url_encode(y, sizeof(y), ys, sizeof(ys));
    char jwk[160];
    int n = snprintf(jwk, sizeof(jwk), "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}",
                     xs, ys);
    if (n < 0 || (size_t)n >= sizeof(jwk))
        return -1;
    unsigned char digest[32];
    if (mbedtls_sha256_ret((const unsigned char *)jwk, (size_t)n, digest, 0) != 0)
        return -1;
    b64url_encode(digest, sizeof(digest), out, cap);
    return 0;
}

/* Parses one PEM body (base64 with any whitespace, or a literal "\n" where a
 * line break was flattened by a task definition) into key. */
static int parse_key_block(const char *body, size_t len, struct licence_key *key)
{
    char *clean = malloc(len + 1);
    unsigned char *der = malloc(len + 1);
    int rc = -1;
    if (!clean || !der)
        goto out;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (body[i] == '\\' && i + 1 < len && body[i + 1] == 'n') {
            i++;
            continue;
        }
        if (!is_space(body[i]))
            clean[n++] = body[i];
    }
    size_t der_len = 0;
    if (mbedtls_base64_decode(der, len + 1, &der_len, (const unsigned char *)clean, n) != 0)
        goto out;
    if (mbedtls_pk_parse_public_key(&key->pk, der, der_len) != 0)
        goto out;
    if (mbedtls_pk_get_type(&key->pk) != MBEDTLS_PK_ECKEY)
        goto out;
    const mbedtls_ecp_keypair *ec = mbedtls_pk_ec(key->pk);
    if (ec->grp.id != MBEDTLS_ECP_DP_SECP256R1)
        goto out;
    if (jwk_thumbprint(ec, key->thumbprint, sizeof(key->thumbprint)) != 0)
        goto out;
    rc = 0;
out:
    free(clean);
    free(der);
    return rc;
}

int licence_keyset_parse(const char *pem, size_t len, const char *origin,
                         struct licence_keyset **out, char *reason, size_t cap)
{
    *out = NULL;
    size_t blocks = 0;
    for (const char *p = pem, *end = pem + len; (p = find_marker(p, end, PEM_BEGIN));
         p += sizeof(PEM_BEGIN) - 1)
        blocks++;
    if (blocks == 0) {
        licence_reason(reason, cap, "%s: no \"%s\" block found (an EC P-256 public key in PEM form)",
                   origin, PEM_BEGIN);
        return -1;
    }
    struct licence_keyset *ks = calloc(1, sizeof(*ks) + blocks * sizeof(struct licence_key));
    if (!ks) {
        licence_reason(reason, cap, "%s: out of memory", origin);
        return -1;
    }
    const char *p = pem, *end = pem + len, *prev_end = pem;
    for (size_t i = 0; i < blocks; i++) {
        struct licence_key *key = &ks->keys[i];
        mbedtls_pk_init(&key->pk);
        ks->count = i + 1;
        const char *begin = find_marker(p, end, PEM_BEGIN);
        const char *body = begin + sizeof(PEM_BEGIN) - 1;
        const char *stop = find_marker(body, end, PEM_END);
        const char *next = find_marker(body, end, PEM_BEGIN);
        if (!stop || (next && next < stop)) {
            licence_reason(reason, cap, "%s: key %zu has no \"%s\" line", origin, i + 1, PEM_END);
            licence_keyset_free(ks);
            return -1;
        }
        find_label(prev_end, (size_t)(begin - prev_end), key->label, sizeof(key->label));
        if (parse_key_block(body, (size_t)(stop - body), key) != 0) {
            licence_reason(reason, cap, "%s: key %zu is not an EC P-256 (ES256) public key", origin,
                       i + 1);
            licence_keyset_free(ks);
            return -1;
        }
        p = prev_end = stop + sizeof(PEM_END) - 1;
    }
    *out = ks;
    return 0;
}

void licence_keyset_free(struct licence_keyset *keys)
{
    if (!keys)
        return;
    for (size_t i = 0; i < keys->count; i++)
        mbedtls_pk_free(&keys->keys[i].pk);
    free(keys);
}

size_t licence_keyset_count(const struct licence_keyset *keys)
{
    return keys ? keys->count : 0;
}

const char *licence_keyset_label(const struct licence_keyset *keys, size_t i)
{
    return keys && i < keys->count ? keys->keys[i].label : NULL;
}

const char *licence_keyset_thumbprint(const struct licence_keyset *keys, size_t i)
{
    return keys && i < keys->count ? keys->keys[i].thumbprint : NULL;
}

/* ES256: the signature is R || S, 32 bytes each (RFC 7518 section 3.4). */
static bool es256_verify(const mbedtls_pk_context *pk, const unsigned char hash[32],
                         const unsigned char sig[64])
{
    mbedtls_ecp_keypair *ec = mbedtls_pk_ec(*pk);
    mbedtls_mpi r, s;
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    bool ok = mbedtls_mpi_read_binary(&r, sig, 32) == 0 &&
              mbedtls_mpi_read_binary(&s, sig + 32, 32) == 0 &&
              mbedtls_ecdsa_verify(&ec->grp, hash, 32, &ec->Q, &r, &s) == 0;
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    return ok;
}


bool licence_keyset_verify_es256(const struct licence_keyset *keys, const char *kid,
                                 const unsigned char hash[32], const unsigned char sig[64],
                                 bool *candidate)
{
    *candidate = false;
    for (size_t i = 0; keys && i < keys->count; i++) {
        const struct licence_key *key = &keys->keys[i];
        if (kid && strcmp(kid, key->label) != 0 && strcmp(kid, key->thumbprint) != 0)
            continue;
        *candidate = true;
        if (es256_verify(&key->pk, hash, sig))
            return true;
    }
    return false;
}
