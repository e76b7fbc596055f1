/* procstat: see procstat.h. */
#include "procstat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* starttime is field 22; fields after comm start at 3 (state). */
#define STARTTIME_FIELD 22

int procstat_parse(const char *text, size_t len, struct procstat *out)
{
    const char *end = text + len;
    const char *p = NULL;
    for (const char *q = text; q < end; q++)
        if (*q == ')')
            p = q; /* the last ')': comm may hold one */
    if (p == NULL)
        return -1;
    p++;
    int field = 3;
    unsigned long long ppid = 0, ticks = 0;
    char state = 0;
    while (p < end && field <= STARTTIME_FIELD) {
        if (*p != ' ')
            return -1;
        p++;
        const char *start = p;
        while (p < end && *p != ' ' && *p != '\n')
            p++;
        if (p == start)
            return -1;
        if (field == 3) {
            if (p - start != 1)
                return -1;
            state = *start;
        } else if (field == 4 || field == STARTTIME_FIELD) {
            unsigned long long v = 0;
            for (const char *d = start; d < p; d++) {
                if (*d < '0' || *d > '9' || v > (UINT64_MAX - 9) / 10)
                    return -1;
                v = v * 10 + (unsigned)(*d - '0');
            }
            if (field == 4)
                ppid = v;
            else
                ticks = v;
        }
        field++;
    }
    if (field <= STARTTIME_FIELD || ppid > 0x7fffffff)
        return -1;
    out->state = state;
    out->ppid = (pid_t)ppid;
    out->start_ticks = ticks;
    return 0;
}

int procstat_read(pid_t pid, struct procstat *out)
{
    char path[64], buf[1024];
    if (pid == 0)
        snprintf(path, sizeof path, "/proc/self/stat");
    else
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n;
    do
        n = read(fd, buf, sizeof buf);
    while (n < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (n <= 0) {
        errno = n < 0 ? saved : ENOENT;
        return -1;
    }
    if (procstat_parse(buf, (size_t)n, out) != 0) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}
