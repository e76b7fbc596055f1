/* licence: the licence start phase, its timers in the loop and the
 * `pi-agent licence` command. It settles what PI_LICENCE (or PI_LICENCE_URL)
 * holds, in a worker (licence_token.h for offline tokens and XML, alm.h for
 * the ALM and licence URLs), hands the result over to the dashboard in
 * /run/pi-agent and its environment, caches ALM licences on EFS, and keeps
 * the status in agent_state for health and metrics. */
#ifndef PI_LICENCE_H
#define PI_LICENCE_H

#include <stdbool.h>

#include "childenv.h"
#include "config.h"
#include "state.h"

#define EXIT_LICENCE 77
#define LICENCE_DEFAULT_RUN_DIR "/run/pi-agent"
#define LICENCE_DEFAULT_EFS_ROOT "/mnt/efs"
#define LICENCE_DEFAULT_KEY_FILE "/etc/pi-agent/licence-public-key.pem"

struct licence_config {
    char *licence;            /* PI_LICENCE: a secret, never logged */
    char *licence_url;        /* PI_LICENCE_URL (its query may hold credentials) */
    char *public_keys;        /* PEM text of the vendor's key(s), NULL when none */
    char keys_origin[300];    /* the variable or file the keys came from */
    char *alm_url;            /* PI_ALM_URL */
    char *alm_check_url;      /* PI_ALM_CHECK_URL */
    char *ca_file;            /* PI_ALM_CA_FILE */
    char *deployment_id;      /* PI_DEPLOYMENT_ID */
    char run_dir[256];        /* PI_AGENT_RUN_DIR */
    char efs_root[256];       /* PI_EFS_ROOT */
    unsigned alm_timeout_s;   /* PI_ALM_TIMEOUT_SECONDS */
    unsigned warn_days;       /* PI_LICENCE_WARN_DAYS */
    unsigned check_interval_s;   /* PI_LICENCE_CHECK_SECONDS: expiry re-evaluation */
    unsigned refresh_interval_s; /* PI_LICENCE_REFRESH_SECONDS: ALM refresh */
    bool allow_http;          /* PI_ALM_ALLOW_HTTP */
    bool required;            /* PI_AGENT_LICENCE_REQUIRED */
    bool inline_env;          /* PI_AGENT_LICENCE_INLINE */
};

/* Reads and checks the variables above (the public keys are parsed here, so a
 * bad key is a configuration error). Returns 0, or -1 with err filled. */
int licence_config_load(struct licence_config *cfg, struct config_error *err);
void licence_config_free(struct licence_config *cfg);

struct loop;

/* Start phase, before the child starts, as root. Resolves the licence in a
 * worker, writes run_dir/licence (0600, owned by run_as) and
 * run_dir/licence.json, caches an ALM licence on EFS, fills state->licence
 * and sets PI_LICENCE_FILE, PI_LICENCE_STATUS (and PI_LICENCE with
 * PI_AGENT_LICENCE_INLINE=true) in env. Returns 0 to go on, or EXIT_LICENCE
 * (77) when PI_AGENT_LICENCE_REQUIRED=true and the status is not valid,
 * expiring or unverified. run_as may be NULL. */
int licence_start(const struct licence_config *cfg, const struct run_as *run_as,
                  struct agent_state *state, struct childenv *env);

/* Inside the loop: re-evaluates expiry every PI_LICENCE_CHECK_SECONDS and
 * refreshes from the ALM every PI_LICENCE_REFRESH_SECONDS (jittered) and when
 * the licence is about to expire, when a customer key and PI_ALM_URL are
 * configured. cfg and state must outlive the loop. Returns 0 or -1. */
int licence_attach(struct loop *loop, const struct licence_config *cfg, struct agent_state *state);

/* `pi-agent licence`: prints the status JSON (the running agent's, from
 * run_dir/licence.json, else a fresh resolution) and returns 0 for valid,
 * expiring or unverified, 1 otherwise, 78 for a configuration error. */
int licence_command(void);

/* For `pi-agent check`: resolves the status in this process without writing
 * anything. Returns 0 when the status is acceptable, 1 otherwise. */
int licence_check(const struct licence_config *cfg, struct licence_state *out);

#endif
