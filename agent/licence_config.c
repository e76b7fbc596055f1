/* licence_config: see licence_config.h. */
#include "licence_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alm.h"
#include "efs.h"
#include "fetch.h"
#include "licence_token.h"
#include "util.h"

static int dup_str(const char *value, char **out, const char *name, struct config_error *err)
{
    *out = NULL;
    if (!value)
        return 0;
    *out = strdup(value);
    if (!*out)
        return config_fail(err, name, "out of memory");
    return 0;
}

static int check_url(const char *name, const char *value, bool allow_http, struct config_error *err)
{
    char host[256];
    int https = fetch_url_is_https(value);
    if (https < 0 || fetch_url_host(value, host, sizeof(host)) != 0)
        return config_fail(err, name, "expected an https:// URL with a host");
    if (https == 0 && !allow_http)
        return config_fail(err, name, "plain http is refused: use https, or set PI_ALM_ALLOW_HTTP=true");
    return 0;
}

char *licence_read_small_file(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = malloc(max + 1);
    long n = buf ? util_read_fd(fd, buf, max + 1) : -1;
    int saved = buf ? errno : ENOMEM;
    close(fd);
    if (n < 0) {
        free(buf);
        errno = saved;
        return NULL;
    }
    *len = (size_t)n;
    return buf;
}

static int load_public_keys(struct licence_config *cfg, struct config_error *err)
{
    const char *pem = config_env_str("PI_LICENCE_PUBLIC_KEY");
    const char *file = config_env_str("PI_LICENCE_PUBLIC_KEY_FILE");
    const char *name;
    if (pem && file)
        return config_fail(err, "PI_LICENCE_PUBLIC_KEY",
                           "set either PI_LICENCE_PUBLIC_KEY or PI_LICENCE_PUBLIC_KEY_FILE, not both");
    size_t len = 0;
    if (pem) {
        name = "PI_LICENCE_PUBLIC_KEY";
        snprintf(cfg->keys_origin, sizeof(cfg->keys_origin), "%s", name);
        if (dup_str(pem, &cfg->public_keys, name, err) != 0)
            return -1;
        len = strlen(pem);
    } else {
        const char *path = file ? file : LICENCE_DEFAULT_KEY_FILE;
        name = file ? "PI_LICENCE_PUBLIC_KEY_FILE" : path;
        snprintf(cfg->keys_origin, sizeof(cfg->keys_origin), "%s", path);
        cfg->public_keys = licence_read_small_file(path, 256 * 1024, &len);
        if (!cfg->public_keys) {
            if (!file && errno == ENOENT)
                return 0; /* no key installed: tokens cannot be verified */
            return config_fail(err, name, "cannot read %s: %s", path, strerror(errno));
        }
    }
    struct licence_keyset *keys;
    char reason[LICENCE_REASON_MAX];
    if (licence_keyset_parse(cfg->public_keys, len, cfg->keys_origin, &keys, reason,
                             sizeof(reason)) != 0)
        return config_fail(err, name, "%s", reason);
    licence_keyset_free(keys);
    return 0;
}

int licence_config_load(struct licence_config *cfg, struct config_error *err)
{
    memset(cfg, 0, sizeof(*cfg));
    unsigned long long timeout, warn, check, refresh;
    if (config_env_uint("PI_ALM_TIMEOUT_SECONDS", 60, 1, 600, &timeout, err) != 0 ||
        config_env_uint("PI_LICENCE_WARN_DAYS", 30, 0, 3650, &warn, err) != 0 ||
        config_env_uint("PI_LICENCE_CHECK_SECONDS", 3600, 1, 86400, &check, err) != 0 ||
        config_env_uint("PI_LICENCE_REFRESH_SECONDS", 86400, 1, 30 * 86400, &refresh, err) != 0 ||
        config_env_bool("PI_ALM_ALLOW_HTTP", false, &cfg->allow_http, err) != 0 ||
        config_env_bool("PI_AGENT_LICENCE_REQUIRED", false, &cfg->required, err) != 0 ||
        config_env_bool("PI_AGENT_LICENCE_INLINE", false, &cfg->inline_env, err) != 0)
        goto fail;
    cfg->alm_timeout_s = (unsigned)timeout;
    cfg->warn_days = (unsigned)warn;
    cfg->check_interval_s = (unsigned)check;
    cfg->refresh_interval_s = (unsigned)refresh;

    const char *licence = config_env_str("PI_LICENCE");
    if (licence && strlen(licence) > LICENCE_MAX_LEN) {
        config_fail(err, "PI_LICENCE", "longer than %d bytes", LICENCE_MAX_LEN);
        goto fail;
    }
    const char *url = config_env_str("PI_LICENCE_URL");
    const char *alm = config_env_str("PI_ALM_URL");
    const char *check_url_v = config_env_str("PI_ALM_CHECK_URL");
    const char *ca = config_env_str("PI_ALM_CA_FILE");
    const char *deployment = config_env_str("PI_DEPLOYMENT_ID");
    if ((url && check_url("PI_LICENCE_URL", url, cfg->allow_http, err) != 0) ||
        (alm && check_url("PI_ALM_URL", alm, cfg->allow_http, err) != 0) ||
        (check_url_v && check_url("PI_ALM_CHECK_URL", check_url_v, false, err) != 0))
        goto fail;
    if (ca && access(ca, R_OK) != 0) {
        config_fail(err, "PI_ALM_CA_FILE", "cannot read %s: %s", ca, strerror(errno));
        goto fail;
    }
    if (deployment && strlen(deployment) >= 128) {
        config_fail(err, "PI_DEPLOYMENT_ID", "longer than 127 characters");
        goto fail;
    }
    if (dup_str(licence, &cfg->licence, "PI_LICENCE", err) != 0 ||
        dup_str(url, &cfg->licence_url, "PI_LICENCE_URL", err) != 0 ||
        dup_str(alm, &cfg->alm_url, "PI_ALM_URL", err) != 0 ||
        dup_str(check_url_v, &cfg->alm_check_url, "PI_ALM_CHECK_URL", err) != 0 ||
        dup_str(ca, &cfg->ca_file, "PI_ALM_CA_FILE", err) != 0 ||
        dup_str(deployment, &cfg->deployment_id, "PI_DEPLOYMENT_ID", err) != 0)
        goto fail;
    if (config_run_dir(cfg->run_dir, sizeof(cfg->run_dir), err) != 0 ||
        efs_config_root(cfg->efs_root, sizeof(cfg->efs_root), err) != 0)
        goto fail;
    if (load_public_keys(cfg, err) != 0)
        goto fail;
    return 0;
fail:
    licence_config_free(cfg);
    return -1;
}

void licence_config_free(struct licence_config *cfg)
{
    alm_free_secret(cfg->licence);
    free(cfg->licence_url);
    free(cfg->public_keys);
    free(cfg->alm_url);
    free(cfg->alm_check_url);
    free(cfg->ca_file);
    free(cfg->deployment_id);
    cfg->licence = cfg->licence_url = cfg->public_keys = cfg->alm_url = cfg->alm_check_url =
        cfg->ca_file = cfg->deployment_id = NULL;
}

bool licence_config_refreshable(const struct licence_config *cfg)
{
    return cfg->alm_url && cfg->licence &&
           licence_classify(cfg->licence, strlen(cfg->licence)) == LICENCE_FORM_KEY;
}
