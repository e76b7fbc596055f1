/* licence: start phase, loop timers and `pi-agent licence` (see licence.h). */
#include "licence.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "alm.h"
#include "efs_seed.h"
#include "fetch.h"
#include "fsafe.h"
#include "licence_token.h"
#include "log.h"
#include "loop.h"
#include "procstat.h"
#include "worker.h"

#define LICENCE_FILE_NAME "licence"
#define STATUS_FILE_NAME "licence.json"
#define CACHE_FILE_NAME "licence"
/* A refresh while the licence is about to expire is tried at most this often. */
#define EXPIRING_REFRESH_MIN_MS (6ull * 3600 * 1000)

/* What resolving PI_LICENCE came to. */
struct resolution {
    enum licence_status status;
    struct licence_state st;
    bool have_claims;              /* claims of a token whose signature held */
    struct licence_claims claims;
    char *licence;                 /* what the dashboard gets, when acceptable */
    size_t len;
};

static void resolution_free(struct resolution *r)
{
    if (r->licence) {
        explicit_bzero(r->licence, r->len);
        free(r->licence);
    }
    r->licence = NULL;
    r->len = 0;
}

static void set_status(struct resolution *r, enum licence_status status, const char *source,
                       const char *reason)
{
    r->status = status;
    snprintf(r->st.status, sizeof(r->st.status), "%s", licence_status_name(status));
    snprintf(r->st.source, sizeof(r->st.source), "%s", source);
    snprintf(r->st.reason, sizeof(r->st.reason), "%s", reason);
}

/* ---- configuration ------------------------------------------------------ */

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

/* Reads a small file from fd, which it closes; NULL with errno set on failure. */
static char *read_small_fd(int fd, size_t max, size_t *len)
{
    char *buf = malloc(max + 1);
    size_t n = 0;
    if (!buf) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, max + 1 - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int saved = errno;
            explicit_bzero(buf, n); /* a cached licence: wiped before freeing */
            free(buf);
            close(fd);
            errno = saved;
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > max) {
            explicit_bzero(buf, n);
            free(buf);
            close(fd);
            errno = EFBIG;
            return NULL;
        }
    }
    close(fd);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Reads a small file; NULL with errno set on failure. */
static char *read_small_file(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    return read_small_fd(fd, max, len);
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
        cfg->public_keys = read_small_file(path, 256 * 1024, &len);
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

static int copy_path(const char *name, const char *value, const char *def, char *out, size_t cap,
                     struct config_error *err)
{
    const char *v = value ? value : def;
    if (v[0] != '/')
        return config_fail(err, name, "expected an absolute path");
    if (strlen(v) >= cap - 32)
        return config_fail(err, name, "path is too long");
    snprintf(out, cap, "%s", v);
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
    if (copy_path("PI_AGENT_RUN_DIR", config_env_str("PI_AGENT_RUN_DIR"), LICENCE_DEFAULT_RUN_DIR,
                  cfg->run_dir, sizeof(cfg->run_dir), err) != 0 ||
        copy_path("PI_EFS_ROOT", config_env_str("PI_EFS_ROOT"), LICENCE_DEFAULT_EFS_ROOT,
                  cfg->efs_root, sizeof(cfg->efs_root), err) != 0)
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

/* ---- files -------------------------------------------------------------- */

/* Writes dir/name through a temporary file and rename, so that a reader
 * sees the old or the new content, never half of one; durable adds the
 * fsyncs that make it survive a crash of the machine. */
static int write_replace(const char *dir, const char *name, const void *data, size_t len,
                         mode_t mode, const struct run_as *owner, bool durable, char *error,
                         size_t cap)
{
    char path[512], tmp[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    /* A random part and O_EXCL: an earlier run's leftover (or a file linked
     * there) is never truncated. (The EFS cache goes through fsafe.) */
    int fd = -1;
    for (int attempt = 0; attempt < 8 && fd < 0; attempt++) {
        uint64_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
            rnd = ((uint64_t)time(NULL) << 20) ^ ((uint64_t)getpid() << 8) ^ (uint64_t)attempt;
        snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.%ld.%016llx", dir, name, (long)getpid(),
                 (unsigned long long)rnd);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        snprintf(error, cap, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    const char *step = NULL;
    if (fchmod(fd, mode) != 0)
        step = "chmod";
    else if (owner && owner->set && fchown(fd, owner->uid, owner->gid) != 0)
        step = "chown";
    else if (worker_write_all(fd, data, len) != 0)
        step = "write";
    else if (durable && fsync(fd) != 0)
        step = "fsync";
    int saved = errno;
    if (close(fd) != 0 && !step) {
        step = "close";
        saved = errno;
    }
    if (!step && rename(tmp, path) != 0) {
        step = "rename";
        saved = errno;
    }
    if (step) {
        unlink(tmp);
        snprintf(error, cap, "cannot write %s (%s): %s", path, step, strerror(saved));
        return -1;
    }
    int dfd = durable ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dfd >= 0) {
        (void)fsync(dfd); /* best effort: the rename is what matters */
        close(dfd);
    }
    return 0;
}

/* The hand-over in the run directory describes this run only and is written
 * again at every start: atomic, but not worth two fsyncs on the start path. */
static int write_handover_file(const struct licence_config *cfg, const char *name,
                               const void *data, size_t len, mode_t mode,
                               const struct run_as *owner, char *error, size_t cap)
{
    return write_replace(cfg->run_dir, name, data, len, mode, owner, false, error, cap);
}

static int ensure_dir(const char *path, mode_t mode)
{
    if (mkdir(path, mode) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
        errno = ENOTDIR;
    }
    return -1;
}

/* ---- EFS cache (worker only: NFS may stall) ----------------------------- */

/* The cache lives in ROOT/.pi-agent, the agent's own folder (root's, mode
 * 0700, not a link), which the storage module alone creates and opens
 * (efs_agent_dir_open, efs_agent_dir_read). The EFS root is shared with the
 * dashboard's user: every step goes through descriptors, nothing planted
 * there is followed, and a folder that is not the agent's own is moved
 * aside (store) or not read (load). */
static int cache_root_open(const struct licence_config *cfg)
{
    int fd = fsafe_open_dir_trusted(cfg->efs_root, false);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode))) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* A temporary of the cache older than this was left by a writer that was
 * killed: the write itself takes milliseconds. */
#define CACHE_TMP_STALE_S 3600

/* Removes temporaries that killed writers (of any task) left in the cache
 * folder: each holds a copy of a licence. Only names of our own pattern,
 * only regular files, only old ones. */
static void cache_remove_stale_temps(int dirfd, const char *dir)
{
    static const char prefix[] = "." CACHE_FILE_NAME ".tmp.";
    int dfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0)
        return;
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return;
    }
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, sizeof(prefix) - 1) != 0)
            continue;
        struct stat st;
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            now - st.st_mtime < CACHE_TMP_STALE_S)
            continue;
        if (unlinkat(dfd, e->d_name, 0) != 0 && errno != ENOENT)
            log_warn("cannot remove a stale temporary of the licence cache",
                     LF_STR("path", dir), LF_STR("name", e->d_name),
                     LF_STR("error", strerror(errno)));
    }
    closedir(d); /* closes dfd */
}

static void cache_store(const struct licence_config *cfg, const char *token, size_t len)
{
    int rootfd = cache_root_open(cfg);
    if (rootfd < 0) {
        log_debug("licence cache skipped: the EFS root is not a directory",
                  LF_STR("efs_root", cfg->efs_root));
        return;
    }
    char dir[512], msg[700], moved[400];
    snprintf(dir, sizeof(dir), "%s/%s", cfg->efs_root, EFS_AGENT_DIR);
    int dfd = efs_agent_dir_open(rootfd, cfg->efs_root, moved, sizeof(moved), msg, sizeof(msg));
    close(rootfd);
    if (dfd < 0) {
        log_warn("cannot use the licence cache folder", LF_STR("path", dir),
                 LF_STR("error", msg));
        return;
    }
    if (msg[0])
        log_warn("the licence cache folder is not root's", LF_STR("path", dir),
                 LF_STR("why", msg));
    if (moved[0])
        log_warn("the licence cache folder was not the agent's own (root's, mode 0700, not a "
                 "link): moved aside, nothing in it was used",
                 LF_STR("path", dir), LF_STR("moved_to", moved));
    cache_remove_stale_temps(dfd, dir);
    const char *step = NULL;
    if (fsafe_write_replace(dfd, CACHE_FILE_NAME, token, len, 0600, (uid_t)-1, (gid_t)-1,
                            &step) != 0) {
        log_warn("cannot cache the licence on EFS", LF_STR("path", dir),
                 LF_STR("step", step ? step : "?"), LF_STR("error", strerror(errno)));
        close(dfd);
        return;
    }
    close(dfd);
    log_info("licence cached on EFS", LF_STR("path", dir));
}

static char *cache_load(const struct licence_config *cfg, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s/%s", cfg->efs_root, EFS_AGENT_DIR, CACHE_FILE_NAME);
    int rootfd = cache_root_open(cfg);
    if (rootfd < 0)
        return NULL;
    uid_t dir_uid; /* the agent's, or the uid its files get (checked by efs_agent_dir_read) */
    int dfd = efs_agent_dir_read(rootfd, &dir_uid);
    int saved = errno;
    close(rootfd);
    if (dfd < 0) {
        if (saved != ENOENT)
            log_warn("the cached licence is not read: its folder is not the agent's own (root's, "
                     "mode 0700, not a link)", LF_STR("path", path));
        return NULL;
    }
    int fd = openat(dfd, CACHE_FILE_NAME, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    saved = errno;
    close(dfd);
    if (fd < 0) {
        if (saved != ENOENT)
            log_warn("cannot read the cached licence", LF_STR("path", path),
                     LF_STR("error", strerror(saved)));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
        !(st.st_uid == geteuid() || st.st_uid == dir_uid)) {
        log_warn("the cached licence is not read: not a file of the agent's with one link",
                 LF_STR("path", path));
        close(fd);
        return NULL;
    }
    char *data = read_small_fd(fd, LICENCE_MAX_LEN, len);
    if (!data)
        log_warn("cannot read the cached licence", LF_STR("path", path),
                 LF_STR("error", strerror(errno)));
    return data;
}

/* ---- resolution (runs in a worker, or in `pi-agent licence`/`check`) ----- */

struct resolve_opts {
    const struct licence_config *cfg;
    bool write_cache;  /* false for `pi-agent licence` and `check` */
    bool refresh_only; /* the daily refresh: ALM only, no fallback */
};

static void fill_claims(struct resolution *r)
{
    struct licence_state *st = &r->st;
    snprintf(st->subject, sizeof(st->subject), "%s", r->claims.sub);
    st->users = r->claims.users;
    st->not_before = r->claims.has_nbf ? r->claims.nbf : 0;
    st->expires = r->claims.exp;
}

/* Checks a token (form 1) from source and settles the resolution. */
static void resolve_token(const struct licence_config *cfg, const struct licence_keyset *keys,
                          const char *text, size_t len, const char *source, struct resolution *r)
{
    char *token = malloc(len + 1);
    if (!token) {
        set_status(r, LS_MALFORMED, source, "out of memory checking the licence");
        return;
    }
    size_t n = licence_strip_whitespace(text, len, token);
    char reason[LICENCE_REASON_MAX];
    enum licence_status st = licence_token_verify(token, n, keys, &r->claims, reason, sizeof(reason));
    if (st == LS_VALID) {
        long days = 0;
        st = licence_evaluate(&r->claims, (int64_t)time(NULL), cfg->warn_days, cfg->deployment_id,
                              &days, reason, sizeof(reason));
        r->have_claims = true;
        r->st.has_days_left = true;
        r->st.days_left = days;
        fill_claims(r);
    }
    set_status(r, st, source, reason);
    if (licence_status_acceptable(st)) {
        r->licence = token;
        r->len = n;
    } else {
        explicit_bzero(token, n);
        free(token);
    }
}

static void resolve_xml(const char *text, size_t len, const char *source, struct resolution *r)
{
    char *xml = malloc(len + 1);
    if (!xml) {
        set_status(r, LS_MALFORMED, source, "out of memory normalising the licence");
        return;
    }
    size_t n;
    char reason[LICENCE_REASON_MAX];
    if (licence_xml_normalise(text, len, xml, &n, reason, sizeof(reason)) != 0) {
        set_status(r, LS_MALFORMED, source, reason);
        explicit_bzero(xml, len + 1);
        free(xml);
        return;
    }
    set_status(r, LS_UNVERIFIED, source,
               "XML licence put on one line; pi-agent cannot check the vendor's XML signature, the "
               "dashboard does");
    r->licence = xml;
    r->len = n;
}

/* Something shaped like an offline licence but not a whole one: a cut or
 * damaged paste. It is never a customer key, so it is never passed on. */
static void resolve_broken_token(const char *what, const char *why, const char *source,
                                 struct resolution *r)
{
    char reason[STATE_REASON_MAX];
    snprintf(reason, sizeof(reason), "%s looks like an offline licence but is incomplete: %.160s",
             what, why);
    set_status(r, LS_MALFORMED, source, reason);
}

/* A document from a licence URL or the ALM: a token or an XML licence. */
static void resolve_document(const struct licence_config *cfg, const struct licence_keyset *keys,
                             const char *text, size_t len, const char *source, bool token_only,
                             struct resolution *r)
{
    char why[LICENCE_REASON_MAX];
    enum licence_form form = licence_classify_reason(text, len, why, sizeof(why));
    if (form == LICENCE_FORM_TOKEN)
        resolve_token(cfg, keys, text, len, source, r);
    else if (form == LICENCE_FORM_XML && !token_only)
        resolve_xml(text, len, source, r);
    else if (form == LICENCE_FORM_BROKEN_TOKEN)
        resolve_broken_token(token_only ? "the licence from the ALM" : "the licence at PI_LICENCE_URL",
                             why, source, r);
    else
        set_status(r, LS_MALFORMED, source,
                   token_only ? "the ALM handed over something that is not a licence token"
                              : "PI_LICENCE_URL holds neither a licence token nor an XML licence");
}

static struct alm_settings alm_settings(const struct licence_config *cfg)
{
    return (struct alm_settings){
        .ca_file = cfg->ca_file,
        .allow_http = cfg->allow_http,
        .timeout_s = cfg->alm_timeout_s,
        .deployment_id = cfg->deployment_id,
    };
}

/* Form 2a: the customer key exchanged with the ALM, the EFS cache when the
 * ALM cannot be reached. */
static void resolve_with_alm(const struct resolve_opts *o, const struct licence_keyset *keys,
                             struct resolution *r)
{
    const struct licence_config *cfg = o->cfg;
    struct alm_settings s = alm_settings(cfg);
    struct alm_result res;
    enum alm_outcome outcome = alm_request_licence(&s, cfg->alm_url, cfg->licence, &res);
    if (outcome == ALM_OK) {
        resolve_document(cfg, keys, res.licence, res.len, "alm", true, r);
        alm_result_free(&res);
        if (o->write_cache && (r->status == LS_VALID || r->status == LS_EXPIRING))
            cache_store(cfg, r->licence, r->len);
        return;
    }
    alm_result_free(&res);
    if (outcome == ALM_REJECTED) {
        char reason[STATE_REASON_MAX];
        snprintf(reason, sizeof(reason), "%.200s: the customer key in PI_LICENCE was rejected",
                 res.reason);
        set_status(r, LS_REJECTED, "alm", reason);
        return; /* a rejected key never falls back to the cache */
    }
    set_status(r, outcome == ALM_UNREACHABLE ? LS_UNREACHABLE : LS_MALFORMED, "alm", res.reason);
    if (o->refresh_only)
        return;
    size_t len;
    char *cached = cache_load(cfg, &len);
    if (!cached)
        return;
    struct resolution from_cache = { 0 };
    resolve_token(cfg, keys, cached, len, "cache", &from_cache);
    explicit_bzero(cached, len);
    free(cached);
    if (from_cache.status != LS_VALID && from_cache.status != LS_EXPIRING) {
        log_warn("the cached licence cannot be used", LF_STR("status", from_cache.st.status),
                 LF_STR("reason", from_cache.st.reason));
        resolution_free(&from_cache);
        return;
    }
    log_warn("the ALM cannot be reached: using the licence cached on EFS",
             LF_STR("alm_error", res.reason), LF_STR("cached_status", from_cache.st.status));
    char reason[STATE_REASON_MAX];
    snprintf(reason, sizeof(reason), "%.120s (cached; the ALM could not be reached)",
             from_cache.st.reason);
    snprintf(from_cache.st.reason, sizeof(from_cache.st.reason), "%s", reason);
    *r = from_cache;
}

/* Form 2b: the dashboard calls the ALM itself; the key is passed on untouched. */
static void resolve_passthrough(const struct resolve_opts *o, struct resolution *r)
{
    const struct licence_config *cfg = o->cfg;
    if (cfg->alm_check_url) {
        struct alm_settings s = alm_settings(cfg);
        s.allow_http = false;
        char reason[STATE_REASON_MAX];
        if (alm_check_reachable(&s, cfg->alm_check_url, reason, sizeof(reason)) != 0) {
            set_status(r, LS_UNREACHABLE, "dashboard", reason);
        } else {
            set_status(r, LS_UNVERIFIED, "dashboard",
                       "the dashboard performs the ALM callback itself (the ALM can be reached)");
        }
    } else {
        set_status(r, LS_UNVERIFIED, "dashboard", "the dashboard performs the ALM callback itself");
    }
    if (r->status == LS_UNVERIFIED) {
        r->len = strlen(cfg->licence);
        r->licence = strdup(cfg->licence);
        if (!r->licence)
            r->len = 0;
    }
}

static void set_missing(struct resolution *r)
{
    set_status(r, LS_MISSING, "none",
               "PI_LICENCE is not set: set it to the customer key or an offline licence, or "
               "set PI_LICENCE_URL");
}

static void resolve(const struct resolve_opts *o, struct resolution *r)
{
    const struct licence_config *cfg = o->cfg;
    memset(r, 0, sizeof(*r));
    r->st.users = -1;
    struct licence_keyset *keys = NULL;
    char reason[LICENCE_REASON_MAX];
    if (cfg->public_keys &&
        licence_keyset_parse(cfg->public_keys, strlen(cfg->public_keys), cfg->keys_origin, &keys,
                             reason, sizeof(reason)) != 0) {
        set_status(r, LS_BAD_SIGNATURE, "none", reason);
        return;
    }
    char why[LICENCE_REASON_MAX];
    enum licence_form form = cfg->licence ? licence_classify_reason(cfg->licence,
                                                                    strlen(cfg->licence), why,
                                                                    sizeof(why))
                                          : LICENCE_FORM_NONE;
    if (form != LICENCE_FORM_NONE && cfg->licence_url && !o->refresh_only)
        log_warn("PI_LICENCE_URL is ignored: PI_LICENCE is set and wins");
    if (o->refresh_only) {
        resolve_with_alm(o, keys, r);
    } else if (form == LICENCE_FORM_TOKEN) {
        resolve_token(cfg, keys, cfg->licence, strlen(cfg->licence), "inline", r);
    } else if (form == LICENCE_FORM_XML) {
        resolve_xml(cfg->licence, strlen(cfg->licence), "inline", r);
    } else if (form == LICENCE_FORM_BROKEN_TOKEN) {
        resolve_broken_token("PI_LICENCE", why, "inline", r);
    } else if (form == LICENCE_FORM_KEY && cfg->alm_url) {
        resolve_with_alm(o, keys, r);
    } else if (form == LICENCE_FORM_KEY) {
        resolve_passthrough(o, r);
    } else if (cfg->licence_url) {
        struct alm_settings s = alm_settings(cfg);
        struct alm_result res;
        enum alm_outcome outcome = alm_fetch_licence_url(&s, cfg->licence_url, &res);
        if (outcome == ALM_OK)
            resolve_document(cfg, keys, res.licence, res.len, "url", false, r);
        else
            set_status(r,
                       outcome == ALM_REJECTED      ? LS_REJECTED
                       : outcome == ALM_UNREACHABLE ? LS_UNREACHABLE
                                                    : LS_MALFORMED,
                       "url", res.reason);
        alm_result_free(&res);
    } else {
        set_missing(r);
    }
    licence_keyset_free(keys);
}

/* ---- worker report ------------------------------------------------------ */

#define REPORT_MAGIC 0x4c494331u /* "LIC1" */

struct report_head {
    uint32_t magic;
    int32_t status;
    int32_t have_claims;
    struct licence_state st;
    struct licence_claims claims;
    uint64_t licence_len;
};

static int report_write(int fd, const struct resolution *r)
{
    struct report_head h;
    memset(&h, 0, sizeof(h));
    h.magic = REPORT_MAGIC;
    h.status = (int32_t)r->status;
    h.have_claims = r->have_claims;
    h.st = r->st;
    h.claims = r->claims;
    h.licence_len = r->licence ? r->len : 0;
    if (worker_write_all(fd, &h, sizeof(h)) != 0)
        return -1;
    if (h.licence_len && worker_write_all(fd, r->licence, r->len) != 0)
        return -1;
    return 0;
}

static int report_read(const struct worker_result *wr, struct resolution *r)
{
    memset(r, 0, sizeof(*r));
    struct report_head h;
    if (!wr->data || wr->len < sizeof(h))
        return -1;
    memcpy(&h, wr->data, sizeof(h));
    if (h.magic != REPORT_MAGIC || wr->len - sizeof(h) != h.licence_len ||
        licence_status_parse(h.st.status, &r->status) != 0 || (int32_t)r->status != h.status)
        return -1;
    r->have_claims = h.have_claims != 0;
    r->st = h.st;
    r->st.status[sizeof(r->st.status) - 1] = '\0';
    r->st.reason[sizeof(r->st.reason) - 1] = '\0';
    r->st.source[sizeof(r->st.source) - 1] = '\0';
    r->st.subject[sizeof(r->st.subject) - 1] = '\0';
    r->claims = h.claims;
    r->claims.sub[sizeof(r->claims.sub) - 1] = '\0';
    r->claims.deployment[sizeof(r->claims.deployment) - 1] = '\0';
    if (r->claims.nmodules < 0 || r->claims.nmodules > LICENCE_MODULES_MAX)
        return -1;
    for (int i = 0; i < r->claims.nmodules; i++)
        r->claims.modules[i][LICENCE_MODULE_NAME_MAX - 1] = '\0';
    if (h.licence_len) {
        r->licence = malloc(h.licence_len + 1);
        if (!r->licence)
            return -1;
        memcpy(r->licence, wr->data + sizeof(h), h.licence_len);
        r->licence[h.licence_len] = '\0';
        r->len = h.licence_len;
    }
    return 0;
}

static int resolve_worker(void *arg, int out_fd)
{
    const struct resolve_opts *o = arg;
    struct resolution r;
    if (fetch_global_init() != 0)
        log_warn("cannot initialise libcurl");
    resolve(o, &r);
    int rc = report_write(out_fd, &r) == 0 ? 0 : 1;
    resolution_free(&r);
    fetch_global_cleanup();
    return rc;
}

/* Runs resolve in a worker before the loop. */
static void resolve_in_worker(const struct resolve_opts *o, struct resolution *r)
{
    struct worker_result wr;
    int timeout_ms = (int)o->cfg->alm_timeout_s * 2000 + 30000;
    if (worker_run("licence", resolve_worker, (void *)o, timeout_ms, &wr) != 0) {
        memset(r, 0, sizeof(*r));
        r->st.users = -1;
        set_status(r, LS_MALFORMED, "none", "the licence check could not be started (fork failed)");
        return;
    }
    if (report_read(&wr, r) != 0) {
        resolution_free(r);
        memset(r, 0, sizeof(*r));
        r->st.users = -1;
        char reason[STATE_REASON_MAX];
        if (wr.interrupted)
            snprintf(reason, sizeof(reason), "the licence check was ended by a stop request");
        else if (wr.timed_out)
            snprintf(reason, sizeof(reason), "the licence check did not finish within %d s",
                     timeout_ms / 1000);
        else if (wr.signal)
            snprintf(reason, sizeof(reason), "the licence check crashed (signal %d)", wr.signal);
        else
            snprintf(reason, sizeof(reason), "the licence check gave no usable report");
        set_status(r, wr.timed_out ? LS_UNREACHABLE : LS_MALFORMED, "none", reason);
    }
    if (wr.data)
        explicit_bzero(wr.data, wr.len);
    worker_result_free(&wr);
}

/* ---- status JSON -------------------------------------------------------- */

static cJSON *add_date(cJSON *obj, const char *key, int64_t t)
{
    if (t <= 0)
        return cJSON_AddNullToObject(obj, key);
    char iso[32];
    licence_iso8601(t, iso, sizeof(iso));
    return cJSON_AddStringToObject(obj, key, iso);
}

/* The status as JSON (malloc'd), with nothing secret in it. */
static cJSON *status_object(const struct licence_state *st, const struct licence_claims *claims,
                            bool have_claims)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    bool ok = cJSON_AddStringToObject(o, "status", st->status) &&
              cJSON_AddStringToObject(o, "reason", st->reason) &&
              cJSON_AddStringToObject(o, "source", st->source);
    if (ok && have_claims) {
        cJSON *mods = NULL;
        ok = cJSON_AddStringToObject(o, "subject", claims->sub) &&
             cJSON_AddNumberToObject(o, "users", (double)claims->users) &&
             (mods = cJSON_AddArrayToObject(o, "modules")) != NULL &&
             add_date(o, "not_before", claims->has_nbf ? claims->nbf : 0) &&
             add_date(o, "expires", claims->exp) &&
             cJSON_AddNumberToObject(o, "days_left", (double)st->days_left) &&
             (claims->has_deployment ? cJSON_AddStringToObject(o, "deployment", claims->deployment)
                                     : cJSON_AddNullToObject(o, "deployment")) != NULL;
        for (int i = 0; ok && i < claims->nmodules; i++) {
            cJSON *m = cJSON_CreateString(claims->modules[i]);
            ok = m && cJSON_AddItemToArray(mods, m);
        }
    } else if (ok) {
        ok = cJSON_AddNullToObject(o, "subject") && cJSON_AddNullToObject(o, "users") &&
             cJSON_AddNullToObject(o, "modules") && cJSON_AddNullToObject(o, "not_before") &&
             cJSON_AddNullToObject(o, "expires") && cJSON_AddNullToObject(o, "days_left");
    }
    ok = ok && add_date(o, "checked_at", (int64_t)time(NULL));
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static char *print_and_delete(cJSON *o)
{
    char *out = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return out;
}

/* The status file also names its writer (pid and start time), so that
 * `pi-agent licence` can tell the running agent's view from a file left
 * behind by one that is gone. */
static char *status_file_json(const struct licence_state *st, const struct licence_claims *claims,
                              bool have_claims)
{
    cJSON *o = status_object(st, claims, have_claims);
    struct procstat self;
    if (o && procstat_read(0, &self) == 0) {
        cJSON *w = cJSON_AddObjectToObject(o, "writer");
        if (!w || !cJSON_AddNumberToObject(w, "pid", (double)getpid()) ||
            !cJSON_AddNumberToObject(w, "start_ticks", (double)self.start_ticks)) {
            cJSON_Delete(o);
            return NULL;
        }
    }
    return print_and_delete(o);
}

/* ---- hand-over (PID 1: /run is local) ----------------------------------- */

/* What the loop timers need after licence_start. */
static struct {
    const struct licence_config *cfg;
    struct agent_state *state;
    struct loop *loop;
    bool has_owner;
    struct run_as owner;
    enum licence_status status;
    bool have_claims;
    struct licence_claims claims;
    bool refreshing;
    uint64_t last_refresh_ms;
    long refresh_timer;
    struct resolve_opts refresh_opts;
} g;

static void log_status(const char *msg, const struct licence_state *st, enum licence_status status)
{
    enum log_level level = status == LS_VALID || status == LS_UNVERIFIED ? LOG_INFO
                           : status == LS_EXPIRING                       ? LOG_WARN
                                                                         : LOG_ERROR;
    char expires[32] = "";
    if (st->expires > 0)
        licence_iso8601(st->expires, expires, sizeof(expires));
    log_emit(level, msg,
             LOG_FIELDS_(LF_STR("status", st->status), LF_STR("reason", st->reason),
                         LF_STR("source", st->source), LF_STR("subject", st->subject),
                         LF_STR("expires", expires), LF_INT("days_left", st->has_days_left ? st->days_left : -1)));
}

/* Writes licence.json and, with with_licence, the licence file (or removes
 * a previous one when there is no accepted licence). Returns 1 when the
 * licence file was written, 0 when not, -1 when the directory cannot be used. */
static int write_handover(const struct licence_config *cfg, const struct resolution *r,
                          const struct run_as *owner, bool with_licence)
{
    char error[600];
    if (ensure_dir(cfg->run_dir, 0755) != 0) {
        log_error("cannot create the licence hand-over directory", LF_STR("path", cfg->run_dir),
                  LF_STR("error", strerror(errno)), LF_STR("variable", "PI_AGENT_RUN_DIR"));
        return -1;
    }
    int written = 0;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", cfg->run_dir, LICENCE_FILE_NAME);
    if (!with_licence) {
        /* Only the status changed: the licence file stays as it is. */
    } else if (r->licence && licence_status_acceptable(r->status)) {
        if (write_handover_file(cfg, LICENCE_FILE_NAME, r->licence, r->len, 0600, owner, error,
                                sizeof(error)) != 0)
            log_error("cannot hand the licence over", LF_STR("error", error));
        else
            written = 1;
    } else if (unlink(path) != 0 && errno != ENOENT) {
        log_warn("cannot remove the previous licence file", LF_STR("path", path),
                 LF_STR("error", strerror(errno)));
    }
    char *json = status_file_json(&r->st, &r->claims, r->have_claims);
    if (!json) {
        log_error("out of memory writing the licence status");
    } else {
        size_t n = strlen(json);
        json[n] = '\n';
        if (write_handover_file(cfg, STATUS_FILE_NAME, json, n + 1, 0644, NULL, error,
                                sizeof(error)) != 0)
            log_error("cannot write the licence status", LF_STR("error", error));
        free(json);
    }
    return written;
}

static void remember(const struct resolution *r)
{
    g.status = r->status;
    g.have_claims = r->have_claims;
    g.claims = r->claims;
    if (g.state) {
        bool changed = strcmp(g.state->licence.status, r->st.status) != 0;
        uint64_t since = g.state->licence.since_ms;
        g.state->licence = r->st;
        g.state->licence.since_ms = changed || since == 0 ? wall_now_ms() : since;
        state_changed(g.state);
    }
}

int licence_start(const struct licence_config *cfg, const struct run_as *run_as,
                  struct agent_state *state, struct childenv *env)
{
    g.cfg = cfg;
    g.state = state;
    g.has_owner = run_as && run_as->set;
    if (g.has_owner)
        g.owner = *run_as;

    struct resolve_opts opts = { .cfg = cfg, .write_cache = true };
    struct resolution r;
    if (cfg->licence == NULL && cfg->licence_url == NULL) {
        /* Nothing to resolve: no worker to fork and wait for. */
        memset(&r, 0, sizeof(r));
        r.st.users = -1;
        set_missing(&r);
    } else {
        resolve_in_worker(&opts, &r);
    }
    remember(&r);
    log_status("licence checked", &r.st, r.status);
    if (r.have_claims && !r.claims.has_deployment && cfg->deployment_id == NULL)
        log_debug("the licence is not bound to a deployment");
    if (r.have_claims && r.claims.has_deployment && cfg->deployment_id == NULL)
        log_warn("the licence is bound to a deployment, but PI_DEPLOYMENT_ID is not set: it is not "
                 "checked", LF_STR("deployment", r.claims.deployment));

    int written = write_handover(cfg, &r, g.has_owner ? &g.owner : NULL, true);
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", cfg->run_dir, LICENCE_FILE_NAME);
    int rc = 0;
    if (childenv_set(env, "PI_LICENCE_STATUS", r.st.status) != 0 ||
        (written == 1 && childenv_set(env, "PI_LICENCE_FILE", path) != 0)) {
        log_error("out of memory setting the licence variables");
    }
    if (written != 1)
        childenv_unset(env, "PI_LICENCE_FILE");
    if (cfg->inline_env && r.licence && licence_status_acceptable(r.status)) {
        if (childenv_set(env, "PI_LICENCE", r.licence) != 0)
            log_error("out of memory setting PI_LICENCE for the dashboard");
        else
            log_info("the dashboard gets the resolved licence in PI_LICENCE",
                     LF_STR("source", r.st.source));
    }
    if (cfg->required && !licence_status_acceptable(r.status)) {
        log_error("licence required and not acceptable: not starting the dashboard",
                  LF_STR("status", r.st.status), LF_STR("reason", r.st.reason),
                  LF_STR("variable", "PI_AGENT_LICENCE_REQUIRED"));
        rc = EXIT_LICENCE;
    }
    resolution_free(&r);
    return rc;
}

/* ---- loop timers -------------------------------------------------------- */

static bool refreshable(const struct licence_config *cfg)
{
    return cfg->alm_url && cfg->licence &&
           licence_classify(cfg->licence, strlen(cfg->licence)) == LICENCE_FORM_KEY;
}

static uint64_t jittered_ms(unsigned seconds)
{
    /* +-10%, so that tasks started together do not call the ALM together. */
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint32_t)loop_now_ms();
    uint64_t base = (uint64_t)seconds * 1000u;
    uint64_t spread = base / 5;
    return base - base / 10 + (spread ? (uint64_t)r % spread : 0);
}

static void start_refresh(struct loop *loop);

static void on_refresh_timer(struct loop *loop, void *ctx)
{
    (void)ctx;
    g.refresh_timer = 0;
    start_refresh(loop);
}

static void arm_refresh(struct loop *loop)
{
    if (g.refresh_timer > 0)
        loop_timer_cancel(loop, g.refresh_timer);
    g.refresh_timer = loop_timer_add(loop, jittered_ms(g.cfg->refresh_interval_s), 0,
                                     on_refresh_timer, NULL);
    if (g.refresh_timer < 0)
        log_error("cannot arm the licence refresh timer");
}

static void on_refresh_done(struct loop *loop, const struct worker_result *wr, void *ctx)
{
    (void)ctx;
    g.refreshing = false;
    struct resolution r;
    if (report_read(wr, &r) != 0) {
        log_warn("licence refresh failed: the worker gave no usable report",
                 LF_BOOL("timed_out", wr->timed_out), LF_INT("signal", wr->signal));
    } else if (r.status == LS_VALID || r.status == LS_EXPIRING) {
        bool changed = r.status != g.status;
        remember(&r);
        if (write_handover(g.cfg, &r, g.has_owner ? &g.owner : NULL, true) < 0)
            log_warn("the refreshed licence could not be handed over");
        log_status(changed ? "licence refreshed from the ALM: status changed"
                           : "licence refreshed from the ALM",
                   &r.st, r.status);
    } else {
        log_emit(r.status == LS_REJECTED ? LOG_ERROR : LOG_WARN,
                 "licence refresh failed: the current licence stays in use",
                 LOG_FIELDS_(LF_STR("status", r.st.status), LF_STR("reason", r.st.reason),
                             LF_STR("current_status", licence_status_name(g.status))));
    }
    resolution_free(&r);
    arm_refresh(loop);
}

static void start_refresh(struct loop *loop)
{
    if (g.refreshing)
        return;
    g.refresh_opts = (struct resolve_opts){ .cfg = g.cfg, .write_cache = true, .refresh_only = true };
    g.last_refresh_ms = loop_now_ms();
    int timeout_ms = (int)g.cfg->alm_timeout_s * 2000 + 30000;
    if (worker_start(loop, "licence-refresh", resolve_worker, &g.refresh_opts, timeout_ms,
                     on_refresh_done, NULL) < 0) {
        log_warn("cannot start the licence refresh");
        arm_refresh(loop);
        return;
    }
    g.refreshing = true;
    log_debug("licence refresh started");
}

static void on_check_timer(struct loop *loop, void *ctx)
{
    (void)ctx;
    if (g.have_claims && g.state) {
        char reason[LICENCE_REASON_MAX];
        long days = 0;
        enum licence_status st =
            licence_evaluate(&g.claims, (int64_t)(wall_now_ms() / 1000), g.cfg->warn_days,
                             g.cfg->deployment_id, &days, reason, sizeof(reason));
        bool day_passed = days != g.state->licence.days_left;
        g.state->licence.days_left = days;
        g.state->licence.has_days_left = true;
        state_changed(g.state);
        if (st != g.status || day_passed) {
            struct resolution r = { .status = st, .have_claims = true, .claims = g.claims };
            r.st = g.state->licence;
            if (st != g.status) {
                set_status(&r, st, g.state->licence.source, reason);
                log_status("licence status changed", &r.st, st);
            }
            remember(&r);
            if (write_handover(g.cfg, &r, g.has_owner ? &g.owner : NULL, false) < 0)
                log_warn("the licence status could not be written");
        }
    }
    if (refreshable(g.cfg) && (g.status == LS_EXPIRING || g.status == LS_EXPIRED) &&
        !g.refreshing && loop_now_ms() - g.last_refresh_ms >= EXPIRING_REFRESH_MIN_MS)
        start_refresh(loop);
}

int licence_attach(struct loop *loop, const struct licence_config *cfg, struct agent_state *state)
{
    g.cfg = cfg;
    g.state = state;
    g.loop = loop;
    g.last_refresh_ms = loop_now_ms();
    uint64_t every = (uint64_t)cfg->check_interval_s * 1000u;
    if (loop_timer_add(loop, every, every, on_check_timer, NULL) < 0) {
        log_error("cannot arm the licence expiry timer");
        return -1;
    }
    if (refreshable(cfg))
        arm_refresh(loop);
    return g.refresh_timer < 0 ? -1 : 0;
}

/* ---- `pi-agent licence` and `pi-agent check` ---------------------------- */

/* Resolves in this process, without writing the cache or hand-over. */
static void resolve_here(const struct licence_config *cfg, struct resolution *r)
{
    struct resolve_opts opts = { .cfg = cfg };
    if (fetch_global_init() != 0)
        log_warn("cannot initialise libcurl");
    resolve(&opts, r);
    fetch_global_cleanup();
}

int licence_check(const struct licence_config *cfg, struct licence_state *out)
{
    struct resolution r;
    resolve_here(cfg, &r);
    *out = r.st;
    out->since_ms = wall_now_ms();
    int rc = licence_status_acceptable(r.status) ? 0 : 1;
    resolution_free(&r);
    return rc;
}

/* Whether the writer recorded in a status file is this container's running
 * agent: the same process (pid and start time) and PID 1, or a subreaper
 * right under PID 1 (ECS's initProcessEnabled). Else why not, in why. */
static bool writer_is_running_agent(const cJSON *status, char *why, size_t cap)
{
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(status, "writer");
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(w, "pid");
    const cJSON *ticks = cJSON_GetObjectItemCaseSensitive(w, "start_ticks");
    if (!cJSON_IsNumber(pid) || !cJSON_IsNumber(ticks) || pid->valuedouble < 1 ||
        pid->valuedouble > 4194304) {
        snprintf(why, cap, "it does not name the agent that wrote it");
        return false;
    }
    pid_t p = (pid_t)pid->valuedouble;
    struct procstat ps;
    if (procstat_read(p, &ps) != 0) {
        snprintf(why, cap, "its writer (pid %d) is not running in this container", (int)p);
        return false;
    }
    if ((double)ps.start_ticks != ticks->valuedouble) {
        snprintf(why, cap, "pid %d is no longer the agent that wrote it (restarted?)", (int)p);
        return false;
    }
    if (p != 1 && ps.ppid != 1) {
        snprintf(why, cap, "its writer (pid %d) is not this container's PID 1 nor a subreaper "
                 "under it", (int)p);
        return false;
    }
    return true;
}

static int print_status(cJSON *o, const char *view, const char *note)
{
    if (!o || !cJSON_AddStringToObject(o, "view", view) ||
        (note && !cJSON_AddStringToObject(o, "view_note", note))) {
        cJSON_Delete(o);
        fprintf(stderr, "pi-agent: out of memory\n");
        return -1;
    }
    char *out = print_and_delete(o);
    if (!out) {
        fprintf(stderr, "pi-agent: out of memory\n");
        return -1;
    }
    printf("%s\n", out);
    free(out);
    return 0;
}

int licence_command(void)
{
    struct licence_config cfg;
    struct config_error err = { "" };
    if (licence_config_load(&cfg, &err) != 0) {
        fprintf(stderr, "pi-agent: configuration error: %s\n", err.msg);
        return EXIT_CONFIG;
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", cfg.run_dir, STATUS_FILE_NAME);
    size_t len;
    char *json = read_small_file(path, 64 * 1024, &len);
    enum licence_status status = LS_MALFORMED;
    char note[STATE_REASON_MAX] = "";
    int rc = 0;
    if (json) {
        /* The running agent's view (what the dashboard was given), but only
         * while that agent runs: a file left by one that is gone, or written
         * on a host, says nothing about now. */
        cJSON *o = cJSON_ParseWithLength(json, len);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "status");
        free(json);
        if (!cJSON_IsString(s) || licence_status_parse(s->valuestring, &status) != 0) {
            fprintf(stderr, "pi-agent: %s is not a licence status file\n", path);
            cJSON_Delete(o);
            licence_config_free(&cfg);
            return 1;
        }
        char why[160];
        if (writer_is_running_agent(o, why, sizeof(why))) {
            rc = print_status(o, "running-agent", NULL);
            o = NULL;
        } else {
            snprintf(note, sizeof(note), "%s was set aside: %.160s; resolved afresh",
                     STATUS_FILE_NAME, why);
            log_info("the licence status file is not the running agent's: resolving afresh",
                     LF_STR("path", path), LF_STR("why", why));
        }
        cJSON_Delete(o);
        if (!note[0]) {
            licence_config_free(&cfg);
            return rc != 0 ? 1 : licence_status_acceptable(status) ? 0 : 1;
        }
    }
    /* No running agent has written a status: resolve now, writing nothing
     * (log lines go to stderr, so stdout holds only the status). */
    struct resolution r;
    resolve_here(&cfg, &r);
    status = r.status;
    cJSON *o = status_object(&r.st, &r.claims, r.have_claims);
    resolution_free(&r);
    rc = print_status(o, "resolved-now", note[0] ? note : NULL);
    fflush(stdout);
    licence_config_free(&cfg);
    return rc != 0 ? 1 : licence_status_acceptable(status) ? 0 : 1;
}
