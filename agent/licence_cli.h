/* licence_cli: the licence as the commands see it, in a process of their
 * own (never PID 1): `pi-agent licence` and the licence line of
 * `pi-agent check`. Both resolve in-process and write nothing (no cache, no
 * hand-over); log lines go to stderr, so stdout holds only the answer. */
#ifndef PI_LICENCE_CLI_H
#define PI_LICENCE_CLI_H

#include "licence_config.h"
#include "state.h"

/* `pi-agent licence`: prints the status JSON (the running agent's, from
 * run_dir/licence.json, else a fresh resolution) and returns 0 for an
 * acceptable status (licence_status_acceptable), 1 otherwise, 78 for a
 * configuration error. */
int licence_command(void);

/* For `pi-agent check`: resolves the status in this process without writing
 * anything into out. Returns 0 when the status is acceptable, 1 otherwise. */
int licence_check(const struct licence_config *cfg, struct licence_state *out);

#endif
