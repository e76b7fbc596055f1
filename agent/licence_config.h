/* licence_config: the licence settings. Every PI_* variable of the licence
 * area is read here, once, at start; the other licence modules get the
 * struct and never look at the environment. The vendor's public keys are
 * parsed here too, so that a bad key is a configuration error. */
#ifndef PI_LICENCE_CONFIG_H
#define PI_LICENCE_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

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
    char efs_root[PATH_MAX];  /* PI_EFS_ROOT, by the EFS module's rule (efs_config_root) */
    unsigned alm_timeout_s;   /* PI_ALM_TIMEOUT_SECONDS */
    unsigned warn_days;       /* PI_LICENCE_WARN_DAYS */
    unsigned check_interval_s;   /* PI_LICENCE_CHECK_SECONDS: expiry re-evaluation */
    unsigned refresh_interval_s; /* PI_LICENCE_REFRESH_SECONDS: ALM refresh */
    bool allow_http;          /* PI_ALM_ALLOW_HTTP */
    bool required;            /* PI_AGENT_LICENCE_REQUIRED */
    bool inline_env;          /* PI_AGENT_LICENCE_INLINE */
};

/* Reads and checks the variables above. Returns 0, or -1 with err filled
 * (naming the variable) and nothing left to free. */
int licence_config_load(struct licence_config *cfg, struct config_error *err);
/* Frees what load allocated, wiping the licence. */
void licence_config_free(struct licence_config *cfg);

/* Whether the daily ALM refresh applies: a customer key and PI_ALM_URL. */
bool licence_config_refreshable(const struct licence_config *cfg);

/* Reads a small file of the operator's or the agent's own (the key file,
 * the run directory's status file: paths on local, trusted storage, whose
 * links are followed) into a malloc'd, NUL-terminated string; NULL with
 * errno set (EFBIG when longer than max). */
char *licence_read_small_file(const char *path, size_t max, size_t *len);

#endif
