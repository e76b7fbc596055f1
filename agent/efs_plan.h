/* efs_plan: storage as plan, then act.
 *
 * efs_plan_make is the planning pass: it only reads (lstat, statfs,
 * mountinfo, the seed marker) and records what exists and what a start will
 * do with it: which layout applies, which folders exist or will be created,
 * which dashboard paths will be linked or are refused, where the image's
 * content to seed comes from. Nothing is created, moved, seeded or linked.
 *
 * Two sets of phases take a plan to the end, one function per phase, in the
 * same order: agent folder, folders (and the write probe), seed, links.
 * `pi-agent check` shows the plan (efs_check_phases: what a start would do,
 * the write probes as the only writes, their files removed); a start carries
 * it out (efs_start_phases). Both report one line per check through an
 * efs_report_fn and fill the same efs_state. The driver is efs_prepare and
 * efs_check_storage (efs.h). */
#ifndef PI_EFS_PLAN_H
#define PI_EFS_PLAN_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

#include "efs.h"

enum efs_layout {
    EFS_LAYOUT_OFF,        /* PI_EFS_MODE=off: no storage work */
    EFS_LAYOUT_MANAGED,    /* the root is a mount point: folders under it, linked */
    EFS_LAYOUT_STAND_IN,   /* nothing mounted but the image links into the root:
                              a local folder stands in, laid out as EFS (ephemeral) */
    EFS_LAYOUT_PER_FOLDER, /* the dashboard paths are mount points themselves */
    EFS_LAYOUT_EPHEMERAL,  /* nothing mounted: content goes with the container */
    EFS_LAYOUT_REFUSED,    /* PI_EFS_MODE=required and the root is not mounted */
};

/* One row of the folder table (cfg->links.link[i]). */
struct efs_plan_folder {
    enum efs_link_state state; /* the dashboard path against its folder */
    int inspect_errno;         /* the dashboard path could not be inspected: why */
    bool mounted;              /* per-folder layout: the dashboard path is a mount point */
    char folder[PATH_MAX];     /* ROOT/NAME */
    bool exists;               /* the folder: something stands there */
    bool is_dir;               /* ... and it is a folder */
    uid_t uid;                 /* ... owned by */
    bool seed;                 /* the image's content is seeded from seed_from */
    char seed_from[PATH_MAX];  /* the image's folder, what a killed start moved aside,
                                  or PI_EFS_SEED_DIR/NAME (`pi-agent image-links`) */
};

struct efs_plan {
    const struct efs_config *cfg;
    const struct run_as *run_as;  /* NULL: Tomcat runs as the agent's user */
    enum efs_layout layout;
    char root_what[128];          /* what stands at the root when it is not mounted */
    bool root_missing;            /* stand-in: the root will be created */
    bool root_not_dir;            /* stand-in: something else stands there (refused) */
    bool beneath_root;            /* the rows below were planned (the root exists) */
    int nmounted;                 /* per-folder layout: dashboard paths mounted */
    int nseed;                    /* rows with seed set */
    struct efs_plan_folder row[EFS_LINKS_MAX];
};

/* The planning pass: fills plan (it keeps cfg and run_as, which must outlive
 * it). Reads only. */
void efs_plan_make(const struct efs_config *cfg, const struct run_as *run_as,
                   struct efs_plan *plan);
/* The rows beneath the root, once it exists (efs_plan_make does it when it
 * does; a start that created the stand-in root calls it then). */
void efs_plan_beneath_root(struct efs_plan *plan);

/* The folders the plan seeds, with where each is seeded from, into src
 * (room for EFS_LINKS_MAX). Returns how many. */
struct efs_seed_source;
int efs_plan_seed_sources(const struct efs_plan *plan, struct efs_seed_source *src);

/* What a phase works with: the plan, the report and what it fills. */
struct efs_prep {
    struct efs_plan *plan;
    efs_report_fn report;
    void *ctx;
    struct efs_state *st;
    struct efs_scan_set *scan;
    int failures;                 /* lines at EFS_FAIL so far */
};

/* One line: to the report, and the first failure becomes st->reason. */
void efs_say(struct efs_prep *p, enum efs_level level, const char *check, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The phases of the managed layout, in order. Each reads the plan and adds
 * to p; the driver stops after a phase that failed. */
struct efs_phases {
    void (*root)(struct efs_prep *p);      /* stand-in layout: the missing root */
    void (*agent_dir)(struct efs_prep *p); /* ROOT/.pi-agent */
    void (*folders)(struct efs_prep *p);   /* ROOT/NAME and the write probe */
    void (*seed)(struct efs_prep *p);      /* the image's content */
    void (*links)(struct efs_prep *p);     /* dashboard paths to their folders */
};
extern const struct efs_phases efs_start_phases; /* efs_act.c: carries the plan out */
extern const struct efs_phases efs_check_phases; /* efs_show.c: says what a start would do */

/* Shared by both sets of phases. */
struct efs_probe_set { /* folders for one write probe, with their check names */
    int n;
    const char *dirs[EFS_LINKS_MAX + 1];
    const char *checks[EFS_LINKS_MAX + 1];
};
void efs_probe_add(struct efs_probe_set *probe, const char *dir, const char *check);
/* Runs the write probe as the run-as user; a folder it cannot write fails. */
void efs_phase_probe(struct efs_prep *p, const struct efs_probe_set *probe);
/* The part of a row both phases share: a dashboard path that could not be
 * inspected fails; one that is a mount point is checked where it is, measured
 * and probed. Returns true when that settled the row; otherwise ROOT/NAME is
 * added to the budget's folders and the caller deals with it. */
bool efs_phase_row(struct efs_prep *p, int i, const char *check, struct efs_probe_set *probe);
/* A link row both phases settle alike: a mount point is left alone, a file
 * is refused, a link already right is said. Returns false for the rows to
 * link. */
bool efs_phase_link_settled(struct efs_prep *p, int i, const char *check);
void efs_phase_mounted_path(struct efs_prep *p, int i, const char *check);
void efs_phase_scan_add(struct efs_prep *p, const char *name, const char *path);

#endif
