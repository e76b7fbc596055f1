/* efs_config: the storage settings (PI_EFS_*, PI_DASHBOARD_HOME), each read
 * once, here. See efs.h and docs/storage.md. */
#include "efs.h"

#include <stdlib.h>
#include <string.h>

static int load_abs_path(const char *name, const char *def, char *out, size_t cap,
                         struct config_error *err)
{
    const char *v = config_env_str(name);
    if (!v)
        v = def;
    if (v[0] != '/')
        return config_fail(err, name, "must be an absolute path, got \"%.200s\"", v);
    size_t len = strlen(v);
    while (len > 1 && v[len - 1] == '/')
        len--;
    if (len >= cap)
        return config_fail(err, name, "is too long");
    memcpy(out, v, len);
    out[len] = '\0';
    return 0;
}

int efs_config_root(char *out, size_t cap, struct config_error *err)
{
    if (load_abs_path("PI_EFS_ROOT", EFS_DEFAULT_ROOT, out, cap, err) < 0)
        return -1;
    if (strcmp(out, "/") == 0)
        return config_fail(err, "PI_EFS_ROOT", "cannot be /");
    return 0;
}

int efs_config_load(struct efs_config *cfg, struct config_error *err)
{
    static const char *const modes[] = { "auto", "required", "off", NULL };
    static const char *const over[] = { "warn", "fail", NULL };
    unsigned long long v;
    int choice;

    config_clear(cfg, sizeof(*cfg)); /* about 80 KiB of paths, mostly unused */
    if (config_env_choice("PI_EFS_MODE", EFS_MODE_AUTO, modes, &choice, err) < 0)
        return -1;
    cfg->mode = (enum efs_mode)choice;
    if (efs_config_root(cfg->root, sizeof(cfg->root), err) < 0)
        return -1;
    if (config_env_bool("PI_EFS_REQUIRE_NFS", false, &cfg->require_nfs, err) < 0)
        return -1;
    if (load_abs_path("PI_DASHBOARD_HOME", DEFAULT_DASHBOARD_HOME, cfg->dashboard_home,
                      sizeof(cfg->dashboard_home), err) < 0)
        return -1;
    if (load_abs_path("PI_EFS_SEED_DIR", EFS_DEFAULT_SEED_DIR, cfg->seed_dir,
                      sizeof(cfg->seed_dir), err) < 0)
        return -1;
    /* With PI_EFS_MODE=off nothing reads the table: it is still checked, but
     * on the stack, so an idle agent does not keep a page per folder path. */
    struct efs_links scratch;
    struct efs_links *table = cfg->mode == EFS_MODE_OFF ? &scratch : &cfg->links;
    const char *links = getenv("PI_EFS_LINKS");
    if (links && *links) {
        if (efs_links_parse("PI_EFS_LINKS", links, table, err) < 0)
            return -1;
    } else if (efs_links_default(cfg->dashboard_home, table) < 0) {
        return config_fail(err, "PI_DASHBOARD_HOME", "is too long");
    }
    /* A dashboard path inside the root (or the root inside one) would have
     * the agent move an EFS folder aside and link it to itself. */
    size_t rl = strlen(cfg->root);
    for (int i = 0; i < table->count; i++) {
        const char *path = table->link[i].path;
        size_t pl = strlen(path);
        const char *var = links && *links ? "PI_EFS_LINKS" : "PI_DASHBOARD_HOME";
        if ((pl >= rl && strncmp(path, cfg->root, rl) == 0 && (path[rl] == '/' || path[rl] == '\0')) ||
            (rl > pl && strncmp(cfg->root, path, pl) == 0 && cfg->root[pl] == '/'))
            return config_fail(err, var, "dashboard path %s overlaps PI_EFS_ROOT=%s", path,
                               cfg->root);
    }
    if (config_env_uint("PI_EFS_BUDGET_BYTES", 1073741824ull, 1, UINT64_MAX, &v, err) < 0)
        return -1;
    cfg->budget_bytes = v;
    if (config_env_uint("PI_EFS_WARN_PERCENT", 80, 1, 100, &v, err) < 0)
        return -1;
    cfg->warn_percent = (unsigned)v;
    if (config_env_choice("PI_EFS_OVER_BUDGET", 0, over, &choice, err) < 0)
        return -1;
    cfg->over_budget_fail = choice == 1;
    if (config_env_uint("PI_EFS_SCAN_INTERVAL_SECONDS", 600, 0, 7 * 86400, &v, err) < 0)
        return -1;
    if (v > 0 && v < 10)
        return config_fail(err, "PI_EFS_SCAN_INTERVAL_SECONDS",
                           "must be 0 (first scan only) or at least 10, got %llu", v);
    cfg->scan_interval_s = (unsigned)v;
    if (config_env_uint("PI_EFS_SCAN_TIMEOUT_SECONDS", 1800, 1, 86400, &v, err) < 0)
        return -1;
    cfg->scan_timeout_s = (unsigned)v;
    if (config_env_uint("PI_EFS_START_TIMEOUT_SECONDS", 600, 1, 86400, &v, err) < 0)
        return -1;
    cfg->start_timeout_s = (unsigned)v;
    return housekeeping_config_load(&cfg->housekeeping, cfg->dashboard_home, err);
}
