/* efs_act: a start carries the plan out, one function per phase (see
 * efs_plan.h). Runs in the start worker, as root. */
#include "efs_plan.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "efs_seed.h"
#include "fsafe.h"

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

/* The stand-in root is created; what lies beneath it is planned then. */
static void make_root(struct efs_prep *p)
{
    const char *root = p->plan->cfg->root;
    if (mkdir_parents_and(root) < 0) {
        efs_say(p, EFS_FAIL, "root", "PI_EFS_ROOT=%s cannot be created: %s%s", root,
                strerror(errno),
                errno == EROFS ? " (with a read-only root, mount the EFS root there)" : "");
        return;
    }
    efs_plan_beneath_root(p->plan);
}

/* ROOT/.pi-agent is the agent's own folder: whatever else stands there is
 * moved aside (warn); when that cannot be done, storage fails. */
static void make_agent_dir(struct efs_prep *p)
{
    const char *root = p->plan->cfg->root;
    char moved[NAME_MAX + 340], msg[700];
    int fd = efs_agent_dir(root, moved, sizeof(moved), msg, sizeof(msg));
    if (fd < 0) {
        efs_say(p, EFS_FAIL, "agent folder", "%s", msg);
        return;
    }
    close(fd);
    if (msg[0])
        efs_say(p, EFS_WARN, "agent folder", "%s", msg);
    if (moved[0])
        efs_say(p, EFS_WARN, "agent folder",
                "%s/%s was not the agent's own folder (root's, mode 0700, not a link): moved "
                "aside to %s/%s; nothing in it was used", root, EFS_AGENT_DIR, root, moved);
}

static void make_folders(struct efs_prep *p)
{
    const struct efs_config *cfg = p->plan->cfg;
    struct efs_probe_set probe = { .n = 0 };
    char checks[EFS_LINKS_MAX][48];
    for (int i = 0; i < cfg->links.count; i++) {
        const struct efs_plan_folder *r = &p->plan->row[i];
        snprintf(checks[i], sizeof(checks[i]), "folder %s", cfg->links.link[i].name);
        if (efs_phase_row(p, i, checks[i], &probe))
            continue;
        char msg[512];
        if (efs_ensure_folder(r->folder, p->plan->run_as, msg, sizeof(msg)) < 0) {
            efs_say(p, EFS_FAIL, checks[i], "%s", msg);
            continue;
        }
        efs_probe_add(&probe, r->folder, checks[i]);
    }
    efs_phase_probe(p, &probe);
}

static void make_seed(struct efs_prep *p)
{
    const struct efs_config *cfg = p->plan->cfg;
    struct efs_seed_source src[EFS_LINKS_MAX];
    int nsrc = efs_plan_seed_sources(p->plan, src);
    if (nsrc == 0)
        return;
    struct efs_seed_result res;
    int rc = efs_seed_run(cfg->root, src, nsrc, p->plan->run_as, &res);
    if (res.odd)
        efs_say(p, EFS_WARN, "seed",
                "%llu entr%s on EFS left as they were and not followed (a symlink, a file with "
                "several links, or not a folder where the image has one): first %s",
                (unsigned long long)res.odd, res.odd == 1 ? "y" : "ies", res.first_odd);
    if (res.moved_aside[0])
        efs_say(p, EFS_WARN, "agent folder", "%s/%s: moved aside, not used: %s", cfg->root,
                EFS_AGENT_DIR, res.moved_aside);
    if (rc < 0)
        efs_say(p, EFS_FAIL, "seed", "seeding failed (%llu error(s)): %s",
                (unsigned long long)res.err.count, res.err.msg);
    else if (res.skipped)
        efs_say(p, EFS_OK, "seed", "image defaults already seeded (version %s)", res.version);
    else
        efs_say(p, EFS_OK, "seed",
                "image defaults seeded (version %s): %llu copied, %llu kept, %llu folder(s) "
                "created, %llu leftover temporaries removed",
                res.version, (unsigned long long)res.copied, (unsigned long long)res.kept,
                (unsigned long long)res.dirs_created, (unsigned long long)res.temps_removed);
}

static void make_links(struct efs_prep *p)
{
    const struct efs_config *cfg = p->plan->cfg;
    for (int i = 0; i < cfg->links.count; i++) {
        const struct efs_link *l = &cfg->links.link[i];
        const struct efs_plan_folder *r = &p->plan->row[i];
        char check[48];
        snprintf(check, sizeof(check), "link %s", l->name);
        if (efs_phase_link_settled(p, i, check))
            continue;
        char msg[512];
        if (efs_link_replace(l->path, r->folder, msg, sizeof(msg)) < 0)
            efs_say(p, EFS_FAIL, check, "%s%s", msg,
                    strstr(msg, strerror(EROFS)) ? " (for a read-only root, build the image "
                                                   "with `pi-agent image-links`: docs/ecs.md)"
                                                 : "");
        else
            efs_say(p, EFS_OK, check, "%s -> %s", l->path, r->folder);
    }
}

const struct efs_phases efs_start_phases = {
    .root = make_root,
    .agent_dir = make_agent_dir,
    .folders = make_folders,
    .seed = make_seed,
    .links = make_links,
};
