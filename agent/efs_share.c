/* efs_share: see efs_share.h. */
#include "efs_share.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC "pi-agent-scan/1"

int efs_share_format(const struct efs_share_record *r, char *buf, size_t cap)
{
    size_t n = 0;
    int w = snprintf(buf, cap, MAGIC "\nwriter %016llx\ntime_ms %llu\ntotal_bytes %llu\nfiles %llu\n"
                               "errors %llu\nscan_seconds %.6f\n",
                     (unsigned long long)r->writer, (unsigned long long)r->time_ms, (unsigned long long)r->total_bytes,
                     (unsigned long long)r->files, (unsigned long long)r->errors, r->scan_seconds);
    if (w < 0 || (size_t)w >= cap)
        return -1;
    n = (size_t)w;
    for (int i = 0; i < r->nfolders && i < STATE_EFS_FOLDERS_MAX; i++) {
        w = snprintf(buf + n, cap - n, "folder %.*s %llu %llu\n",
                     (int)strnlen(r->folders[i].name, sizeof r->folders[i].name),
                     r->folders[i].name, (unsigned long long)r->folders[i].bytes,
                     (unsigned long long)r->folders[i].files);
        if (w < 0 || (size_t)w >= cap - n)
            return -1;
        n += (size_t)w;
    }
    if (cap - n < 5)
        return -1;
    memcpy(buf + n, "end\n", 5);
    return (int)n + 4;
}

/* A whole number of at most 19 digits, the whole of [p, e). */
static int parse_u64(const char *p, const char *e, uint64_t *out)
{
    uint64_t v = 0;
    if (p == e || e - p > 19)
        return -1;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return 0;
}

static int parse_hex64(const char *p, const char *e, uint64_t *out)
{
    uint64_t v = 0;
    if (e - p != 16)
        return -1;
    for (; p < e; p++) {
        int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

static int parse_seconds(const char *p, const char *e, double *out)
{
    char tmp[32];
    char *end;
    if (p == e || (size_t)(e - p) >= sizeof tmp)
        return -1;
    memcpy(tmp, p, (size_t)(e - p));
    tmp[e - p] = '\0';
    if (tmp[0] < '0' || tmp[0] > '9')
        return -1;
    double d = strtod(tmp, &end);
    if (*end != '\0' || !(d >= 0.0 && d < 1e9))
        return -1;
    *out = d;
    return 0;
}

static bool name_ok(const char *p, const char *e)
{
    if (p == e || e - p > EFS_NAME_MAX)
        return false;
    for (; p < e; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            return false;
    return true;
}

int efs_share_parse(const char *text, size_t len, struct efs_share_record *out)
{
    enum { T = 1, B = 2, F = 4, E = 8, S = 16, WR = 32, ALL = 63 };
    unsigned seen = 0;
    bool complete = false;
    const char *p = text, *end = text + len;

    memset(out, 0, sizeof *out);
    if (len > EFS_SHARE_MAX || len < sizeof MAGIC || memcmp(text, MAGIC "\n", sizeof MAGIC) != 0)
        return -1;
    p += sizeof MAGIC;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL || complete)
            return -1; /* a record ends with "end" and a line feed: a cut one is not used */
        if (nl - p == 3 && memcmp(p, "end", 3) == 0) {
            complete = true;
            p = nl + 1;
            continue;
        }
        const char *sp = memchr(p, ' ', (size_t)(nl - p));
        if (sp == NULL)
            return -1;
        size_t klen = (size_t)(sp - p);
        const char *v = sp + 1;
#define KEY(k) (klen == sizeof(k) - 1 && memcmp(p, k, klen) == 0)
        int rc = 0;
        if (KEY("writer"))
            rc = parse_hex64(v, nl, &out->writer), seen |= WR;
        else if (KEY("time_ms"))
            rc = parse_u64(v, nl, &out->time_ms), seen |= T;
        else if (KEY("total_bytes"))
            rc = parse_u64(v, nl, &out->total_bytes), seen |= B;
        else if (KEY("files"))
            rc = parse_u64(v, nl, &out->files), seen |= F;
        else if (KEY("errors"))
            rc = parse_u64(v, nl, &out->errors), seen |= E;
        else if (KEY("scan_seconds"))
            rc = parse_seconds(v, nl, &out->scan_seconds), seen |= S;
        else if (KEY("folder")) {
            if (out->nfolders >= STATE_EFS_FOLDERS_MAX)
                return -1;
            const char *s1 = memchr(v, ' ', (size_t)(nl - v));
            const char *s2 = s1 ? memchr(s1 + 1, ' ', (size_t)(nl - s1 - 1)) : NULL;
            struct efs_folder_usage *f = &out->folders[out->nfolders];
            if (s2 == NULL || !name_ok(v, s1) || parse_u64(s1 + 1, s2, &f->bytes) != 0 ||
                parse_u64(s2 + 1, nl, &f->files) != 0)
                return -1;
            memcpy(f->name, v, (size_t)(s1 - v));
            f->name[s1 - v] = '\0';
            out->nfolders++;
        } else {
            rc = 0; /* an unknown key from a later version: ignored */
        }
#undef KEY
        if (rc != 0)
            return -1;
        p = nl + 1;
    }
    return complete && seen == ALL && out->time_ms > 0 ? 0 : -1;
}

bool efs_share_usable(const struct efs_share_record *r, uint64_t self,
                      const char (*names)[EFS_NAME_MAX + 1], int n, uint64_t now_ms,
                      uint64_t interval_ms)
{
    if (interval_ms == 0 || r->writer == self || r->time_ms > now_ms || now_ms - r->time_ms >= interval_ms ||
        r->nfolders != n)
        return false;
    for (int i = 0; i < n; i++)
        if (strncmp(r->folders[i].name, names[i], sizeof r->folders[i].name) != 0)
            return false;
    return true;
}
