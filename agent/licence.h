/* licence: the licence area's public face, for main and `pi-agent check`.
 * One concern per module:
 *   licence_status    the statuses, their names, the acceptability rule
 *   licence_config    every PI_* licence variable, read once
 *   licence_token     pure parsing and checks of tokens, keys and XML
 *   alm               the ALM callback and licence URLs (over fetch)
 *   licence_resolve   what the licence comes to and which status follows
 *   licence_cache     the ALM licence cached on EFS (through fsafe)
 *   licence_handover  the run-dir files and the child's variables
 *   licence_service   PID 1's worker, wire format, state and loop timers
 *   licence_cli       `pi-agent licence` and the `check` line */
#ifndef PI_LICENCE_H
#define PI_LICENCE_H

#include "licence_cli.h"
#include "licence_config.h"
#include "licence_service.h"
#include "licence_status.h"

#endif
