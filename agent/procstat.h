/* procstat: the few facts of /proc/PID/stat the agent needs to tell one
 * process from another over time: its parent and its start time. A pid can
 * be reused; a pid with the same start time (clock ticks after boot, the same
 * in every PID namespace) is the same process. */
#ifndef PI_PROCSTAT_H
#define PI_PROCSTAT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct procstat {
    char state;
    pid_t ppid;
    uint64_t start_ticks;
};

/* Parses the text of /proc/PID/stat ("pid (comm) S ppid ... starttime ...";
 * comm may hold spaces and parentheses). Pure. Returns 0, or -1 when the
 * text is not such a line. */
int procstat_parse(const char *text, size_t len, struct procstat *out);
/* Reads /proc/PID/stat (pid 0: this process). Returns 0, or -1 with errno
 * (ENOENT: no such process in this PID namespace). */
int procstat_read(pid_t pid, struct procstat *out);

#endif
