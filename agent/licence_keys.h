/* licence_keys: the vendor's public keys and the ES256 check against them
 * (mbedTLS). Pure: bytes in, result out; nothing here logs or reads the
 * environment. Reasons name the origin (variable or file), never a key. */
#ifndef PI_LICENCE_KEYS_H
#define PI_LICENCE_KEYS_H

#include <stdbool.h>
#include <stddef.h>

/* The vendor's public keys: PEM "PUBLIC KEY" blocks (EC P-256). A block may
 * be preceded by a line "kid: NAME"; every key also answers to its RFC 7638
 * JWK thumbprint. */
struct licence_keyset;
/* origin names the variable or file in reasons. Returns 0, or -1 with a reason. */
int licence_keyset_parse(const char *pem, size_t len, const char *origin,
                         struct licence_keyset **out, char *reason, size_t cap);
void licence_keyset_free(struct licence_keyset *keys);
size_t licence_keyset_count(const struct licence_keyset *keys);
/* The key ids of key i (label may be ""), for documentation and tests. */
const char *licence_keyset_label(const struct licence_keyset *keys, size_t i);
const char *licence_keyset_thumbprint(const struct licence_keyset *keys, size_t i);

/* Whether the ES256 signature sig (R || S) over the SHA-256 hash verifies
 * with a key of keys (NULL: none) answering to kid (its label or
 * thumbprint; NULL: any key). *candidate tells whether any key was tried,
 * so that an unknown kid can be told from a bad signature. */
bool licence_keyset_verify_es256(const struct licence_keyset *keys, const char *kid,
                                 const unsigned char hash[32], const unsigned char sig[64],
                                 bool *candidate);

#endif
