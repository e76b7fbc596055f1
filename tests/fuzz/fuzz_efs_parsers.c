/* libFuzzer target over the storage module's pure parsers: the PI_EFS_LINKS
 * table, /proc/self/mountinfo text and the seed marker. Each must accept any
 * bytes without crashing or reading out of bounds, and keep its invariants. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "efs_layout.h"
#include "efs_seed.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The parsers take C strings or (text, len): give each a private copy so
     * ASan sees the exact bounds. */
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    struct efs_links links;
    struct config_error err = { "" };
    if (efs_links_parse("PI_EFS_LINKS", text, &links, &err) == 0) {
        if (links.count < 1 || links.count > EFS_LINKS_MAX)
            abort();
        for (int i = 0; i < links.count; i++)
            if (links.link[i].path[0] != '/' || links.link[i].name[0] == '\0')
                abort();
    } else if (strncmp(err.msg, "PI_EFS_LINKS: ", 14) != 0) {
        abort(); /* every error names the variable */
    }

    char *copy = malloc(size ? size : 1);
    if (copy) {
        memcpy(copy, data, size);
        char fstype[32];
        (void)efs_mountinfo_find(copy, size, "/mnt/efs", fstype, sizeof(fstype));
        (void)efs_mountinfo_find(copy, size, "/", NULL, 0);
        (void)efs_seed_marker_matches(copy, size, "0123456789abcdef");
        free(copy);
    }
    free(text);
    return 0;
}
