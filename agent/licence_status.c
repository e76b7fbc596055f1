/* licence_status: see licence_status.h. */
#include "licence_status.h"

#include <stddef.h>
#include <string.h>

static const char *const names[LS_COUNT + 1] = {
    [LS_UNKNOWN] = "unknown",
    [LS_VALID] = "valid",
    [LS_EXPIRING] = "expiring",
    [LS_EXPIRED] = "expired",
    [LS_NOT_YET_VALID] = "not-yet-valid",
    [LS_BAD_SIGNATURE] = "bad-signature",
    [LS_WRONG_DEPLOYMENT] = "wrong-deployment",
    [LS_MALFORMED] = "malformed",
    [LS_REJECTED] = "rejected",
    [LS_UNREACHABLE] = "unreachable",
    [LS_UNVERIFIED] = "unverified",
    [LS_MISSING] = "missing",
    [LS_COUNT] = NULL,
};

const char *licence_status_name(enum licence_status status)
{
    if ((unsigned)status < LS_COUNT)
        return names[status];
    return names[LS_UNKNOWN];
}

int licence_status_parse(const char *word, enum licence_status *out)
{
    for (unsigned i = LS_UNKNOWN + 1; word && i < LS_COUNT; i++) {
        if (strcmp(word, names[i]) == 0) {
            *out = (enum licence_status)i;
            return 0;
        }
    }
    return -1;
}

const char *const *licence_status_words(void)
{
    return names;
}

bool licence_status_checked(enum licence_status status)
{
    return status > LS_UNKNOWN && (unsigned)status < LS_COUNT;
}

bool licence_status_acceptable(enum licence_status status)
{
    return status == LS_VALID || status == LS_EXPIRING || status == LS_UNVERIFIED;
}

bool licence_status_verified(enum licence_status status)
{
    return status == LS_VALID || status == LS_EXPIRING;
}

bool licence_blocks_readiness(enum licence_status status, bool required)
{
    return required && !licence_status_acceptable(status);
}
