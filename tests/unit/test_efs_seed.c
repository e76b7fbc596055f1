/* Unit tests for seeding and layout on a real (temporary) directory tree:
 * copy-if-absent, byte-for-byte preservation of customer files, the marker,
 * leftovers of a killed seed, eight seeders at once, symlinks on EFS never
 * followed, folder creation and ownership, the write probe as another user,
 * the swap of an image folder for a symlink, and the start-phase decisions
 * that need no mount (ephemeral, required). */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "efs.h"
#include "efs_layout.h"
#include "efs_plan.h"
#include "efs_seed.h"
#include "state.h"

static char base[256];
static char img[512], efs[512], dst[512];

static void write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static char *read_text(const char *path)
{
    static char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    return buf;
}

static void pathf(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pathf(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, cap, fmt, ap);
    va_end(ap);
}

/* Counts entries named with the temporary prefix anywhere under dir. */
static int count_temps(const char *dir)
{
    char cmd[1024];
    pathf(cmd, sizeof(cmd), "find '%s' -name '.pi-agent-tmp.*' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int n = -1;
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

static int setup(void **s)
{
    (void)s;
    snprintf(base, sizeof(base), "/tmp/pi-efs-seed-XXXXXX");
    assert_non_null(mkdtemp(base));
    assert_int_equal(chmod(base, 0755), 0);
    pathf(img, sizeof(img), "%s/image-themes", base);
    pathf(efs, sizeof(efs), "%s/efs", base);
    pathf(dst, sizeof(dst), "%s/efs/themes", base);
    assert_int_equal(mkdir(img, 0755), 0);
    assert_int_equal(mkdir(efs, 0755), 0);
    assert_int_equal(mkdir(dst, 0755), 0);
    char p[1024];
    pathf(p, sizeof(p), "%s/default.css", img);
    write_text(p, "body { color: black }\n");
    pathf(p, sizeof(p), "%s/dark", img);
    assert_int_equal(mkdir(p, 0755), 0);
    pathf(p, sizeof(p), "%s/dark/dark.css", img);
    write_text(p, "body { color: white }\n");
    pathf(p, sizeof(p), "%s/current", img);
    assert_int_equal(symlink("dark", p), 0);
    return 0;
}

static int teardown(void **s)
{
    (void)s;
    char cmd[1024];
    pathf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static struct efs_seed_source source(void)
{
    struct efs_seed_source src = { .name = "themes", .src = img, .dst = dst };
    return src;
}

static void seeds_everything_into_a_fresh_folder(void **s)
{
    (void)s;
    struct efs_seed_source src = source();
    struct run_as nobody = { .set = true, .uid = 65534, .gid = 65534, .user = "nobody" };
    struct efs_seed_result r;
    assert_int_equal(efs_seed_run(efs, &src, 1, &nobody, &r), 0);
    assert_false(r.skipped);
    assert_int_equal(r.err.count, 0);
    assert_int_equal(r.copied, 3); /* two files and the symlink */
    assert_int_equal(r.dirs_created, 1);
    char p[1024];
    pathf(p, sizeof(p), "%s/dark/dark.css", dst);
    assert_string_equal(read_text(p), "body { color: white }\n");
    struct stat st;
    assert_int_equal(lstat(p, &st), 0);
    assert_int_equal(st.st_uid, 65534);
    assert_int_equal(st.st_mode & 0777, 0644);
    pathf(p, sizeof(p), "%s/current", dst);
    char target[64] = "";
    assert_int_equal(readlink(p, target, sizeof(target) - 1), 4);
    assert_string_equal(target, "dark");
    pathf(p, sizeof(p), "%s/.pi-agent/seed.done", efs);
    char *marker = read_text(p);
    assert_non_null(marker);
    assert_true(efs_seed_marker_matches(marker, strlen(marker), r.version));
    assert_int_equal(count_temps(efs), 0);
}

static void never_overwrites_and_skips_a_done_version(void **s)
{
    (void)s;
    char p[1024];
    pathf(p, sizeof(p), "%s/default.css", dst);
    write_text(p, "customer's edit\n");
    struct efs_seed_source src = source();
    struct efs_seed_result r;
    assert_int_equal(efs_seed_run(efs, &src, 1, NULL, &r), 0);
    assert_int_equal(r.copied, 2);
    assert_int_equal(r.kept, 1);
    assert_string_equal(read_text(p), "customer's edit\n");

    /* Same image again: the marker says done, nothing is walked on EFS. */
    char again[600];
    pathf(again, sizeof(again), "%s/dark/dark.css", dst);
    assert_int_equal(unlink(again), 0); /* the customer removed a default */
    struct efs_seed_result r2;
    assert_int_equal(efs_seed_run(efs, &src, 1, NULL, &r2), 0);
    assert_true(r2.skipped);
    assert_string_equal(r2.version, r.version);
    assert_int_equal(access(again, F_OK), -1);

    /* A new image version seeds again, still only what is absent. */
    char added[600];
    pathf(added, sizeof(added), "%s/new.css", img);
    write_text(added, "new\n");
    struct efs_seed_result r3;
    assert_int_equal(efs_seed_run(efs, &src, 1, NULL, &r3), 0);
    assert_false(r3.skipped);
    assert_string_not_equal(r3.version, r.version);
    assert_int_equal(r3.copied, 2); /* new.css and the removed default */
    assert_string_equal(read_text(p), "customer's edit\n");
}

extern bool efs_seed_test_without_renameat2;

/* NFS has no RENAME_NOREPLACE: the link + unlink path must keep the promise. */
static void without_renameat2_link_and_unlink_never_overwrite(void **s)
{
    (void)s;
    char p[1024];
    pathf(p, sizeof(p), "%s/default.css", dst);
    write_text(p, "customer's edit\n");
    efs_seed_test_without_renameat2 = true;
    struct efs_seed_source src = source();
    struct efs_seed_result r;
    int rc = efs_seed_run(efs, &src, 1, NULL, &r);
    efs_seed_test_without_renameat2 = false;
    assert_int_equal(rc, 0);
    assert_int_equal(r.err.count, 0);
    assert_int_equal(r.copied, 2); /* dark/dark.css and the symlink */
    assert_int_equal(r.kept, 1);
    assert_string_equal(read_text(p), "customer's edit\n");
    pathf(p, sizeof(p), "%s/dark/dark.css", dst);
    assert_string_equal(read_text(p), "body { color: white }\n");
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_nlink, 1); /* the temporary name is gone */
    pathf(p, sizeof(p), "%s/current", dst);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(count_temps(efs), 0);
}

static void leftovers_of_a_killed_seed_are_removed(void **s)
{
    (void)s;
    /* What a SIGKILL mid-copy leaves: a temporary and no marker. */
    char p[1024];
    pathf(p, sizeof(p), "%s/.pi-agent-tmp.999.1", dst);
    write_text(p, "body { col");
    pathf(p, sizeof(p), "%s/dark", dst);
    assert_int_equal(mkdir(p, 0755), 0);
    pathf(p, sizeof(p), "%s/dark/.pi-agent-tmp.999.2", dst);
    write_text(p, "half");
    pathf(p, sizeof(p), "%s/.pi-agent", efs);
    assert_int_equal(mkdir(p, 0755), 0);
    pathf(p, sizeof(p), "%s/.pi-agent/.pi-agent-tmp.marker.999", efs);
    write_text(p, "seed-vers");
    assert_int_equal(count_temps(efs), 3);
    /* and the marker's own random temporary */
    pathf(p, sizeof(p), "%s/.pi-agent/.seed.done.tmp.0123456789abcdef", efs);
    write_text(p, "seed-vers");

    struct efs_seed_source src = source();
    struct efs_seed_result r;
    assert_int_equal(efs_seed_run(efs, &src, 1, NULL, &r), 0);
    assert_int_equal(r.temps_removed, 4);
    assert_int_equal(access(p, F_OK), -1);
    assert_int_equal(r.copied, 3);
    assert_int_equal(count_temps(efs), 0);
    pathf(p, sizeof(p), "%s/default.css", dst);
    assert_string_equal(read_text(p), "body { color: black }\n");
}

static void eight_seeders_at_once_seed_once(void **s)
{
    (void)s;
    /* Enough files that the seeders overlap in time. */
    for (int i = 0; i < 200; i++) {
        char p[1024];
        pathf(p, sizeof(p), "%s/file-%03d.css", img, i);
        write_text(p, "x\n");
    }
    pid_t pids[8];
    int fds[8][2];
    for (int i = 0; i < 8; i++) {
        assert_int_equal(pipe(fds[i]), 0);
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            struct efs_seed_source src = source();
            struct efs_seed_result r;
            int rc = efs_seed_run(efs, &src, 1, NULL, &r);
            if (write(fds[i][1], &r, sizeof(r)) != (ssize_t)sizeof(r))
                _exit(3);
            _exit(rc == 0 ? 0 : 1);
        }
        close(fds[i][1]);
    }
    int seeded = 0, skipped = 0;
    uint64_t copied = 0;
    for (int i = 0; i < 8; i++) {
        struct efs_seed_result r;
        assert_int_equal(read(fds[i][0], &r, sizeof(r)), (ssize_t)sizeof(r));
        close(fds[i][0]);
        int status;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(r.err.count, 0);
        if (r.skipped)
            skipped++;
        else
            seeded++;
        copied += r.copied;
    }
    assert_int_equal(seeded, 1);
    assert_int_equal(skipped, 7);
    assert_int_equal(copied, 203);
    assert_int_equal(count_temps(efs), 0);
}

static void symlinks_on_efs_are_not_followed(void **s)
{
    (void)s;
    /* A customer (or an attacker) put a symlink to / where the image has a folder. */
    char p[1024], outside[600];
    pathf(outside, sizeof(outside), "%s/outside", base);
    assert_int_equal(mkdir(outside, 0755), 0);
    pathf(p, sizeof(p), "%s/dark", dst);
    assert_int_equal(symlink(outside, p), 0);
    struct efs_seed_source src = source();
    struct efs_seed_result r;
    assert_int_equal(efs_seed_run(efs, &src, 1, NULL, &r), 0);
    assert_int_equal(r.kept, 1);
    pathf(p, sizeof(p), "%s/dark.css", outside);
    assert_int_equal(access(p, F_OK), -1); /* nothing written through the link */
    DIR *d = opendir(outside);
    assert_non_null(d);
    int entries = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        entries += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(entries, 0);
}

static void a_file_where_the_agent_folder_belongs_is_moved_aside(void **s)
{
    (void)s;
    /* Not the agent's folder: kept under another name, never used. */
    char p[1024];
    pathf(p, sizeof(p), "%s/.pi-agent", efs);
    write_text(p, "a file where the folder should be");
    struct efs_seed_source src = source();
    struct efs_seed_result r;
    assert_int_equal(efs_seed_run(efs, &src, 1, NULL, &r), 0);
    assert_non_null(strstr(r.moved_aside, ".pi-agent.refused-"));
    assert_non_null(strstr(r.moved_aside, "a file"));
    struct stat st;
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    char moved[1100];
    pathf(moved, sizeof(moved), "%s/%.*s", efs, (int)strcspn(r.moved_aside, " "), r.moved_aside);
    assert_string_equal(read_text(moved), "a file where the folder should be");
}

static void ensure_folder_creates_and_refuses(void **s)
{
    (void)s;
    char p[1024], msg[512];
    struct run_as nobody = { .set = true, .uid = 65534, .gid = 65534, .user = "nobody" };
    pathf(p, sizeof(p), "%s/images", efs);
    assert_int_equal(efs_ensure_folder(p, &nobody, msg, sizeof(msg)), 0);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_uid, 65534);
    assert_int_equal(efs_ensure_folder(p, &nobody, msg, sizeof(msg)), 0); /* idempotent */

    pathf(p, sizeof(p), "%s/keys", efs);
    assert_int_equal(symlink("/", p), 0);
    assert_int_equal(efs_ensure_folder(p, &nobody, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, p));
    assert_non_null(strstr(msg, "symlink"));

    pathf(p, sizeof(p), "%s/svg", efs);
    write_text(p, "not a folder");
    assert_int_equal(efs_ensure_folder(p, &nobody, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "not a folder"));
    assert_string_equal(read_text(p), "not a folder");

    pathf(p, sizeof(p), "%s/missing-parent/x", efs);
    assert_int_equal(efs_ensure_folder(p, NULL, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, "missing-parent"));
}

static void write_probe_answers_for_the_run_as_user(void **s)
{
    (void)s;
    struct run_as nobody = { .set = true, .uid = 65534, .gid = 65534, .user = "nobody" };
    char mine[600];
    pathf(mine, sizeof(mine), "%s/mine", efs);
    assert_int_equal(mkdir(mine, 0755), 0);
    assert_int_equal(chown(mine, 65534, 65534), 0);
    const char *dirs[2] = { dst, mine }; /* dst is root's 0755 */
    bool ok[2];
    char msg[512];
    assert_int_equal(efs_write_probe(dirs, 2, &nobody, ok, msg, sizeof(msg)), 1);
    assert_false(ok[0]);
    assert_true(ok[1]);
    assert_non_null(strstr(msg, dst));
    assert_non_null(strstr(msg, "Permission denied"));
    /* As the agent itself (root) both are writable. */
    assert_int_equal(efs_write_probe(dirs, 2, NULL, ok, msg, sizeof(msg)), 0);
    assert_true(ok[0] && ok[1]);
    /* It cleans up after itself. */
    char cmd[1024];
    pathf(cmd, sizeof(cmd), "find '%s' -name '.pi-agent-probe.*' | wc -l", efs);
    FILE *p = popen(cmd, "r");
    int n = -1;
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    assert_int_equal(n, 0);
}

static void link_replace_moves_the_image_folder_aside(void **s)
{
    (void)s;
    char msg[512], backup[600], target[600];
    enum efs_link_state st;
    assert_int_equal(efs_link_inspect(img, dst, &st), 0);
    assert_int_equal(st, EFS_LINK_DIRECTORY);
    assert_int_equal(efs_link_replace(img, dst, msg, sizeof(msg)), 0);
    assert_int_equal(efs_link_inspect(img, dst, &st), 0);
    assert_int_equal(st, EFS_LINK_OK);
    ssize_t n = readlink(img, target, sizeof(target) - 1);
    assert_true(n > 0);
    target[n] = '\0';
    assert_string_equal(target, dst);
    efs_image_backup_path(img, backup, sizeof(backup));
    char p[1024];
    pathf(p, sizeof(p), "%s/default.css", backup);
    assert_string_equal(read_text(p), "body { color: black }\n"); /* moved, not deleted */
    assert_int_equal(efs_link_replace(img, dst, msg, sizeof(msg)), 0); /* idempotent */

    /* A symlink elsewhere is replaced; missing parents are created. */
    char elsewhere[600];
    pathf(elsewhere, sizeof(elsewhere), "%s/a/b/keys", base);
    assert_int_equal(efs_link_replace(elsewhere, dst, msg, sizeof(msg)), 0);
    assert_int_equal(efs_link_inspect(elsewhere, dst, &st), 0);
    assert_int_equal(st, EFS_LINK_OK);
    assert_int_equal(unlink(elsewhere), 0);
    assert_int_equal(symlink("/", elsewhere), 0);
    assert_int_equal(efs_link_inspect(elsewhere, dst, &st), 0);
    assert_int_equal(st, EFS_LINK_OTHER_LINK);
    assert_int_equal(efs_link_replace(elsewhere, dst, msg, sizeof(msg)), 0);
    assert_int_equal(efs_link_inspect(elsewhere, dst, &st), 0);
    assert_int_equal(st, EFS_LINK_OK);

    /* A file is refused and left as it is. */
    char file[600];
    pathf(file, sizeof(file), "%s/a/file", base);
    write_text(file, "keep me");
    assert_int_equal(efs_link_replace(file, dst, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, file));
    assert_string_equal(read_text(file), "keep me");
}

static void remove_image_tree_never_follows_symlinks(void **s)
{
    (void)s;
    char outside[600], p[1024], msg[512];
    pathf(outside, sizeof(outside), "%s/outside", base);
    assert_int_equal(mkdir(outside, 0755), 0);
    pathf(p, sizeof(p), "%s/keep.txt", outside);
    write_text(p, "keep");
    pathf(p, sizeof(p), "%s/dark/escape", img);
    assert_int_equal(symlink(outside, p), 0);
    pathf(p, sizeof(p), "%s/dark/deeper/still", img);
    char cmd[1200];
    pathf(cmd, sizeof(cmd), "mkdir -p '%s'", p);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(efs_remove_image_tree(img, msg, sizeof(msg)), 0);
    assert_int_equal(access(img, F_OK), -1);
    pathf(p, sizeof(p), "%s/keep.txt", outside);
    assert_string_equal(read_text(p), "keep");
    /* a missing tree is an error naming it */
    assert_int_equal(efs_remove_image_tree(img, msg, sizeof(msg)), -1);
    assert_non_null(strstr(msg, img));
}

static void prepare_without_mounts(void **s)
{
    (void)s;
    struct efs_config cfg;
    struct config_error err = { "" };
    static const char *const vars[] = { "PI_EFS_MODE", "PI_EFS_LINKS", "PI_EFS_REQUIRE_NFS", NULL };
    for (int i = 0; vars[i]; i++)
        unsetenv(vars[i]);
    setenv("PI_EFS_ROOT", efs, 1);
    char links[1200];
    pathf(links, sizeof(links), "themes:%s", img);
    setenv("PI_EFS_LINKS", links, 1);
    assert_int_equal(efs_config_load(&cfg, &err), 0);

    /* The planning pass names the layout and touches nothing. */
    static struct efs_plan made;
    efs_plan_make(&cfg, NULL, &made);
    assert_int_equal(made.layout, EFS_LAYOUT_EPHEMERAL);
    cfg.mode = EFS_MODE_REQUIRED;
    efs_plan_make(&cfg, NULL, &made);
    assert_int_equal(made.layout, EFS_LAYOUT_REFUSED);
    assert_non_null(strstr(made.root_what, "not a mount point"));
    cfg.mode = EFS_MODE_OFF;
    efs_plan_make(&cfg, NULL, &made);
    assert_int_equal(made.layout, EFS_LAYOUT_OFF);
    cfg.mode = EFS_MODE_AUTO;

    static struct efs_state st;
    static struct efs_scan_set plan;
    /* auto, nothing mounted: ephemeral, start goes on */
    assert_int_equal(efs_prepare(&cfg, NULL, NULL, NULL, &st, &plan), 0);
    assert_string_equal(st.mode, "ephemeral");
    assert_int_equal(st.status, EFS_STATUS_EPHEMERAL);
    assert_int_equal(plan.nscan, 0);
    char p[1024];
    pathf(p, sizeof(p), "%s/default.css", img);
    assert_int_equal(access(p, F_OK), 0); /* nothing touched */

    /* required: 73, one reason naming the variable and what was found */
    cfg.mode = EFS_MODE_REQUIRED;
    assert_int_equal(efs_prepare(&cfg, NULL, NULL, NULL, &st, &plan), EXIT_STORAGE);
    assert_int_equal(st.status, EFS_STATUS_FAILED);
    char expect[700];
    pathf(expect, sizeof(expect), "PI_EFS_ROOT=%s is a folder on", efs);
    assert_non_null(strstr(st.reason, expect));
    assert_non_null(strstr(st.reason, "not a mount point"));

    pathf(cfg.root, sizeof(cfg.root), "%s/absent", base);
    assert_int_equal(efs_prepare(&cfg, NULL, NULL, NULL, &st, &plan), EXIT_STORAGE);
    assert_non_null(strstr(st.reason, "does not exist"));

    /* auto with PI_EFS_REQUIRE_NFS=true and nothing mounted: an error too */
    cfg.mode = EFS_MODE_AUTO;
    cfg.require_nfs = true;
    assert_int_equal(efs_prepare(&cfg, NULL, NULL, NULL, &st, &plan), EXIT_STORAGE);

    /* off: nothing at all */
    cfg.mode = EFS_MODE_OFF;
    assert_int_equal(efs_prepare(&cfg, NULL, NULL, NULL, &st, &plan), 0);
    assert_int_equal(st.status, EFS_STATUS_OFF);
    unsetenv("PI_EFS_ROOT");
    unsetenv("PI_EFS_LINKS");
}

struct lines {
    int n;
    char text[32][600];
};

static void collect(void *ctx, enum efs_level level, const char *check, const char *text)
{
    struct lines *l = ctx;
    if (l->n < 32)
        snprintf(l->text[l->n++], sizeof(l->text[0]), "%d %s: %s", (int)level, check, text);
}

static bool said(const struct lines *l, const char *needle)
{
    for (int i = 0; i < l->n; i++)
        if (strstr(l->text[i], needle))
            return true;
    return false;
}

/* Plan, then act: the planning pass and check's showing of the plan leave
 * the disk as it was; a start carries the same plan out. The stand-in
 * layout (the image links into a root nothing is mounted on) is the one a
 * test can reach without a mount. */
static void plan_then_act_stand_in(void **s)
{
    (void)s;
    struct efs_config cfg;
    struct config_error err = { "" };
    static const char *const vars[] = { "PI_EFS_MODE", "PI_EFS_LINKS", "PI_EFS_REQUIRE_NFS",
                                        "PI_EFS_SEED_DIR", NULL };
    for (int i = 0; vars[i]; i++)
        unsetenv(vars[i]);
    char root[600], dash[600], seed[600], folder[700], p[1024];
    pathf(root, sizeof(root), "%s/standin/root", base);
    pathf(dash, sizeof(dash), "%s/dash-themes", base);
    pathf(seed, sizeof(seed), "%s/seed", base);
    pathf(folder, sizeof(folder), "%s/themes", root);
    assert_int_equal(symlink(folder, dash), 0);
    assert_int_equal(mkdir(seed, 0755), 0);
    pathf(p, sizeof(p), "%s/themes", seed);
    assert_int_equal(rename(img, p), 0);
    setenv("PI_EFS_ROOT", root, 1);
    setenv("PI_EFS_SEED_DIR", seed, 1);
    char links[1300];
    pathf(links, sizeof(links), "themes:%s", dash);
    setenv("PI_EFS_LINKS", links, 1);
    assert_int_equal(efs_config_load(&cfg, &err), 0);

    static struct efs_plan plan;
    efs_plan_make(&cfg, NULL, &plan);
    assert_int_equal(plan.layout, EFS_LAYOUT_STAND_IN);
    assert_true(plan.root_missing);
    assert_false(plan.beneath_root);
    assert_int_not_equal(access(root, F_OK), 0);

    static struct efs_state st;
    static struct efs_scan_set scan;
    static struct lines out;
    out.n = 0;
    assert_int_equal(efs_check_storage(&cfg, NULL, collect, &out, &st, &scan), 0);
    assert_int_equal(st.status, EFS_STATUS_EPHEMERAL);
    assert_true(said(&out, "will be created"));
    assert_int_not_equal(access(root, F_OK), 0); /* check writes nothing */

    out.n = 0;
    assert_int_equal(efs_prepare(&cfg, NULL, collect, &out, &st, &scan), 0);
    assert_int_equal(st.status, EFS_STATUS_EPHEMERAL);
    assert_string_equal(st.mode, "ephemeral");
    assert_int_equal(scan.nscan, 1);
    assert_string_equal(scan.paths[0], folder);
    pathf(p, sizeof(p), "%s/default.css", folder);
    assert_int_equal(access(p, F_OK), 0); /* seeded from PI_EFS_SEED_DIR/themes */
    assert_true(said(&out, "image defaults seeded"));
    assert_true(said(&out, "link themes"));

    /* Planned again, the same root is now laid out: folders exist, the
     * link is right, the seed is done; check says so. */
    efs_plan_make(&cfg, NULL, &plan);
    assert_true(plan.beneath_root);
    assert_true(plan.row[0].exists && plan.row[0].is_dir);
    assert_int_equal(plan.row[0].state, EFS_LINK_OK);
    out.n = 0;
    assert_int_equal(efs_check_storage(&cfg, NULL, collect, &out, &st, &scan), 0);
    assert_true(said(&out, "exists"));
    assert_true(said(&out, "already seeded"));
    for (int i = 0; vars[i]; i++)
        unsetenv(vars[i]);
    unsetenv("PI_EFS_ROOT");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(seeds_everything_into_a_fresh_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(never_overwrites_and_skips_a_done_version, setup, teardown),
        cmocka_unit_test_setup_teardown(without_renameat2_link_and_unlink_never_overwrite, setup, teardown),
        cmocka_unit_test_setup_teardown(leftovers_of_a_killed_seed_are_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(eight_seeders_at_once_seed_once, setup, teardown),
        cmocka_unit_test_setup_teardown(symlinks_on_efs_are_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(a_file_where_the_agent_folder_belongs_is_moved_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(ensure_folder_creates_and_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(write_probe_answers_for_the_run_as_user, setup, teardown),
        cmocka_unit_test_setup_teardown(link_replace_moves_the_image_folder_aside, setup, teardown),
        cmocka_unit_test_setup_teardown(remove_image_tree_never_follows_symlinks, setup, teardown),
        cmocka_unit_test_setup_teardown(prepare_without_mounts, setup, teardown),
        cmocka_unit_test_setup_teardown(plan_then_act_stand_in, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
