/* libFuzzer target over the run record and the fleet's scan record, both
 * read from EFS where any task (or anyone with write access) may have left
 * anything: each parser must accept any bytes without crashing or reading
 * out of bounds, and what it accepts must survive a format/parse round trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "efs_share.h"
#include "exit_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy so ASan sees the exact bounds. */
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);

    struct exit_record rec, back;
    if (exit_record_parse(text, size, &rec) == 0) {
        if (rec.start_ms == 0 || (rec.end_ms && !exit_reason_known(rec.reason)) ||
            (!rec.end_ms && (rec.reason[0] || rec.exit_status != -1)) || rec.exit_status > 255)
            abort();
        if (memchr(rec.task, '\0', sizeof rec.task) == NULL ||
            memchr(rec.detail, '\0', sizeof rec.detail) == NULL)
            abort();
        char buf[EXIT_RECORD_MAX];
        int n = exit_record_format(&rec, buf, sizeof buf);
        if (n > 0 && (exit_record_parse(buf, (size_t)n, &back) != 0 ||
                      back.start_ms != rec.start_ms || back.end_ms != rec.end_ms ||
                      back.exit_status != rec.exit_status || strcmp(back.reason, rec.reason) != 0 ||
                      strcmp(back.task, rec.task) != 0))
            abort();
    }

    struct efs_share_record sr, sback;
    if (efs_share_parse(text, size, &sr) == 0) {
        if (sr.nfolders < 0 || sr.nfolders > STATE_EFS_FOLDERS_MAX || sr.time_ms == 0)
            abort();
        char buf[EFS_SHARE_MAX];
        int n = efs_share_format(&sr, buf, sizeof buf);
        if (n > 0 && (efs_share_parse(buf, (size_t)n, &sback) != 0 ||
                      sback.total_bytes != sr.total_bytes || sback.nfolders != sr.nfolders))
            abort();
    }

    uint64_t kills;
    (void)exit_parse_oom_kill(text, size, &kills);
    free(text);
    return 0;
}
