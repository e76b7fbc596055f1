/* Test helpers for the licence tests: throwaway EC keys made with mbedTLS at
 * test time, and ES256 tokens signed with them. Header-only so that each
 * test program includes what it uses. */
#ifndef PI_LICENCE_TEST_KEYS_H
#define PI_LICENCE_TEST_KEYS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

#include "licence_token.h"

struct test_key {
    mbedtls_pk_context pk;
    char pem[512];
};

static mbedtls_entropy_context test_entropy;
static mbedtls_ctr_drbg_context test_drbg;
static int test_rng_ready;

static void test_rng_init(void)
{
    if (test_rng_ready)
        return;
    mbedtls_entropy_init(&test_entropy);
    mbedtls_ctr_drbg_init(&test_drbg);
    if (mbedtls_ctr_drbg_seed(&test_drbg, mbedtls_entropy_func, &test_entropy,
                              (const unsigned char *)"pi-agent-test", 13) != 0)
        abort();
    test_rng_ready = 1;
}

static void test_rng_free(void)
{
    if (!test_rng_ready)
        return;
    mbedtls_ctr_drbg_free(&test_drbg);
    mbedtls_entropy_free(&test_entropy);
    test_rng_ready = 0;
}

/* A fresh key on curve (MBEDTLS_ECP_DP_SECP256R1 for ES256). */
static void test_key_new(struct test_key *k, mbedtls_ecp_group_id curve)
{
    test_rng_init();
    mbedtls_pk_init(&k->pk);
    if (mbedtls_pk_setup(&k->pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0 ||
        mbedtls_ecp_gen_key(curve, mbedtls_pk_ec(k->pk), mbedtls_ctr_drbg_random, &test_drbg) != 0 ||
        mbedtls_pk_write_pubkey_pem(&k->pk, (unsigned char *)k->pem, sizeof(k->pem)) != 0)
        abort();
}

static void test_key_free(struct test_key *k)
{
    mbedtls_pk_free(&k->pk);
}

/* header_json.payload_json signed with k (ES256); malloc'd. */
static char *test_token(struct test_key *k, const char *header_json, const char *payload_json)
{
    size_t hl = strlen(header_json), pl = strlen(payload_json);
    size_t cap = (hl + pl) * 2 + 200;
    char *tok = malloc(cap);
    if (!tok)
        abort();
    size_t n = b64url_encode((const unsigned char *)header_json, hl, tok, cap);
    tok[n++] = '.';
    n += b64url_encode((const unsigned char *)payload_json, pl, tok + n, cap - n);
    unsigned char hash[32], sig[64];
    if (mbedtls_sha256_ret((const unsigned char *)tok, n, hash, 0) != 0)
        abort();
    mbedtls_ecp_keypair *ec = mbedtls_pk_ec(k->pk);
    mbedtls_mpi r, s;
    mbedtls_mpi_init(&r);
    mbedtls_mpi_init(&s);
    if (mbedtls_ecdsa_sign(&ec->grp, &r, &s, &ec->d, hash, 32, mbedtls_ctr_drbg_random, &test_drbg) != 0 ||
        mbedtls_mpi_write_binary(&r, sig, 32) != 0 || mbedtls_mpi_write_binary(&s, sig + 32, 32) != 0)
        abort();
    mbedtls_mpi_free(&r);
    mbedtls_mpi_free(&s);
    tok[n++] = '.';
    b64url_encode(sig, sizeof(sig), tok + n, cap - n);
    return tok;
}

/* Claims JSON valid from nbf to exp. */
static void test_claims(char *out, size_t cap, long long nbf, long long exp, const char *deployment)
{
    if (deployment)
        snprintf(out, cap,
                 "{\"sub\":\"acme-42\",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld,\"users\":25,"
                 "\"modules\":[\"dashboard\",\"reports\"],\"deployment\":\"%s\"}",
                 nbf, nbf, exp, deployment);
    else
        snprintf(out, cap,
                 "{\"sub\":\"acme-42\",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld,\"users\":25,"
                 "\"modules\":[\"dashboard\",\"reports\"]}",
                 nbf, nbf, exp);
}

#endif
