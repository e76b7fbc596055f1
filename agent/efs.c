/* efs: see efs.h and docs/storage.md. */
#include "efs.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "efs_scan.h"
#include "efs_seed.h"
#include "fsafe.h"
#include "efs_share.h"
#include "log.h"
#include "loop.h"
#include "state.h"
#include "util.h"
#include "worker.h"

#define EFS_REPORT_MAGIC 0x70694566u /* "piEf" */
#define EFS_FIRST_SCAN_DELAY_MS 100

/* ---- settings ------------------------------------------------------------- */

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
    if (load_abs_path("PI_EFS_ROOT", "/mnt/efs", cfg->root, sizeof(cfg->root), err) < 0)
        return -1;
    if (strcmp(cfg->root, "/") == 0)
        return config_fail(err, "PI_EFS_ROOT", "cannot be /");
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

const char *efs_budget_status(uint64_t total, uint64_t budget, unsigned warn_percent)
{
    if (total > budget)
        return "over";
    /* total * 100 >= budget * warn, computed without overflow */
    long double ratio = (long double)total * 100.0L / (long double)budget;
    return ratio >= (long double)warn_percent ? "warn" : "ok";
}

/* ---- preparation -------------------------------------------------------- */

struct prep {
    efs_report_fn report;
    void *ctx;
    struct efs_state *st;
    int failures;
};

static void say(struct prep *p, enum efs_level level, const char *check, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void say(struct prep *p, enum efs_level level, const char *check, const char *fmt, ...)
{
    char text[STATE_REASON_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (level == EFS_FAIL && p->failures++ == 0)
        efs_fmt(p->st->reason, sizeof(p->st->reason), "%s", text);
    if (p->report)
        p->report(p->ctx, level, check, text);
}

static void set_word(char *dst, size_t cap, const char *word)
{
    snprintf(dst, cap, "%s", word);
}

static void describe_missing_root(const char *root, char *out, size_t cap)
{
    struct stat st;
    if (lstat(root, &st) < 0) {
        snprintf(out, cap, "%s", errno == ENOENT ? "does not exist" : strerror(errno));
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(out, cap, "is not a folder");
        return;
    }
    char fstype[32] = "?";
    bool nfs = false;
    (void)efs_fs_type(root, fstype, sizeof(fstype), &nfs);
    snprintf(out, cap, "is a folder on %s but not a mount point", fstype);
}

static void plan_add(struct efs_plan *plan, struct efs_state *st, const char *name,
                     const char *path)
{
    int i = plan->nscan++;
    snprintf(plan->names[i], sizeof(plan->names[i]), "%s", name);
    snprintf(plan->paths[i], sizeof(plan->paths[i]), "%s", path);
    snprintf(st->folders[i].name, sizeof(st->folders[i].name), "%s", name);
    st->nfolders = plan->nscan;
}

/* Checks a dashboard path that is its own mount point: left as it is. */
static void check_mounted_path(struct prep *p, const struct efs_config *cfg,
                               const struct efs_link *l, const char *check)
{
    char fstype[32] = "?";
    bool nfs = false;
    if (efs_fs_type(l->path, fstype, sizeof(fstype), &nfs) < 0) {
        say(p, EFS_FAIL, check, "%s: cannot read the file system: %s", l->path, strerror(errno));
        return;
    }
    if (p->st->fs_type[0] == '\0')
        set_word(p->st->fs_type, sizeof(p->st->fs_type), fstype);
    if (!nfs && cfg->require_nfs)
        say(p, EFS_FAIL, check, "%s is a mount point on %s, not NFS (PI_EFS_REQUIRE_NFS=true)",
            l->path, fstype);
    else
        say(p, nfs ? EFS_OK : EFS_WARN, check, "%s is a mount point (%s): left as it is%s",
            l->path, fstype, nfs ? "" : "; not NFS, fine for local testing only");
}

static void probe_folders(struct prep *p, const struct run_as *run_as, const char *const *dirs,
                          const char *const *checks, int n)
{
    bool ok[EFS_LINKS_MAX + 1];
    char msg[512];
    if (n == 0)
        return;
    int failures = efs_write_probe(dirs, n, run_as, ok, msg, sizeof(msg));
    if (failures < 0) {
        say(p, EFS_FAIL, "permissions", "write probe could not run: %s", msg);
        return;
    }
    const char *who = run_as && run_as->set ? (run_as->user[0] ? run_as->user : "run-as user")
                                            : "the agent's user";
    bool first = true;
    for (int i = 0; i < n; i++) {
        if (ok[i])
            continue;
        /* msg holds the reason of the first failure only */
        say(p, EFS_FAIL, checks[i], "%s is not writable by %s (write probe failed%s%s)", dirs[i],
            who, first ? ": " : "", first ? msg : "");
        first = false;
    }
}

/* The seed marker, read without following a link (dry run). */
static size_t read_marker(const char *root, char *buf, size_t cap)
{
    int rootfd = fsafe_open_dir_trusted(root, false);
    if (rootfd < 0)
        return 0;
    int fd = fsafe_openat(rootfd, EFS_SEED_MARKER, O_RDONLY | O_NONBLOCK, 0);
    close(rootfd);
    if (fd < 0)
        return 0;
    struct stat st;
    ssize_t n = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        n = read(fd, buf, cap - 1);
    close(fd);
    return n > 0 ? (size_t)n : 0;
}

/* ROOT/.pi-agent is the agent's own folder. A start moves whatever else
 * stands there aside (warn); when that cannot be done, storage fails. The
 * dry run only says what it would find. */
static void check_agent_dir(struct prep *p, const struct efs_config *cfg, bool dry_run)
{
    int rootfd = fsafe_open_dir_trusted(cfg->root, false);
    if (rootfd < 0) {
        say(p, EFS_FAIL, "agent folder", "PI_EFS_ROOT=%s: cannot open: %s", cfg->root,
            strerror(errno));
        return;
    }
    char display[PATH_MAX];
    efs_fmt(display, sizeof(display), "%s/%s", cfg->root, EFS_AGENT_DIR);
    if (dry_run) {
        struct stat st;
        if (fstatat(rootfd, EFS_AGENT_DIR, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            !(S_ISDIR(st.st_mode) && fsafe_owner_ok(rootfd, st.st_uid) &&
              (st.st_mode & (S_IWGRP | S_IWOTH)) == 0)) {
            char what[320];
            fsafe_describe(rootfd, EFS_AGENT_DIR, what, sizeof(what));
            say(p, EFS_WARN, "agent folder",
                "%s is %s, not the agent's own folder (root's, mode 0700): a start moves it "
                "aside as %s.refused-RANDOM", display, what, EFS_AGENT_DIR);
        }
        close(rootfd);
        return;
    }
    char moved[NAME_MAX + 340], msg[700];
    int fd = efs_agent_dir_open(rootfd, cfg->root, moved, sizeof(moved), msg, sizeof(msg));
    close(rootfd);
    if (fd < 0) {
        say(p, EFS_FAIL, "agent folder", "%s", msg);
        return;
    }
    close(fd);
    if (msg[0])
        say(p, EFS_WARN, "agent folder", "%s", msg);
    if (moved[0])
        say(p, EFS_WARN, "agent folder",
            "%s was not the agent's own folder (root's, mode 0700, not a link): moved aside to "
            "%s/%s; nothing in it was used", display, cfg->root, moved);
}

static void prepare_managed(struct prep *p, const struct efs_config *cfg,
                            const struct run_as *run_as, bool dry_run, struct efs_plan *plan)
{
    char fstype[32] = "?";
    bool nfs = false;
    if (efs_fs_type(cfg->root, fstype, sizeof(fstype), &nfs) < 0) {
        say(p, EFS_FAIL, "root", "PI_EFS_ROOT=%s: cannot read the file system: %s", cfg->root,
            strerror(errno));
        return;
    }
    set_word(p->st->fs_type, sizeof(p->st->fs_type), fstype);
    if (nfs)
        say(p, EFS_OK, "root", "PI_EFS_ROOT=%s is a mount point (%s)", cfg->root, fstype);
    else if (cfg->require_nfs)
        say(p, EFS_FAIL, "root",
            "PI_EFS_ROOT=%s is a mount point on %s, not NFS (PI_EFS_REQUIRE_NFS=true)", cfg->root,
            fstype);
    else
        say(p, EFS_WARN, "root",
            "PI_EFS_ROOT=%s is a mount point on %s, not NFS: fine for local testing only",
            cfg->root, fstype);
    if (p->failures)
        return;
    check_agent_dir(p, cfg, dry_run);
    if (p->failures)
        return;

    enum efs_link_state states[EFS_LINKS_MAX];
    char folders[EFS_LINKS_MAX][PATH_MAX];
    char checks[EFS_LINKS_MAX][48];
    const char *probe_dirs[EFS_LINKS_MAX + 1];
    const char *probe_checks[EFS_LINKS_MAX + 1];
    int nprobe = 0;
    bool root_probed = false, root_writable = false;
    char root_msg[512] = "";

    for (int i = 0; i < cfg->links.count; i++) {
        const struct efs_link *l = &cfg->links.link[i];
        efs_fmt(folders[i], sizeof(folders[i]), "%s/%s", cfg->root, l->name);
        snprintf(checks[i], sizeof(checks[i]), "folder %s", l->name);
        if (efs_link_inspect(l->path, folders[i], &states[i]) < 0) {
            say(p, EFS_FAIL, checks[i], "%s: cannot inspect: %s", l->path, strerror(errno));
            states[i] = EFS_LINK_NOT_DIR;
            continue;
        }
        if (states[i] == EFS_LINK_MOUNT_POINT) {
            check_mounted_path(p, cfg, l, checks[i]);
            plan_add(plan, p->st, l->name, l->path);
            probe_dirs[nprobe] = l->path;
            probe_checks[nprobe++] = checks[i];
            continue;
        }
        plan_add(plan, p->st, l->name, folders[i]);
        struct stat fst;
        bool exists = lstat(folders[i], &fst) == 0;
        if (dry_run && !exists) {
            if (!root_probed) {
                /* Folders are created by the agent itself: the root must be
                 * writable to it. */
                const char *dirs[1] = { cfg->root };
                root_probed = true;
                root_writable = efs_write_probe(dirs, 1, NULL, &root_writable, root_msg,
                                                sizeof(root_msg)) == 0;
            }
            if (root_writable)
                say(p, EFS_OK, checks[i], "%s will be created", folders[i]);
            else
                say(p, EFS_FAIL, checks[i], "%s is missing and cannot be created (%s)",
                    folders[i], root_msg);
            continue;
        }
        if (dry_run) {
            if (!S_ISDIR(fst.st_mode))
                say(p, EFS_FAIL, checks[i], "%s exists and is not a folder", folders[i]);
            else if (run_as && run_as->set && fst.st_uid != run_as->uid)
                say(p, EFS_WARN, checks[i], "%s is owned by uid %u, not %s; a start gives it over",
                    folders[i], (unsigned)fst.st_uid, run_as->user);
            else
                say(p, EFS_OK, checks[i], "%s exists", folders[i]);
        } else {
            char msg[512];
            if (efs_ensure_folder(folders[i], run_as, msg, sizeof(msg)) < 0) {
                say(p, EFS_FAIL, checks[i], "%s", msg);
                continue;
            }
        }
        if (!exists || S_ISDIR(fst.st_mode)) {
            probe_dirs[nprobe] = folders[i];
            probe_checks[nprobe++] = checks[i];
        }
    }
    probe_folders(p, run_as, probe_dirs, probe_checks, nprobe);
    if (p->failures)
        return;

    /* Seeding: the image's own folders (or what a killed start moved aside,
     * or what `pi-agent image-links` moved to the seed location at build). */
    struct efs_seed_source src[EFS_LINKS_MAX];
    char backups[EFS_LINKS_MAX][PATH_MAX];
    int nsrc = 0;
    for (int i = 0; i < cfg->links.count; i++) {
        const struct efs_link *l = &cfg->links.link[i];
        const char *from = NULL;
        struct stat bst;
        if (states[i] == EFS_LINK_DIRECTORY) {
            from = l->path;
        } else if (states[i] == EFS_LINK_MISSING || states[i] == EFS_LINK_OTHER_LINK) {
            efs_image_backup_path(l->path, backups[i], sizeof(backups[i]));
            if (lstat(backups[i], &bst) == 0 && S_ISDIR(bst.st_mode))
                from = backups[i];
        }
        if (!from && states[i] != EFS_LINK_DIRECTORY && states[i] != EFS_LINK_MOUNT_POINT &&
            states[i] != EFS_LINK_NOT_DIR) {
            efs_fmt(backups[i], sizeof(backups[i]), "%s/%s", cfg->seed_dir, l->name);
            if (lstat(backups[i], &bst) == 0 && S_ISDIR(bst.st_mode))
                from = backups[i];
        }
        if (from) {
            src[nsrc].name = l->name;
            src[nsrc].src = from;
            src[nsrc].dst = folders[i];
            nsrc++;
        }
    }
    if (dry_run) {
        char version[17];
        if (nsrc > 0 && efs_seed_fingerprint(src, nsrc, version) == 0) {
            char buf[512] = "";
            size_t n = read_marker(cfg->root, buf, sizeof(buf));
            if (n > 0 && efs_seed_marker_matches(buf, n, version))
                say(p, EFS_OK, "seed", "image defaults already seeded (version %s)", version);
            else
                say(p, EFS_OK, "seed", "image defaults of %d folder(s) will be seeded (version %s)",
                    nsrc, version);
        }
    } else if (nsrc > 0) {
        struct efs_seed_result res;
        int rc = efs_seed_run(cfg->root, src, nsrc, run_as, &res);
        if (res.odd)
            say(p, EFS_WARN, "seed",
                "%llu entr%s on EFS left as they were and not followed (a symlink, a file with "
                "several links, or not a folder where the image has one): first %s",
                (unsigned long long)res.odd, res.odd == 1 ? "y" : "ies", res.first_odd);
        if (res.moved_aside[0])
            say(p, EFS_WARN, "agent folder", "%s/%s: moved aside, not used: %s", cfg->root,
                EFS_AGENT_DIR, res.moved_aside);
        if (rc < 0)
            say(p, EFS_FAIL, "seed", "seeding failed (%llu error(s)): %s",
                (unsigned long long)res.errors, res.first_error);
        else if (res.skipped)
            say(p, EFS_OK, "seed", "image defaults already seeded (version %s)", res.version);
        else
            say(p, EFS_OK, "seed",
                "image defaults seeded (version %s): %llu copied, %llu kept, %llu folder(s) "
                "created, %llu leftover temporaries removed",
                res.version, (unsigned long long)res.copied, (unsigned long long)res.kept,
                (unsigned long long)res.dirs_created, (unsigned long long)res.temps_removed);
        if (rc < 0)
            return;
    }

    for (int i = 0; i < cfg->links.count; i++) {
        const struct efs_link *l = &cfg->links.link[i];
        char check[48];
        snprintf(check, sizeof(check), "link %s", l->name);
        switch (states[i]) {
        case EFS_LINK_MOUNT_POINT:
            continue;
        case EFS_LINK_NOT_DIR:
            say(p, EFS_FAIL, check, "%s exists and is not a folder; it is not replaced", l->path);
            continue;
        case EFS_LINK_OK:
            say(p, EFS_OK, check, "%s -> %s", l->path, folders[i]);
            continue;
        default:
            break;
        }
        if (dry_run) {
            say(p, states[i] == EFS_LINK_OTHER_LINK ? EFS_WARN : EFS_OK, check,
                "%s (%s) will be linked to %s", l->path, efs_link_state_name(states[i]),
                folders[i]);
            continue;
        }
        char msg[512];
        if (efs_link_replace(l->path, folders[i], msg, sizeof(msg)) < 0)
            say(p, EFS_FAIL, check, "%s%s", msg,
                strstr(msg, strerror(EROFS)) ? " (for a read-only root, build the image with "
                                               "`pi-agent image-links`: docs/ecs.md)"
                                             : "");
        else
            say(p, EFS_OK, check, "%s -> %s", l->path, folders[i]);
    }
}

static void prepare_per_folder(struct prep *p, const struct efs_config *cfg,
                               const struct run_as *run_as, const bool *mounted,
                               struct efs_plan *plan)
{
    const char *probe_dirs[EFS_LINKS_MAX];
    const char *probe_checks[EFS_LINKS_MAX];
    char checks[EFS_LINKS_MAX][48];
    int nprobe = 0;
    for (int i = 0; i < cfg->links.count; i++) {
        const struct efs_link *l = &cfg->links.link[i];
        snprintf(checks[i], sizeof(checks[i]), "folder %s", l->name);
        if (!mounted[i]) {
            say(p, EFS_WARN, checks[i],
                "%s is not a mount point: its content will be lost with the container", l->path);
            continue;
        }
        check_mounted_path(p, cfg, l, checks[i]);
        plan_add(plan, p->st, l->name, l->path);
        probe_dirs[nprobe] = l->path;
        probe_checks[nprobe++] = checks[i];
    }
    probe_folders(p, run_as, probe_dirs, probe_checks, nprobe);
}

/* Does the image carry its links from build time (`pi-agent image-links`):
 * is any dashboard path already a symlink to its folder under the root? */
static bool image_linked(const struct efs_config *cfg)
{
    for (int i = 0; i < cfg->links.count; i++) {
        char folder[PATH_MAX];
        enum efs_link_state state;
        efs_fmt(folder, sizeof(folder), "%s/%s", cfg->root, cfg->links.link[i].name);
        if (efs_link_inspect(cfg->links.link[i].path, folder, &state) == 0 &&
            state == EFS_LINK_OK)
            return true;
    }
    return false;
}

/* mkdir -p path (0755): the local stand-in for a root that is not mounted. */
static int mkdir_parents_and(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *q = buf + 1;; q++) {
        if (*q != '/' && *q != '\0')
            continue;
        char saved = *q;
        *q = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -1;
        *q = saved;
        if (saved == '\0')
            return 0;
    }
}

/* The image's folders link into PI_EFS_ROOT but nothing is mounted there (a
 * plain `docker run`): without folders behind the links the dashboard would
 * have no themes or keys at all, so the root becomes a local folder, laid out
 * and seeded as EFS would be. Its content goes with the container. */
static void prepare_linked_without_root(struct prep *p, const struct efs_config *cfg,
                                        const struct run_as *run_as, bool dry_run,
                                        const char *what, struct efs_plan *plan)
{
    struct efs_state *st = p->st;
    set_word(st->mode, sizeof(st->mode), "ephemeral");
    set_word(st->status, sizeof(st->status), "ephemeral");
    efs_fmt(st->reason, sizeof(st->reason), "PI_EFS_ROOT=%s %s: storage is ephemeral", cfg->root,
            what);
    if (cfg->require_nfs) {
        say(p, EFS_FAIL, "root",
            "PI_EFS_ROOT=%s %s and the image's folders link into it (PI_EFS_REQUIRE_NFS=true)",
            cfg->root, what);
        return;
    }
    say(p, EFS_WARN, "root",
        "PI_EFS_ROOT=%s %s and the image's folders link into it (pi-agent image-links): a local "
        "folder stands in, and its content will be lost with the container",
        cfg->root, what);
    struct stat rst;
    if (lstat(cfg->root, &rst) < 0) {
        if (dry_run) {
            say(p, EFS_OK, "root", "%s will be created", cfg->root);
            return;
        }
        if (mkdir_parents_and(cfg->root) < 0) {
            say(p, EFS_FAIL, "root", "PI_EFS_ROOT=%s cannot be created: %s%s", cfg->root,
                strerror(errno),
                errno == EROFS ? " (with a read-only root, mount the EFS root there)" : "");
            return;
        }
    } else if (!S_ISDIR(rst.st_mode)) {
        say(p, EFS_FAIL, "root", "PI_EFS_ROOT=%s exists and is not a folder", cfg->root);
        return;
    }
    prepare_managed(p, cfg, run_as, dry_run, plan);
    /* prepare_managed speaks of a mount; the status stays ephemeral. */
    if (p->failures == 0) {
        set_word(st->status, sizeof(st->status), "ephemeral");
        efs_fmt(st->reason, sizeof(st->reason), "PI_EFS_ROOT=%s %s: storage is ephemeral",
                cfg->root, what);
    }
}

int efs_prepare(const struct efs_config *cfg, const struct run_as *run_as, bool dry_run,
                efs_report_fn report, void *report_ctx, struct efs_state *st,
                struct efs_plan *plan)
{
    struct prep p = { .report = report, .ctx = report_ctx, .st = st };
    memset(st, 0, sizeof(*st));
    memset(plan, 0, sizeof(*plan));
    st->budget_bytes = cfg->budget_bytes;
    st->since_ms = wall_now_ms();

    if (cfg->mode == EFS_MODE_OFF) {
        set_word(st->mode, sizeof(st->mode), "off");
        set_word(st->status, sizeof(st->status), "off");
        say(&p, EFS_OK, "storage", "PI_EFS_MODE=off: no storage work");
        return 0;
    }

    int root_mp = efs_is_mount_point(cfg->root, NULL, 0);
    if (root_mp == 1) {
        set_word(st->mode, sizeof(st->mode), "managed");
        prepare_managed(&p, cfg, run_as, dry_run, plan);
    } else {
        char what[128];
        describe_missing_root(cfg->root, what, sizeof(what));
        if (cfg->mode == EFS_MODE_REQUIRED) {
            set_word(st->mode, sizeof(st->mode), "managed");
            say(&p, EFS_FAIL, "root",
                "PI_EFS_ROOT=%s %s; PI_EFS_MODE=required needs the EFS root mounted there",
                cfg->root, what);
        } else {
            bool mounted[EFS_LINKS_MAX] = { false };
            int nmounted = 0;
            for (int i = 0; i < cfg->links.count; i++) {
                if (efs_is_mount_point(cfg->links.link[i].path, NULL, 0) == 1) {
                    mounted[i] = true;
                    nmounted++;
                }
            }
            if (nmounted == 0 && image_linked(cfg)) {
                prepare_linked_without_root(&p, cfg, run_as, dry_run, what, plan);
            } else if (nmounted > 0) {
                set_word(st->mode, sizeof(st->mode), "per-folder");
                say(&p, EFS_OK, "root",
                    "PI_EFS_ROOT=%s %s; %d dashboard folder(s) are mount points themselves: "
                    "they are checked and measured where they are",
                    cfg->root, what, nmounted);
                prepare_per_folder(&p, cfg, run_as, mounted, plan);
            } else {
                set_word(st->mode, sizeof(st->mode), "ephemeral");
                set_word(st->status, sizeof(st->status), "ephemeral");
                if (cfg->require_nfs)
                    say(&p, EFS_FAIL, "root",
                        "PI_EFS_ROOT=%s %s and no dashboard folder is a mount point "
                        "(PI_EFS_REQUIRE_NFS=true)",
                        cfg->root, what);
                else
                    say(&p, EFS_WARN, "root",
                        "PI_EFS_ROOT=%s %s and no dashboard folder is a mount point: themes, "
                        "images, files, keys and the other folders will be lost with the "
                        "container",
                        cfg->root, what);
                efs_fmt(st->reason, sizeof(st->reason),
                         "PI_EFS_ROOT=%s %s: storage is ephemeral", cfg->root, what);
            }
        }
    }
    if (p.failures > 0) {
        set_word(st->status, sizeof(st->status), "failed");
        if (strcmp(st->mode, "managed") == 0 && strncmp(st->reason, "PI_EFS_ROOT=", 12) != 0) {
            char detail[STATE_REASON_MAX];
            snprintf(detail, sizeof(detail), "%s", st->reason);
            efs_fmt(st->reason, sizeof(st->reason), "PI_EFS_ROOT=%s: %s", cfg->root, detail);
        }
        if (cfg->mode == EFS_MODE_REQUIRED || cfg->require_nfs)
            return EXIT_STORAGE;
        return 0;
    }
    if (st->status[0] == '\0') {
        set_word(st->status, sizeof(st->status), "pending");
        st->reason[0] = '\0';
    }
    return 0;
}

/* ---- measuring ---------------------------------------------------------- */

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int efs_measure(const struct efs_config *cfg, const struct efs_plan *plan, struct efs_state *st,
                uint64_t *errors, char *first_error, size_t cap)
{
    double t0 = mono_now();
    struct efs_scan *scan = efs_scan_new();
    *errors = 0;
    if (cap)
        first_error[0] = '\0';
    if (!scan) {
        snprintf(first_error, cap, "out of memory");
        return -1;
    }
    int measured = 0;
    st->total_bytes = 0;
    st->files = 0;
    st->nfolders = plan->nscan;
    for (int i = 0; i < plan->nscan; i++) {
        struct efs_scan_totals t;
        struct stat top;
        if (lstat(plan->paths[i], &top) < 0 && errno == ENOENT) {
            /* not created yet (a dry run) or removed meanwhile: nothing to count */
            memset(&st->folders[i], 0, sizeof(st->folders[i]));
            snprintf(st->folders[i].name, sizeof(st->folders[i].name), "%s", plan->names[i]);
            measured++;
            continue;
        }
        int rc = efs_scan_tree(scan, plan->paths[i], &t);
        snprintf(st->folders[i].name, sizeof(st->folders[i].name), "%s", plan->names[i]);
        st->folders[i].bytes = t.bytes;
        st->folders[i].files = t.files;
        st->total_bytes += t.bytes;
        st->files += t.files;
        *errors += t.errors;
        if (t.errors && cap && first_error[0] == '\0')
            snprintf(first_error, cap, "%s", t.first_error);
        if (rc == 0)
            measured++;
    }
    efs_scan_free(scan);
    st->budget_bytes = cfg->budget_bytes;
    st->scan_seconds = mono_now() - t0;
    st->scanned = true;
    return measured > 0 || plan->nscan == 0 ? 0 : -1;
}

/* ---- start phase (worker) ------------------------------------------------- */

struct start_report {
    uint32_t magic;
    int rc;
    struct efs_state st;
    struct efs_plan plan;
};

struct start_args {
    const struct efs_config *cfg;
    const struct run_as *run_as;
};

static void log_report(void *ctx, enum efs_level level, const char *check, const char *text)
{
    (void)ctx;
    enum log_level l = level == EFS_FAIL ? LOG_ERROR : level == EFS_WARN ? LOG_WARN : LOG_INFO;
    log_emit(l, text, (const struct log_field[]){ LF_STR("check", check), { 0 } });
}

static int start_work(void *arg, int out_fd)
{
    const struct start_args *a = arg;
    struct start_report *rep = calloc(1, sizeof(*rep));
    if (!rep)
        return 1;
    rep->magic = EFS_REPORT_MAGIC;
    rep->rc = efs_prepare(a->cfg, a->run_as, false, log_report, NULL, &rep->st, &rep->plan);
    int ok = worker_write_all(out_fd, rep, sizeof(*rep)) == 0;
    free(rep);
    return ok ? 0 : 1;
}

/* What the loop needs after the start phase. PID 1 has one storage. */
static struct {
    struct efs_plan plan;
    struct loop *loop;
    const struct efs_config *cfg;
    struct agent_state *state;
    bool scanning;
    unsigned seed;
    uint64_t writer;  /* this agent's id in the fleet's scan record */
    const struct run_as *run_as;
    struct housekeeping housekeeping;
} rt;

int efs_start(const struct efs_config *cfg, const struct run_as *run_as, struct agent_state *state)
{
    struct efs_state *st = &state->efs;
    rt.plan.nscan = 0; /* the plan is read up to nscan only: 64 KiB stay untouched */
    rt.run_as = run_as;
    if (cfg->mode == EFS_MODE_OFF) {
        memset(st, 0, sizeof(*st));
        set_word(st->mode, sizeof(st->mode), "off");
        set_word(st->status, sizeof(st->status), "off");
        st->since_ms = wall_now_ms();
        log_debug("storage: PI_EFS_MODE=off, no storage work");
        return 0;
    }
    struct start_args args = { .cfg = cfg, .run_as = run_as };
    struct worker_result res;
    int fatal_ok = cfg->mode == EFS_MODE_REQUIRED || cfg->require_nfs;
    if (worker_run("efs-start", start_work, &args, (int)(cfg->start_timeout_s * 1000u), &res) < 0) {
        memset(st, 0, sizeof(*st));
        set_word(st->status, sizeof(st->status), "failed");
        efs_fmt(st->reason, sizeof(st->reason), "PI_EFS_ROOT=%s: storage preparation could not start",
                 cfg->root);
        log_error("storage preparation could not start", LF_STR("root", cfg->root));
        return fatal_ok ? EXIT_STORAGE : 0;
    }
    if (res.len != sizeof(struct start_report) ||
        ((const struct start_report *)(const void *)res.data)->magic != EFS_REPORT_MAGIC) {
        memset(st, 0, sizeof(*st));
        set_word(st->mode, sizeof(st->mode), cfg->mode == EFS_MODE_REQUIRED ? "managed" : "?");
        set_word(st->status, sizeof(st->status), "failed");
        st->budget_bytes = cfg->budget_bytes;
        st->since_ms = wall_now_ms();
        if (res.interrupted)
            efs_fmt(st->reason, sizeof(st->reason),
                     "PI_EFS_ROOT=%s: storage preparation was ended by a stop request", cfg->root);
        else if (res.timed_out)
            efs_fmt(st->reason, sizeof(st->reason),
                     "PI_EFS_ROOT=%s: storage preparation did not finish within "
                     "PI_EFS_START_TIMEOUT_SECONDS=%u",
                     cfg->root, cfg->start_timeout_s);
        else if (res.signal)
            efs_fmt(st->reason, sizeof(st->reason),
                     "PI_EFS_ROOT=%s: storage preparation crashed (signal %d)", cfg->root,
                     res.signal);
        else
            efs_fmt(st->reason, sizeof(st->reason),
                     "PI_EFS_ROOT=%s: storage preparation failed (exit %d)", cfg->root,
                     res.exit_code);
        log_error("storage is not usable", LF_STR("error", st->reason));
        worker_result_free(&res);
        return fatal_ok ? EXIT_STORAGE : 0;
    }
    struct start_report rep;
    memcpy(&rep, res.data, sizeof(rep));
    worker_result_free(&res);
    *st = rep.st;
    rt.plan = rep.plan;
    if (rep.rc == EXIT_STORAGE) {
        log_error("storage is not usable", LF_STR("error", st->reason),
                  LF_STR("mode", cfg->mode == EFS_MODE_REQUIRED ? "required" : "auto"));
        return EXIT_STORAGE;
    }
    if (strcmp(st->status, "failed") == 0)
        log_error("storage failed: readiness will fail", LF_STR("error", st->reason));
    else
        log_info("storage ready", LF_STR("mode", st->mode), LF_STR("fs_type", st->fs_type),
                 LF_INT("folders", rt.plan.nscan));
    return 0;
}

/* ---- budget scans in the loop --------------------------------------------- */

struct scan_report {
    uint32_t magic;
    int rc;
    uint64_t errors;
    char first_error[256];
    struct efs_state st;
    bool shared;              /* the figures are another task's walk */
    double shared_age_s;      /* how old that walk was */
    char share_error[256];    /* why the fleet's record could not be used or written */
};

#define SHARE_TMP_PREFIX ".scan.tmp."

/* Reads the fleet's record (at most EFS_SHARE_MAX bytes, a regular file,
 * never through a link). */
static int read_share_record(int agentfd, struct efs_share_record *r)
{
    char buf[EFS_SHARE_MAX + 1];
    int fd = openat(agentfd, "scan", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    ssize_t n = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= EFS_SHARE_MAX)
        n = pread(fd, buf, EFS_SHARE_MAX, 0);
    close(fd);
    return n > 0 ? efs_share_parse(buf, (size_t)n, r) : -1;
}

/* Writes the record through a random O_EXCL temporary, fsync and rename.
 * Only the lock holder writes: a temporary found under the lock is a
 * leftover of a killed writer. */
static int write_share_record(int agentfd, const struct efs_share_record *r, char *err, size_t cap)
{
    char text[EFS_SHARE_MAX], tmp[64];
    int n = efs_share_format(r, text, sizeof(text));
    if (n < 0) {
        efs_fmt(err, cap, "the scan record does not fit %d bytes", EFS_SHARE_MAX);
        return -1;
    }
    int dfd = fcntl(agentfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strncmp(e->d_name, SHARE_TMP_PREFIX, sizeof(SHARE_TMP_PREFIX) - 1) == 0)
                (void)unlinkat(agentfd, e->d_name, 0);
        closedir(d);
    } else if (dfd >= 0) {
        close(dfd);
    }
    snprintf(tmp, sizeof(tmp), SHARE_TMP_PREFIX "%016llx", (unsigned long long)util_random64());
    int fd = openat(agentfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        efs_fmt(err, cap, "%s/%s: cannot create: %s", rt.cfg->root, EFS_AGENT_DIR, strerror(errno));
        return -1;
    }
    const char *step = NULL;
    if (worker_write_all(fd, text, (size_t)n) != 0)
        step = "write";
    else if (fsync(fd) != 0)
        step = "fsync";
    else if (renameat(agentfd, tmp, agentfd, "scan") != 0)
        step = "rename";
    int saved = errno;
    close(fd);
    if (step) {
        (void)unlinkat(agentfd, tmp, 0);
        efs_fmt(err, cap, "%s/%s: cannot write (%s): %s", rt.cfg->root, EFS_SHARE_RECORD, step,
                 strerror(saved));
        return -1;
    }
    return 0;
}

static void measure_into(struct scan_report *rep)
{
    rep->rc = efs_measure(rt.cfg, &rt.plan, &rep->st, &rep->errors, rep->first_error,
                          sizeof(rep->first_error));
}

/* One walk per interval for the fleet: under the scan lock, a record
 * younger than the interval stands for a walk; else this task walks and
 * leaves its figures for the others. Any trouble with the shared files
 * (a link, a foreign owner, no lock) means a walk of its own. */
static void measure_shared(struct scan_report *rep)
{
    char *err = rep->share_error;
    size_t cap = sizeof(rep->share_error);
    /* The start phase made ROOT/.pi-agent the agent's own folder; only
     * that folder, still so, is trusted here. */
    int rootfd = fsafe_open_dir_trusted(rt.cfg->root, false);
    int agentfd = rootfd >= 0 ? fsafe_openat(rootfd, EFS_AGENT_DIR, O_RDONLY | O_DIRECTORY, 0)
                              : -1;
    int lockfd = -1;
    struct stat st;
    if (agentfd < 0) {
        efs_fmt(err, cap, "%s/%s: cannot open: %s", rt.cfg->root, EFS_AGENT_DIR, strerror(errno));
        if (rootfd >= 0)
            close(rootfd);
        measure_into(rep);
        return;
    }
    bool own = fstat(agentfd, &st) == 0 && fsafe_owner_ok(rootfd, st.st_uid) &&
               (st.st_mode & 022) == 0;
    close(rootfd);
    if (!own) {
        efs_fmt(err, cap, "%s/%s is not the agent's own folder: the fleet's scan record is not "
                "used", rt.cfg->root, EFS_AGENT_DIR);
        close(agentfd);
        measure_into(rep);
        return;
    }
    lockfd = openat(agentfd, "scan.lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    int rc = -1;
    if (lockfd >= 0 && fstat(lockfd, &st) == 0 && S_ISREG(st.st_mode))
        while ((rc = fcntl(lockfd, F_SETLKW, &fl)) < 0 && errno == EINTR)
            ;
    if (rc != 0) {
        efs_fmt(err, cap, "%s/%s: cannot lock: %s", rt.cfg->root, EFS_SHARE_LOCK, strerror(errno));
        if (lockfd >= 0)
            close(lockfd);
        close(agentfd);
        measure_into(rep);
        return;
    }
    struct efs_share_record r;
    uint64_t now = wall_now_ms();
    if (read_share_record(agentfd, &r) == 0 &&
        efs_share_usable(&r, rt.writer, rt.plan.names, rt.plan.nscan, now,
                         (uint64_t)rt.cfg->scan_interval_s * 1000u)) {
        rep->rc = 0;
        rep->shared = true;
        rep->shared_age_s = (double)(now - r.time_ms) / 1000.0;
        rep->st.total_bytes = r.total_bytes;
        rep->st.files = r.files;
        rep->st.budget_bytes = rt.cfg->budget_bytes;
        rep->st.scan_seconds = r.scan_seconds;
        rep->st.nfolders = r.nfolders;
        memcpy(rep->st.folders, r.folders, sizeof(rep->st.folders));
        rep->st.scanned = true;
        rep->errors = r.errors;
    } else {
        measure_into(rep);
        if (rep->rc == 0) {
            memset(&r, 0, sizeof(r));
            r.time_ms = wall_now_ms();
            r.writer = rt.writer;
            r.total_bytes = rep->st.total_bytes;
            r.files = rep->st.files;
            r.errors = rep->errors;
            r.scan_seconds = rep->st.scan_seconds;
            r.nfolders = rep->st.nfolders;
            memcpy(r.folders, rep->st.folders, sizeof(r.folders));
            (void)write_share_record(agentfd, &r, err, cap);
        }
    }
    fl.l_type = F_UNLCK;
    (void)fcntl(lockfd, F_SETLK, &fl);
    close(lockfd);
    close(agentfd);
}

static int scan_work(void *arg, int out_fd)
{
    (void)arg;
    /* A rescan must not compete with Tomcat: lowest CPU and idle I/O priority
     * (the latter is ignored by NFS, where the round trips are the cost). */
    (void)setpriority(PRIO_PROCESS, 0, 10);
    (void)syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, 3 << 13 /* IOPRIO_CLASS_IDLE */);
    struct scan_report *rep = calloc(1, sizeof(*rep));
    if (!rep)
        return 1;
    rep->magic = EFS_REPORT_MAGIC;
    /* The root is shared by every task only in managed mode; a first-scan-
     * only configuration has no interval to share within. */
    if (strcmp(rt.state->efs.mode, "managed") == 0 && rt.cfg->scan_interval_s > 0)
        measure_shared(rep);
    else
        measure_into(rep);
    int ok = worker_write_all(out_fd, rep, sizeof(*rep)) == 0;
    free(rep);
    return ok ? 0 : 1;
}

static void scan_tick(struct loop *loop, void *ctx);

static void schedule_rescan(struct loop *loop)
{
    if (rt.cfg->scan_interval_s == 0)
        return;
    /* +-10% so that tasks started together do not scan EFS together. */
    uint64_t base = (uint64_t)rt.cfg->scan_interval_s * 1000u;
    uint64_t spread = base / 5;
    uint64_t delay = base - base / 10 + (spread ? (uint64_t)rand_r(&rt.seed) % spread : 0);
    if (loop_timer_add(loop, delay, 0, scan_tick, NULL) < 0)
        log_error("cannot schedule the next storage scan");
}

static void scan_done(struct loop *loop, const struct worker_result *res, void *ctx)
{
    (void)ctx;
    rt.scanning = false;
    struct efs_state *st = &rt.state->efs;
    if (res->len != sizeof(struct scan_report) ||
        ((const struct scan_report *)(const void *)res->data)->magic != EFS_REPORT_MAGIC) {
        log_warn("storage scan did not finish: figures are from the previous scan",
                 LF_BOOL("timed_out", res->timed_out), LF_INT("signal", res->signal),
                 LF_INT("timeout_s", rt.cfg->scan_timeout_s));
        schedule_rescan(loop);
        return;
    }
    struct scan_report *rep = malloc(sizeof(*rep));
    if (!rep) {
        schedule_rescan(loop);
        return;
    }
    memcpy(rep, res->data, sizeof(*rep));
    st->total_bytes = rep->st.total_bytes;
    st->files = rep->st.files;
    st->budget_bytes = rep->st.budget_bytes;
    st->scan_seconds = rep->st.scan_seconds;
    st->nfolders = rep->st.nfolders;
    memcpy(st->folders, rep->st.folders, sizeof(st->folders));
    st->scanned = true;

    const char *budget = efs_budget_status(st->total_bytes, st->budget_bytes, rt.cfg->warn_percent);
    bool keeps_status = strcmp(st->status, "failed") == 0;
    if (!keeps_status && strcmp(st->status, budget) != 0) {
        set_word(st->status, sizeof(st->status), budget);
        st->since_ms = wall_now_ms();
        if (strcmp(budget, "ok") == 0)
            st->reason[0] = '\0';
    }
    /* Every scan, not only a change of state: the reason carries the figures. */
    if (!keeps_status && strcmp(budget, "ok") != 0)
        efs_fmt(st->reason, sizeof(st->reason), "storage %s budget: %llu of %llu bytes",
                strcmp(budget, "over") == 0 ? "over" : "near",
                (unsigned long long)st->total_bytes, (unsigned long long)st->budget_bytes);
    for (int i = 0; i < st->nfolders; i++)
        log_debug("storage folder usage", LF_STR("folder", st->folders[i].name),
                  LF_INT("bytes", st->folders[i].bytes), LF_INT("files", st->folders[i].files));
    if (rep->share_error[0])
        log_warn("storage scan record not shared", LF_STR("error", rep->share_error));
    const struct log_field fields[] = {
        LF_STR("state", budget),
        LF_STR("scan", rep->shared ? "shared" : "walked"),
        LF_DOUBLE("scan_age_s", rep->shared ? rep->shared_age_s : 0.0),
        LF_INT("total_bytes", st->total_bytes),
        LF_INT("budget_bytes", st->budget_bytes),
        LF_INT("files", st->files),
        LF_DOUBLE("scan_seconds", st->scan_seconds),
        LF_INT("errors", rep->errors),
        LF_STR("first_error", rep->first_error),
        { 0 },
    };
    enum log_level level = strcmp(budget, "ok") == 0 ? LOG_INFO : LOG_WARN;
    log_emit(level, strcmp(budget, "over") == 0   ? "storage over budget"
                    : strcmp(budget, "warn") == 0 ? "storage near budget"
                                                  : "storage usage",
             fields);
    if (rep->errors) {
        log_warn("storage scan could not read every entry", LF_INT("errors", rep->errors),
                 LF_STR("first_error", rep->first_error));
        /* The figures are short of what could not be read: say so where the
         * state is reported, unless a failure or the budget already speaks. */
        if (!keeps_status && strcmp(budget, "ok") == 0)
            efs_fmt(st->reason, sizeof(st->reason), "figures incomplete: %llu unreadable "
                    "entr%s, first %s", (unsigned long long)rep->errors,
                    rep->errors == 1 ? "y" : "ies", rep->first_error);
    } else if (!keeps_status && strcmp(budget, "ok") == 0) {
        st->reason[0] = '\0';
    }
    free(rep);
    state_changed(rt.state);
    schedule_rescan(loop);
}

static void scan_tick(struct loop *loop, void *ctx)
{
    (void)ctx;
    if (rt.scanning)
        return;
    if (worker_start(loop, "efs-scan", scan_work, NULL, (int)(rt.cfg->scan_timeout_s * 1000u),
                     scan_done, NULL) > 0) {
        rt.scanning = true;
    } else {
        log_error("cannot start the storage scan");
        schedule_rescan(loop);
    }
}

int efs_attach(struct loop *loop, const struct efs_config *cfg, struct agent_state *state)
{
    rt.loop = loop;
    rt.cfg = cfg;
    rt.state = state;
    /* Every agent is PID 1 and tasks start together: only randomness spreads them. */
    if (getrandom(&rt.seed, sizeof(rt.seed), 0) != (ssize_t)sizeof(rt.seed))
        rt.seed = (unsigned)wall_now_ms();
    rt.writer = util_random64();
    int rc = 0;
    if (housekeeping_attach(&rt.housekeeping, loop, &cfg->housekeeping, rt.run_as) < 0) {
        log_error("cannot schedule log housekeeping");
        rc = -1;
    }
    if (cfg->mode == EFS_MODE_OFF || rt.plan.nscan == 0)
        return rc;
    if (loop_timer_add(loop, EFS_FIRST_SCAN_DELAY_MS, 0, scan_tick, NULL) < 0) {
        log_error("cannot schedule the storage scan");
        rc = -1;
    }
    return rc;
}

bool efs_ready(const struct efs_config *cfg, const struct agent_state *state, const char **why)
{
    static char reason[STATE_REASON_MAX + 32];
    const struct efs_state *st = &state->efs;
    if (strcmp(st->status, "failed") == 0) {
        snprintf(reason, sizeof(reason), "storage failed: %s", st->reason);
        if (why)
            *why = reason;
        return false;
    }
    if (cfg->over_budget_fail && strcmp(st->status, "over") == 0) {
        snprintf(reason, sizeof(reason), "storage over budget: %llu of %llu bytes",
                 (unsigned long long)st->total_bytes, (unsigned long long)st->budget_bytes);
        if (why)
            *why = reason;
        return false;
    }
    return true;
}

/* ---- pi-agent du ------------------------------------------------------------ */

int efs_du_command(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: pi-agent du PATH...  (apparent size, like du -s -x "
                        "--apparent-size -b -c)\n");
        return 2;
    }
    struct efs_scan *scan = efs_scan_new();
    if (!scan) {
        fprintf(stderr, "pi-agent du: out of memory\n");
        return 1;
    }
    uint64_t total = 0, files = 0, errors = 0;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        struct efs_scan_totals t;
        if (efs_scan_tree(scan, argv[i], &t) < 0)
            rc = 1;
        if (t.errors) {
            fprintf(stderr, "pi-agent du: %s (%llu unreadable entr%s)\n", t.first_error,
                    (unsigned long long)t.errors, t.errors == 1 ? "y" : "ies");
            rc = 1;
        }
        printf("%llu\t%s\n", (unsigned long long)t.bytes, argv[i]);
        total += t.bytes;
        files += t.files;
        errors += t.errors;
    }
    printf("%llu\ttotal\n", (unsigned long long)total);
    printf("%llu\tfiles\n", (unsigned long long)files);
    efs_scan_free(scan);
    return rc;
}
