/* efs_status: see efs_status.h. */
#include "efs_status.h"

#include <stddef.h>

static const char *const names[EFS_STATUS_COUNT] = {
    [EFS_STATUS_UNKNOWN] = "unknown", [EFS_STATUS_OK] = "ok",
    [EFS_STATUS_WARN] = "warn",       [EFS_STATUS_OVER] = "over",
    [EFS_STATUS_EPHEMERAL] = "ephemeral", [EFS_STATUS_FAILED] = "failed",
    [EFS_STATUS_OFF] = "off",         [EFS_STATUS_PENDING] = "pending",
};

const char *efs_status_name(enum efs_status s)
{
    return (unsigned)s < EFS_STATUS_COUNT ? names[s] : names[EFS_STATUS_UNKNOWN];
}

const char *const *efs_status_words(void)
{
    /* The table above in /metrics order: "unknown" last. */
    static const char *words[EFS_STATUS_COUNT + 1];
    if (!words[0]) {
        for (int i = 1; i < EFS_STATUS_COUNT; i++)
            words[i - 1] = names[i];
        words[EFS_STATUS_COUNT - 1] = names[EFS_STATUS_UNKNOWN];
    }
    return words;
}

bool efs_status_blocks_readiness(enum efs_status s, bool over_budget_fails)
{
    return s == EFS_STATUS_FAILED || (s == EFS_STATUS_OVER && over_budget_fails);
}

bool efs_status_healthy(enum efs_status s)
{
    return s != EFS_STATUS_FAILED && s != EFS_STATUS_OVER;
}

enum efs_status efs_budget_status(uint64_t total, uint64_t budget, unsigned warn_percent)
{
    if (total > budget)
        return EFS_STATUS_OVER;
    /* total * 100 >= budget * warn, computed without overflow */
    long double ratio = (long double)total * 100.0L / (long double)budget;
    return ratio >= (long double)warn_percent ? EFS_STATUS_WARN : EFS_STATUS_OK;
}
