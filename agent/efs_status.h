/* efs_status: the storage status, its one name table and the one rule for
 * "storage blocks readiness". A leaf: state.h holds the enum, the health
 * verdict, `pi-agent check` and the storage module ask these functions. */
#ifndef PI_EFS_STATUS_H
#define PI_EFS_STATUS_H

#include <stdbool.h>
#include <stdint.h>

enum efs_status {
    EFS_STATUS_UNKNOWN,   /* before the start phase said anything (the zero value) */
    EFS_STATUS_OK,        /* measured, within the budget */
    EFS_STATUS_WARN,      /* at or above PI_EFS_WARN_PERCENT of the budget */
    EFS_STATUS_OVER,      /* over PI_EFS_BUDGET_BYTES */
    EFS_STATUS_EPHEMERAL, /* nothing persistent: content goes with the container */
    EFS_STATUS_FAILED,    /* storage cannot be used */
    EFS_STATUS_OFF,       /* PI_EFS_MODE=off */
    EFS_STATUS_PENDING,   /* prepared, not measured yet */
    EFS_STATUS_COUNT
};

/* The word for a status ("ok", "over", ...; "unknown" for anything else). */
const char *efs_status_name(enum efs_status s);
/* Every word, NULL-terminated, in the order /metrics lists them. */
const char *const *efs_status_words(void);

/* The one rule: storage blocks readiness when it failed, or is over budget
 * and PI_EFS_OVER_BUDGET=fail. */
bool efs_status_blocks_readiness(enum efs_status s, bool over_budget_fails);
/* Storage is healthy (neither failed nor over budget), whatever the policy. */
bool efs_status_healthy(enum efs_status s);

/* Pure: OK, WARN or OVER for a total against the budget (warn_percent of
 * budget and above is WARN; above the budget is OVER). */
enum efs_status efs_budget_status(uint64_t total, uint64_t budget, unsigned warn_percent);

#endif
