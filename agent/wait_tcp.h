/* wait_tcp: the `pi-agent wait-tcp HOST PORT SECONDS` subcommand, which the
 * shipped database hook uses to wait for MariaDB (a slim image has no client
 * and maybe no bash). A command of its own: it runs in the hook's process,
 * never inside PID 1. */
#ifndef PI_WAIT_TCP_H
#define PI_WAIT_TCP_H

#include <stddef.h>

struct wait_tcp_args {
    char host[256];
    char port[6];
    unsigned seconds;
};

/* argv[0] is "wait-tcp". Connects to HOST:PORT once a second until it
 * succeeds or SECONDS (0 = one attempt) have passed. Returns 0 when
 * reachable, 1 when not in time, 64 on bad arguments. */
int wait_tcp_main(int argc, char **argv);

/* Pure: argv as for wait_tcp_main. Returns 0, or -1 with one line in err. */
int wait_tcp_parse_args(int argc, char **argv, struct wait_tcp_args *out, char *err,
                        size_t errcap);

#endif
