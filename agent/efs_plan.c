/* efs_plan: the planning pass and the driver that takes a plan through its
 * phases. See efs_plan.h. */
#include "efs_plan.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "efs_seed.h"
#include "loop.h"
#include "state.h"

/* ---- planning (reads only) ------------------------------------------------ */

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

/* Where a folder's seed comes from: the image's own folder, or what a
 * killed start moved aside, or what `pi-agent image-links` moved to the seed
 * location at build. */
static void plan_seed(const struct efs_config *cfg, const struct efs_link *l,
                      struct efs_plan_folder *r)
{
    struct stat bst;
    r->seed = false;
    if (r->state == EFS_LINK_DIRECTORY) {
        snprintf(r->seed_from, sizeof(r->seed_from), "%s", l->path);
        r->seed = true;
        return;
    }
    if (r->state == EFS_LINK_MISSING || r->state == EFS_LINK_OTHER_LINK) {
        efs_image_backup_path(l->path, r->seed_from, sizeof(r->seed_from));
        if (lstat(r->seed_from, &bst) == 0 && S_ISDIR(bst.st_mode)) {
            r->seed = true;
            return;
        }
    }
    if (r->state != EFS_LINK_MOUNT_POINT && r->state != EFS_LINK_NOT_DIR) {
        efs_fmt(r->seed_from, sizeof(r->seed_from), "%s/%s", cfg->seed_dir, l->name);
        r->seed = lstat(r->seed_from, &bst) == 0 && S_ISDIR(bst.st_mode);
    }
}

void efs_plan_beneath_root(struct efs_plan *plan)
{
    const struct efs_config *cfg = plan->cfg;
    plan->beneath_root = true;
    plan->nseed = 0;
    for (int i = 0; i < cfg->links.count; i++) {
        const struct efs_link *l = &cfg->links.link[i];
        struct efs_plan_folder *r = &plan->row[i];
        efs_fmt(r->folder, sizeof(r->folder), "%s/%s", cfg->root, l->name);
        r->inspect_errno = 0;
        if (efs_link_inspect(l->path, r->folder, &r->state) < 0) {
            r->inspect_errno = errno;
            r->state = EFS_LINK_NOT_DIR;
        }
        struct stat fst;
        r->exists = lstat(r->folder, &fst) == 0;
        r->is_dir = r->exists && S_ISDIR(fst.st_mode);
        r->uid = r->exists ? fst.st_uid : 0;
        plan_seed(cfg, l, r);
        if (r->seed && r->inspect_errno == 0)
            plan->nseed++;
    }
}

void efs_plan_make(const struct efs_config *cfg, const struct run_as *run_as,
                   struct efs_plan *plan)
{
    plan->cfg = cfg;
    plan->run_as = run_as;
    plan->root_what[0] = '\0';
    plan->root_missing = plan->root_not_dir = plan->beneath_root = false;
    plan->nmounted = plan->nseed = 0;
    if (cfg->mode == EFS_MODE_OFF) {
        plan->layout = EFS_LAYOUT_OFF;
        return;
    }
    if (efs_is_mount_point(cfg->root, NULL, 0) == 1) {
        plan->layout = EFS_LAYOUT_MANAGED;
        efs_plan_beneath_root(plan);
        return;
    }
    describe_missing_root(cfg->root, plan->root_what, sizeof(plan->root_what));
    if (cfg->mode == EFS_MODE_REQUIRED) {
        plan->layout = EFS_LAYOUT_REFUSED;
        return;
    }
    for (int i = 0; i < cfg->links.count; i++) {
        plan->row[i].mounted = efs_is_mount_point(cfg->links.link[i].path, NULL, 0) == 1;
        plan->nmounted += plan->row[i].mounted;
    }
    if (plan->nmounted == 0 && image_linked(cfg)) {
        plan->layout = EFS_LAYOUT_STAND_IN;
        struct stat rst;
        if (lstat(cfg->root, &rst) < 0)
            plan->root_missing = true;
        else if (!S_ISDIR(rst.st_mode))
            plan->root_not_dir = true;
        else
            efs_plan_beneath_root(plan);
    } else {
        plan->layout = plan->nmounted > 0 ? EFS_LAYOUT_PER_FOLDER : EFS_LAYOUT_EPHEMERAL;
    }
}

/* ---- shared by the phases ------------------------------------------------- */

/* A word into a state field (the fields are sized for the words). */
static void set_word(char *dst, size_t cap, const char *word)
{
    size_t n = strnlen(word, cap - 1);
    memcpy(dst, word, n);
    dst[n] = '\0';
}

void efs_say(struct efs_prep *p, enum efs_level level, const char *check, const char *fmt, ...)
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

void efs_phase_scan_add(struct efs_prep *p, const char *name, const char *path)
{
    struct efs_scan_set *scan = p->scan;
    int i = scan->nscan++;
    snprintf(scan->names[i], sizeof(scan->names[i]), "%s", name);
    snprintf(scan->paths[i], sizeof(scan->paths[i]), "%s", path);
    snprintf(p->st->folders[i].name, sizeof(p->st->folders[i].name), "%s", name);
    p->st->nfolders = scan->nscan;
}

/* A dashboard path that is its own mount point: left as it is. */
void efs_phase_mounted_path(struct efs_prep *p, int i, const char *check)
{
    const struct efs_config *cfg = p->plan->cfg;
    const struct efs_link *l = &cfg->links.link[i];
    char fstype[32] = "?";
    bool nfs = false;
    if (efs_fs_type(l->path, fstype, sizeof(fstype), &nfs) < 0) {
        efs_say(p, EFS_FAIL, check, "%s: cannot read the file system: %s", l->path,
                strerror(errno));
        return;
    }
    if (p->st->fs_type[0] == '\0')
        set_word(p->st->fs_type, sizeof(p->st->fs_type), fstype);
    if (!nfs && cfg->require_nfs)
        efs_say(p, EFS_FAIL, check,
                "%s is a mount point on %s, not NFS (PI_EFS_REQUIRE_NFS=true)", l->path, fstype);
    else
        efs_say(p, nfs ? EFS_OK : EFS_WARN, check, "%s is a mount point (%s): left as it is%s",
                l->path, fstype, nfs ? "" : "; not NFS, fine for local testing only");
}

bool efs_phase_row(struct efs_prep *p, int i, const char *check, struct efs_probe_set *probe)
{
    const struct efs_link *l = &p->plan->cfg->links.link[i];
    const struct efs_plan_folder *r = &p->plan->row[i];
    if (r->inspect_errno) {
        efs_say(p, EFS_FAIL, check, "%s: cannot inspect: %s", l->path, strerror(r->inspect_errno));
        return true;
    }
    if (r->state == EFS_LINK_MOUNT_POINT) {
        efs_phase_mounted_path(p, i, check);
        efs_phase_scan_add(p, l->name, l->path);
        efs_probe_add(probe, l->path, check);
        return true;
    }
    efs_phase_scan_add(p, l->name, r->folder);
    return false;
}

bool efs_phase_link_settled(struct efs_prep *p, int i, const char *check)
{
    const struct efs_link *l = &p->plan->cfg->links.link[i];
    const struct efs_plan_folder *r = &p->plan->row[i];
    switch (r->state) {
    case EFS_LINK_MOUNT_POINT:
        return true;
    case EFS_LINK_NOT_DIR:
        efs_say(p, EFS_FAIL, check, "%s exists and is not a folder; it is not replaced", l->path);
        return true;
    case EFS_LINK_OK:
        efs_say(p, EFS_OK, check, "%s -> %s", l->path, r->folder);
        return true;
    default:
        return false;
    }
}

void efs_probe_add(struct efs_probe_set *probe, const char *dir, const char *check)
{
    probe->dirs[probe->n] = dir;
    probe->checks[probe->n++] = check;
}

void efs_phase_probe(struct efs_prep *p, const struct efs_probe_set *probe)
{
    const char *const *dirs = probe->dirs;
    const char *const *checks = probe->checks;
    int n = probe->n;
    const struct run_as *run_as = p->plan->run_as;
    bool ok[EFS_LINKS_MAX + 1];
    char msg[512];
    if (n == 0)
        return;
    int failures = efs_write_probe(dirs, n, run_as, ok, msg, sizeof(msg));
    if (failures < 0) {
        efs_say(p, EFS_FAIL, "permissions", "write probe could not run: %s", msg);
        return;
    }
    const char *who = run_as && run_as->set ? (run_as->user[0] ? run_as->user : "run-as user")
                                            : "the agent's user";
    bool first = true;
    for (int i = 0; i < n; i++) {
        if (ok[i])
            continue;
        /* msg holds the reason of the first failure only */
        efs_say(p, EFS_FAIL, checks[i], "%s is not writable by %s (write probe failed%s%s)",
                dirs[i], who, first ? ": " : "", first ? msg : "");
        first = false;
    }
}

/* ---- the driver ------------------------------------------------------------ */

/* The root's file system: NFS is what EFS is; anything else is for testing. */
static void root_phase(struct efs_prep *p)
{
    const struct efs_config *cfg = p->plan->cfg;
    char fstype[32] = "?";
    bool nfs = false;
    if (efs_fs_type(cfg->root, fstype, sizeof(fstype), &nfs) < 0) {
        efs_say(p, EFS_FAIL, "root", "PI_EFS_ROOT=%s: cannot read the file system: %s",
                cfg->root, strerror(errno));
        return;
    }
    set_word(p->st->fs_type, sizeof(p->st->fs_type), fstype);
    if (nfs)
        efs_say(p, EFS_OK, "root", "PI_EFS_ROOT=%s is a mount point (%s)", cfg->root, fstype);
    else if (cfg->require_nfs)
        efs_say(p, EFS_FAIL, "root",
                "PI_EFS_ROOT=%s is a mount point on %s, not NFS (PI_EFS_REQUIRE_NFS=true)",
                cfg->root, fstype);
    else
        efs_say(p, EFS_WARN, "root",
                "PI_EFS_ROOT=%s is a mount point on %s, not NFS: fine for local testing only",
                cfg->root, fstype);
}

static void run_managed(struct efs_prep *p, const struct efs_phases *ph)
{
    void (*const steps[])(struct efs_prep *) = { root_phase, ph->agent_dir, ph->folders,
                                                 ph->seed, ph->links };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        steps[i](p);
        if (p->failures)
            return;
    }
}

/* The image's folders link into PI_EFS_ROOT but nothing is mounted there (a
 * plain `docker run`): without folders behind the links the dashboard would
 * have no themes or keys at all, so the root becomes a local folder, laid out
 * and seeded as EFS would be. Its content goes with the container. */
static void run_stand_in(struct efs_prep *p, const struct efs_phases *ph)
{
    const struct efs_plan *plan = p->plan;
    const struct efs_config *cfg = plan->cfg;
    struct efs_state *st = p->st;
    set_word(st->mode, sizeof(st->mode), "ephemeral");
    st->status = EFS_STATUS_EPHEMERAL;
    efs_fmt(st->reason, sizeof(st->reason), "PI_EFS_ROOT=%s %s: storage is ephemeral", cfg->root,
            plan->root_what);
    if (cfg->require_nfs) {
        efs_say(p, EFS_FAIL, "root",
                "PI_EFS_ROOT=%s %s and the image's folders link into it (PI_EFS_REQUIRE_NFS=true)",
                cfg->root, plan->root_what);
        return;
    }
    efs_say(p, EFS_WARN, "root",
            "PI_EFS_ROOT=%s %s and the image's folders link into it (pi-agent image-links): a "
            "local folder stands in, and its content will be lost with the container",
            cfg->root, plan->root_what);
    if (plan->root_not_dir) {
        efs_say(p, EFS_FAIL, "root", "PI_EFS_ROOT=%s exists and is not a folder", cfg->root);
        return;
    }
    if (plan->root_missing) {
        ph->root(p);
        if (p->failures || !plan->beneath_root)
            return;
    }
    run_managed(p, ph);
    /* The managed phases speak of a mount; the status stays ephemeral. */
    if (p->failures == 0) {
        st->status = EFS_STATUS_EPHEMERAL;
        efs_fmt(st->reason, sizeof(st->reason), "PI_EFS_ROOT=%s %s: storage is ephemeral",
                cfg->root, plan->root_what);
    }
}

/* Dashboard paths that are mount points themselves are checked and measured
 * where they are; the others are warned about. Nothing is created. */
static void run_per_folder(struct efs_prep *p)
{
    const struct efs_config *cfg = p->plan->cfg;
    struct efs_probe_set probe = { .n = 0 };
    char checks[EFS_LINKS_MAX][48];
    set_word(p->st->mode, sizeof(p->st->mode), "per-folder");
    efs_say(p, EFS_OK, "root",
            "PI_EFS_ROOT=%s %s; %d dashboard folder(s) are mount points themselves: they are "
            "checked and measured where they are",
            cfg->root, p->plan->root_what, p->plan->nmounted);
    for (int i = 0; i < cfg->links.count; i++) {
        const struct efs_link *l = &cfg->links.link[i];
        snprintf(checks[i], sizeof(checks[i]), "folder %s", l->name);
        if (!p->plan->row[i].mounted) {
            efs_say(p, EFS_WARN, checks[i],
                    "%s is not a mount point: its content will be lost with the container",
                    l->path);
            continue;
        }
        efs_phase_mounted_path(p, i, checks[i]);
        efs_phase_scan_add(p, l->name, l->path);
        efs_probe_add(&probe, l->path, checks[i]);
    }
    efs_phase_probe(p, &probe);
}

static void run_ephemeral(struct efs_prep *p)
{
    const struct efs_config *cfg = p->plan->cfg;
    const char *what = p->plan->root_what;
    set_word(p->st->mode, sizeof(p->st->mode), "ephemeral");
    p->st->status = EFS_STATUS_EPHEMERAL;
    if (cfg->require_nfs)
        efs_say(p, EFS_FAIL, "root",
                "PI_EFS_ROOT=%s %s and no dashboard folder is a mount point "
                "(PI_EFS_REQUIRE_NFS=true)", cfg->root, what);
    else
        efs_say(p, EFS_WARN, "root",
                "PI_EFS_ROOT=%s %s and no dashboard folder is a mount point: themes, images, "
                "files, keys and the other folders will be lost with the container",
                cfg->root, what);
    efs_fmt(p->st->reason, sizeof(p->st->reason), "PI_EFS_ROOT=%s %s: storage is ephemeral",
            cfg->root, what);
}

/* The status and exit code the phases leave: failed (73 when the settings
 * require storage), or pending until the first budget scan. */
static int conclude(struct efs_prep *p)
{
    const struct efs_config *cfg = p->plan->cfg;
    struct efs_state *st = p->st;
    if (p->failures > 0) {
        st->status = EFS_STATUS_FAILED;
        if (strcmp(st->mode, "managed") == 0 && strncmp(st->reason, "PI_EFS_ROOT=", 12) != 0) {
            char detail[STATE_REASON_MAX];
            snprintf(detail, sizeof(detail), "%s", st->reason);
            efs_fmt(st->reason, sizeof(st->reason), "PI_EFS_ROOT=%s: %s", cfg->root, detail);
        }
        return cfg->mode == EFS_MODE_REQUIRED || cfg->require_nfs ? EXIT_STORAGE : 0;
    }
    if (st->status == EFS_STATUS_UNKNOWN) {
        st->status = EFS_STATUS_PENDING;
        st->reason[0] = '\0';
    }
    return 0;
}

static int run_plan(struct efs_plan *plan, const struct efs_phases *ph, efs_report_fn report,
                    void *ctx, struct efs_state *st, struct efs_scan_set *scan)
{
    const struct efs_config *cfg = plan->cfg;
    struct efs_prep p = { .plan = plan, .report = report, .ctx = ctx, .st = st, .scan = scan };
    memset(st, 0, sizeof(*st));
    scan->nscan = 0;
    st->budget_bytes = cfg->budget_bytes;
    st->since_ms = wall_now_ms();
    switch (plan->layout) {
    case EFS_LAYOUT_OFF:
        set_word(st->mode, sizeof(st->mode), "off");
        st->status = EFS_STATUS_OFF;
        efs_say(&p, EFS_OK, "storage", "PI_EFS_MODE=off: no storage work");
        return 0;
    case EFS_LAYOUT_MANAGED:
        set_word(st->mode, sizeof(st->mode), "managed");
        run_managed(&p, ph);
        break;
    case EFS_LAYOUT_REFUSED:
        set_word(st->mode, sizeof(st->mode), "managed");
        efs_say(&p, EFS_FAIL, "root",
                "PI_EFS_ROOT=%s %s; PI_EFS_MODE=required needs the EFS root mounted there",
                cfg->root, plan->root_what);
        break;
    case EFS_LAYOUT_STAND_IN:
        run_stand_in(&p, ph);
        break;
    case EFS_LAYOUT_PER_FOLDER:
        run_per_folder(&p);
        break;
    case EFS_LAYOUT_EPHEMERAL:
        run_ephemeral(&p);
        break;
    }
    return conclude(&p);
}

/* The plan (about 130 KiB of paths) lives only while it is carried out. */
static int plan_and_run(const struct efs_config *cfg, const struct run_as *run_as,
                        const struct efs_phases *ph, efs_report_fn report, void *ctx,
                        struct efs_state *st, struct efs_scan_set *scan)
{
    struct efs_plan *plan = calloc(1, sizeof(*plan));
    if (!plan) {
        memset(st, 0, sizeof(*st));
        scan->nscan = 0;
        st->status = EFS_STATUS_FAILED;
        efs_fmt(st->reason, sizeof(st->reason), "PI_EFS_ROOT=%s: out of memory for the plan",
                cfg->root);
        return cfg->mode == EFS_MODE_REQUIRED || cfg->require_nfs ? EXIT_STORAGE : 0;
    }
    efs_plan_make(cfg, run_as, plan);
    int rc = run_plan(plan, ph, report, ctx, st, scan);
    free(plan);
    return rc;
}

int efs_prepare(const struct efs_config *cfg, const struct run_as *run_as,
                efs_report_fn report, void *report_ctx, struct efs_state *st,
                struct efs_scan_set *scan)
{
    return plan_and_run(cfg, run_as, &efs_start_phases, report, report_ctx, st, scan);
}

int efs_check_storage(const struct efs_config *cfg, const struct run_as *run_as,
                      efs_report_fn report, void *report_ctx, struct efs_state *st,
                      struct efs_scan_set *scan)
{
    return plan_and_run(cfg, run_as, &efs_check_phases, report, report_ctx, st, scan);
}

int efs_plan_seed_sources(const struct efs_plan *plan, struct efs_seed_source *src)
{
    int n = 0;
    for (int i = 0; i < plan->cfg->links.count; i++) {
        const struct efs_plan_folder *r = &plan->row[i];
        if (!r->seed || r->inspect_errno)
            continue;
        src[n].name = plan->cfg->links.link[i].name;
        src[n].src = r->seed_from;
        src[n].dst = r->folder;
        n++;
    }
    return n;
}
