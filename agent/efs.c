/* efs: see efs.h and docs/storage.md. */
#include "efs.h"

#include <errno.h>
#include <fcntl.h>
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
#include "log.h"
#include "loop.h"
#include "state.h"
#include "worker.h"

#define EFS_REPORT_MAGIC 0x70694566u /* "piEf" */


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

static void plan_add(struct efs_scan_set *plan, struct efs_state *st, const char *name,
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
                            const struct run_as *run_as, bool dry_run, struct efs_scan_set *plan)
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
                               struct efs_scan_set *plan)
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
                                        const char *what, struct efs_scan_set *plan)
{
    struct efs_state *st = p->st;
    set_word(st->mode, sizeof(st->mode), "ephemeral");
    st->status = EFS_STATUS_EPHEMERAL;
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
        st->status = EFS_STATUS_EPHEMERAL;
        efs_fmt(st->reason, sizeof(st->reason), "PI_EFS_ROOT=%s %s: storage is ephemeral",
                cfg->root, what);
    }
}

int efs_prepare(const struct efs_config *cfg, const struct run_as *run_as, bool dry_run,
                efs_report_fn report, void *report_ctx, struct efs_state *st,
                struct efs_scan_set *plan)
{
    struct prep p = { .report = report, .ctx = report_ctx, .st = st };
    memset(st, 0, sizeof(*st));
    memset(plan, 0, sizeof(*plan));
    st->budget_bytes = cfg->budget_bytes;
    st->since_ms = wall_now_ms();

    if (cfg->mode == EFS_MODE_OFF) {
        set_word(st->mode, sizeof(st->mode), "off");
        st->status = EFS_STATUS_OFF;
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
                st->status = EFS_STATUS_EPHEMERAL;
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
        st->status = EFS_STATUS_FAILED;
        if (strcmp(st->mode, "managed") == 0 && strncmp(st->reason, "PI_EFS_ROOT=", 12) != 0) {
            char detail[STATE_REASON_MAX];
            snprintf(detail, sizeof(detail), "%s", st->reason);
            efs_fmt(st->reason, sizeof(st->reason), "PI_EFS_ROOT=%s: %s", cfg->root, detail);
        }
        if (cfg->mode == EFS_MODE_REQUIRED || cfg->require_nfs)
            return EXIT_STORAGE;
        return 0;
    }
    if (st->status == EFS_STATUS_UNKNOWN) {
        st->status = EFS_STATUS_PENDING;
        st->reason[0] = '\0';
    }
    return 0;
}

/* ---- start phase (worker) ------------------------------------------------- */

struct start_report {
    uint32_t magic;
    int rc;
    struct efs_state st;
    struct efs_scan_set plan;
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

int efs_start(struct efs_service *svc, const struct efs_config *cfg,
              const struct run_as *run_as, struct agent_state *state)
{
    struct efs_state *st = &state->efs;
    svc->cfg = cfg;
    svc->state = state;
    svc->scan.nscan = 0;
    svc->run_as = run_as;
    if (cfg->mode == EFS_MODE_OFF) {
        memset(st, 0, sizeof(*st));
        set_word(st->mode, sizeof(st->mode), "off");
        st->status = EFS_STATUS_OFF;
        st->since_ms = wall_now_ms();
        log_debug("storage: PI_EFS_MODE=off, no storage work");
        return 0;
    }
    struct start_args args = { .cfg = cfg, .run_as = run_as };
    struct worker_result res;
    int fatal_ok = cfg->mode == EFS_MODE_REQUIRED || cfg->require_nfs;
    if (worker_run("efs-start", start_work, &args, (int)(cfg->start_timeout_s * 1000u), &res) < 0) {
        memset(st, 0, sizeof(*st));
        st->status = EFS_STATUS_FAILED;
        efs_fmt(st->reason, sizeof(st->reason), "PI_EFS_ROOT=%s: storage preparation could not start",
                 cfg->root);
        log_error("storage preparation could not start", LF_STR("root", cfg->root));
        return fatal_ok ? EXIT_STORAGE : 0;
    }
    if (res.len != sizeof(struct start_report) ||
        ((const struct start_report *)(const void *)res.data)->magic != EFS_REPORT_MAGIC) {
        memset(st, 0, sizeof(*st));
        set_word(st->mode, sizeof(st->mode), cfg->mode == EFS_MODE_REQUIRED ? "managed" : "?");
        st->status = EFS_STATUS_FAILED;
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
    svc->scan = rep.plan;
    if (rep.rc == EXIT_STORAGE) {
        log_error("storage is not usable", LF_STR("error", st->reason),
                  LF_STR("mode", cfg->mode == EFS_MODE_REQUIRED ? "required" : "auto"));
        return EXIT_STORAGE;
    }
    if (st->status == EFS_STATUS_FAILED)
        log_error("storage failed: readiness will fail", LF_STR("error", st->reason));
    else
        log_info("storage ready", LF_STR("mode", st->mode), LF_STR("fs_type", st->fs_type),
                 LF_INT("folders", svc->scan.nscan));
    return 0;
}

bool efs_ready(const struct efs_config *cfg, const struct agent_state *state, const char **why)
{
    static char reason[STATE_REASON_MAX + 32];
    const struct efs_state *st = &state->efs;
    if (!efs_status_blocks_readiness(st->status, cfg->over_budget_fail))
        return true;
    if (st->status == EFS_STATUS_FAILED) {
        snprintf(reason, sizeof(reason), "storage failed: %s", st->reason);
        if (why)
            *why = reason;
        return false;
    }
    snprintf(reason, sizeof(reason), "storage over budget: %llu of %llu bytes",
             (unsigned long long)st->total_bytes, (unsigned long long)st->budget_bytes);
    if (why)
        *why = reason;
    return false;
}

