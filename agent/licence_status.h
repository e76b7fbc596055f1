/* licence_status: the licence statuses, their one name table and the one
 * rule for what they mean. Every module that shows, compares or decides on a
 * licence status goes through here: the start policy (licence_start), the
 * health verdict, `pi-agent check` and `pi-agent licence`. Pure: no state,
 * no I/O. */
#ifndef PI_LICENCE_STATUS_H
#define PI_LICENCE_STATUS_H

#include <stdbool.h>

/* The statuses of the licence issue. LS_UNKNOWN (zero, so a zeroed state
 * reads as "not checked yet") is never the outcome of a check. */
enum licence_status {
    LS_UNKNOWN,
    LS_VALID,
    LS_EXPIRING,
    LS_EXPIRED,
    LS_NOT_YET_VALID,
    LS_BAD_SIGNATURE,
    LS_WRONG_DEPLOYMENT,
    LS_MALFORMED,
    LS_REJECTED,
    LS_UNREACHABLE,
    LS_UNVERIFIED,
    LS_MISSING,
    LS_COUNT
};

/* The status word ("valid", "not-yet-valid", ...); "unknown" for LS_UNKNOWN
 * and for anything out of range. */
const char *licence_status_name(enum licence_status status);
/* Parses the word of a checked status (not "unknown"); 0, or -1 when the
 * word is none of them. */
int licence_status_parse(const char *word, enum licence_status *out);
/* Every status word, in enum order, NULL-terminated (for metrics). */
const char *const *licence_status_words(void);
/* True for a status that is the outcome of a check (not LS_UNKNOWN, in range). */
bool licence_status_checked(enum licence_status status);

/* The one rule. A licence is acceptable when it is valid, expiring or
 * unverified (the dashboard checks what the agent cannot); anything else,
 * LS_UNKNOWN included, is not. */
bool licence_status_acceptable(enum licence_status status);
/* A licence the agent checked itself and found good for now: valid or
 * expiring (its signature and dates held). Only such a licence is cached on
 * EFS, used from the cache, or taken from an ALM refresh. */
bool licence_status_verified(enum licence_status status);
/* A status blocks readiness (and, at start, the dashboard) only when the
 * licence is required (PI_AGENT_LICENCE_REQUIRED=true) and not acceptable. */
bool licence_blocks_readiness(enum licence_status status, bool required);

#endif
