/* efs_show: `pi-agent check` shows the plan, one function per phase (see
 * efs_plan.h): what exists and what a start would create, seed and link.
 * Nothing is written but the write probes' own files, which they remove. */
#include "efs_plan.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "efs_seed.h"
#include "fsafe.h"
#include "util.h"

static void show_root(struct efs_prep *p)
{
    efs_say(p, EFS_OK, "root", "%s will be created", p->plan->cfg->root);
}

/* What stands at ROOT/.pi-agent, when it is not the agent's own folder. */
static void show_agent_dir(struct efs_prep *p)
{
    const char *root = p->plan->cfg->root;
    int rootfd = fsafe_open_dir_trusted(root, false);
    if (rootfd < 0) {
        efs_say(p, EFS_FAIL, "agent folder", "PI_EFS_ROOT=%s: cannot open: %s", root,
                strerror(errno));
        return;
    }
    struct stat st;
    if (fstatat(rootfd, EFS_AGENT_DIR, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        !(S_ISDIR(st.st_mode) && fsafe_owner_ok(rootfd, st.st_uid) &&
          (st.st_mode & (S_IWGRP | S_IWOTH)) == 0)) {
        char what[320];
        fsafe_describe(rootfd, EFS_AGENT_DIR, what, sizeof(what));
        efs_say(p, EFS_WARN, "agent folder",
                "%s/%s is %s, not the agent's own folder (root's, mode 0700): a start moves it "
                "aside as %s.refused-RANDOM", root, EFS_AGENT_DIR, what, EFS_AGENT_DIR);
    }
    close(rootfd);
}

static void show_folders(struct efs_prep *p)
{
    const struct efs_config *cfg = p->plan->cfg;
    const struct run_as *run_as = p->plan->run_as;
    struct efs_probe_set probe = { .n = 0 };
    char checks[EFS_LINKS_MAX][48];
    int root_writable = -1; /* probed once, for the first missing folder */
    char root_msg[512] = "";
    for (int i = 0; i < cfg->links.count; i++) {
        const struct efs_plan_folder *r = &p->plan->row[i];
        snprintf(checks[i], sizeof(checks[i]), "folder %s", cfg->links.link[i].name);
        if (efs_phase_row(p, i, checks[i], &probe))
            continue;
        if (!r->exists) {
            /* Folders are created by the agent itself: the root must be
             * writable to it. */
            if (root_writable < 0) {
                const char *dirs[1] = { cfg->root };
                bool ok = false;
                root_writable = efs_write_probe(dirs, 1, NULL, &ok, root_msg,
                                                sizeof(root_msg)) == 0;
            }
            if (root_writable)
                efs_say(p, EFS_OK, checks[i], "%s will be created", r->folder);
            else
                efs_say(p, EFS_FAIL, checks[i], "%s is missing and cannot be created (%s)",
                        r->folder, root_msg);
            continue;
        }
        if (!r->is_dir)
            efs_say(p, EFS_FAIL, checks[i], "%s exists and is not a folder", r->folder);
        else if (run_as && run_as->set && r->uid != run_as->uid)
            efs_say(p, EFS_WARN, checks[i], "%s is owned by uid %u, not %s; a start gives it over",
                    r->folder, (unsigned)r->uid, run_as->user);
        else
            efs_say(p, EFS_OK, checks[i], "%s exists", r->folder);
        if (r->is_dir)
            efs_probe_add(&probe, r->folder, checks[i]);
    }
    efs_phase_probe(p, &probe);
}

/* The seed marker, read beneath the root without following a link. */
static long read_marker(const char *root, char *buf, size_t cap)
{
    int rootfd = fsafe_open_dir_trusted(root, false);
    if (rootfd < 0)
        return 0;
    int fd = fsafe_openat(rootfd, EFS_SEED_MARKER, O_RDONLY | O_NONBLOCK, 0);
    close(rootfd);
    if (fd < 0)
        return 0;
    struct stat st;
    long n = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        n = util_read_fd(fd, buf, cap);
    close(fd);
    return n > 0 ? n : 0;
}

static void show_seed(struct efs_prep *p)
{
    const struct efs_config *cfg = p->plan->cfg;
    struct efs_seed_source src[EFS_LINKS_MAX];
    int nsrc = efs_plan_seed_sources(p->plan, src);
    char version[17];
    if (nsrc == 0 || efs_seed_fingerprint(src, nsrc, version) != 0)
        return;
    char buf[512] = "";
    long n = read_marker(cfg->root, buf, sizeof(buf));
    if (n > 0 && efs_seed_marker_matches(buf, (size_t)n, version))
        efs_say(p, EFS_OK, "seed", "image defaults already seeded (version %s)", version);
    else
        efs_say(p, EFS_OK, "seed", "image defaults of %d folder(s) will be seeded (version %s)",
                nsrc, version);
}

static void show_links(struct efs_prep *p)
{
    const struct efs_config *cfg = p->plan->cfg;
    for (int i = 0; i < cfg->links.count; i++) {
        const struct efs_link *l = &cfg->links.link[i];
        const struct efs_plan_folder *r = &p->plan->row[i];
        char check[48];
        snprintf(check, sizeof(check), "link %s", l->name);
        if (efs_phase_link_settled(p, i, check))
            continue;
        efs_say(p, r->state == EFS_LINK_OTHER_LINK ? EFS_WARN : EFS_OK, check,
                "%s (%s) will be linked to %s", l->path, efs_link_state_name(r->state), r->folder);
    }
}

const struct efs_phases efs_check_phases = {
    .root = show_root,
    .agent_dir = show_agent_dir,
    .folders = show_folders,
    .seed = show_seed,
    .links = show_links,
};
