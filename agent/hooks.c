/* hooks: lifecycle hooks with time limits, run one after another.
 *
 * Each hook runs in its own process group so that a time limit can kill
 * everything it started; whatever is still in that group when the hook
 * itself exits is killed too, so a hook cannot leave strays behind PID 1. */
#include "hooks.h"

#include "execprep.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "childenv.h"
#include "fsafe.h"
#include "log.h"
#include "loop.h"
#include "reap.h"
#include "state.h"

extern char **environ;

/* How long to wait for a killed hook to be reaped before moving on. */
#define KILLED_REAP_MS 1000
/* Slice of a synchronous wait between checks for a pending stop signal. */
#define SYNC_WAIT_SLICE_MS 200

/* ---- configuration ------------------------------------------------------ */

static const char *const failure_choices[] = { "fail", "warn", NULL };

int hooks_config_load(struct hooks_config *cfg, struct config_error *err)
{
    unsigned long long timeout;
    int failure;
    const char *dir = config_env_str("PI_AGENT_HOOKS_DIR");

    memset(cfg, 0, sizeof *cfg);
    if (dir == NULL)
        dir = HOOKS_DEFAULT_DIR;
    if (dir[0] != '/')
        return config_fail(err, "PI_AGENT_HOOKS_DIR", "expected an absolute path, got \"%.200s\"",
                           dir);
    if (strlen(dir) >= sizeof cfg->dir)
        return config_fail(err, "PI_AGENT_HOOKS_DIR", "path longer than %zu bytes",
                           sizeof cfg->dir - 1);
    memcpy(cfg->dir, dir, strlen(dir) + 1);
    if (config_env_uint("PI_AGENT_HOOK_TIMEOUT_SECONDS", HOOKS_DEFAULT_TIMEOUT_S, 1,
                        HOOKS_MAX_TIMEOUT_S, &timeout, err) != 0)
        return -1;
    if (config_env_choice("PI_AGENT_HOOK_FAILURE", 0, failure_choices, &failure, err) != 0)
        return -1;
    cfg->timeout_s = (unsigned)timeout;
    cfg->warn_only = failure == 1;
    return 0;
}

bool hooks_phase_known(const char *phase)
{
    return phase != NULL &&
           (strcmp(phase, HOOK_PHASE_PRE_START) == 0 || strcmp(phase, HOOK_PHASE_POST_READY) == 0 ||
            strcmp(phase, HOOK_PHASE_PRE_STOP) == 0 || strcmp(phase, HOOK_PHASE_POST_STOP) == 0);
}

/* ---- discovery ---------------------------------------------------------- */

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void hooks_list_free(struct hook_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->names[i]);
    free(list->names);
    list->names = NULL;
    list->count = 0;
}

static int list_append(struct hook_list *list, size_t *cap, const char *name)
{
    if (list->count == *cap) {
        size_t grown_cap = *cap ? *cap * 2 : 8;
        char **grown = realloc(list->names, grown_cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        list->names = grown;
        *cap = grown_cap;
    }
    list->names[list->count] = strdup(name);
    if (list->names[list->count] == NULL)
        return -1;
    list->count++;
    return 0;
}

/* Root (or the agent's own user, when it is not root) may own a hook. */
static bool owner_trusted(uid_t uid)
{
    return uid == 0 || uid == geteuid();
}

static const char *hooks_unsafe_reason(const struct stat *st)
{
    static char buf[96];
    if (!owner_trusted(st->st_uid))
        snprintf(buf, sizeof buf, "owned by uid %u", (unsigned)st->st_uid);
    else if (st->st_mode & S_IWOTH)
        snprintf(buf, sizeof buf, "writable by others (mode %04o)", (unsigned)(st->st_mode & 07777));
    else if (st->st_mode & S_IWGRP)
        snprintf(buf, sizeof buf, "writable by its group (mode %04o)",
                 (unsigned)(st->st_mode & 07777));
    else
        snprintf(buf, sizeof buf, "safe");
    return buf;
}

int hooks_list(const char *dir, struct hook_list *out)
{
    size_t cap = 0;
    int saved;
    DIR *d;
    int dfd;

    out->names = NULL;
    out->count = 0;
    out->refused[0] = '\0';
    /* Root runs what is in there: the folder and the one above it
     * (PI_AGENT_HOOKS_DIR) must be writable by root alone, and no symlink on
     * the way may be one that someone else could have made. */
    const char *bad = NULL;
    char parent[1100];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash != NULL)
        *(slash == parent ? slash + 1 : slash) = '\0';
    dfd = fsafe_open_dir_trusted(dir, false);
    if (dfd < 0 && errno == ENOENT)
        return 0;
    struct stat dst, pst;
    int pfd = slash != NULL ? fsafe_open_dir_trusted(parent, false) : -1;
    if (dfd < 0 && errno != ELOOP) {
        if (pfd >= 0)
            close(pfd);
        return -1;
    }
    if (dfd < 0)
        bad = "a symlink that root did not make is on the way";
    else if (fstat(dfd, &dst) != 0 || (pfd >= 0 && fstat(pfd, &pst) != 0))
        bad = "cannot be checked";
    else if (!owner_trusted(dst.st_uid) || (dst.st_mode & (S_IWGRP | S_IWOTH)))
        bad = hooks_unsafe_reason(&dst);
    else if (pfd >= 0 && (!owner_trusted(pst.st_uid) || (pst.st_mode & (S_IWGRP | S_IWOTH))))
        bad = "its parent (PI_AGENT_HOOKS_DIR) is not root's or is writable by group or others";
    if (pfd >= 0)
        close(pfd);
    if (bad) {
        snprintf(out->refused, sizeof out->refused,
                 "%s refused: %s (root runs hooks: their folders and files must be root's and "
                 "writable by root alone)", dir, bad);
        if (dfd >= 0)
            close(dfd);
        errno = EPERM;
        return -1;
    }
    d = fdopendir(dfd);
    if (d == NULL) {
        saved = errno;
        close(dfd);
        errno = saved;
        return -1;
    }
    for (;;) {
        struct dirent *de;
        struct stat st;

        errno = 0;
        de = readdir(d);
        if (de == NULL) {
            if (errno != 0)
                goto fail;
            break;
        }
        const char *name = de->d_name;
        if (name[0] == '.') {
            if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0)
                log_debug("hook skipped: dotfile", LF_STR("dir", dir), LF_STR("hook", name));
            continue;
        }
        if (fstatat(dfd, name, &st, 0) != 0) {
            log_debug("hook skipped: cannot stat", LF_STR("dir", dir), LF_STR("hook", name),
                      LF_STR("error", strerror(errno)));
            continue;
        }
        if (!S_ISREG(st.st_mode)) {
            log_debug("hook skipped: not a regular file", LF_STR("dir", dir), LF_STR("hook", name));
            continue;
        }
        if ((st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) == 0) {
            log_debug("hook skipped: not executable", LF_STR("dir", dir), LF_STR("hook", name));
            continue;
        }
        if (!owner_trusted(st.st_uid) || (st.st_mode & (S_IWGRP | S_IWOTH))) {
            log_error("hook refused: root runs hooks, and this one is not root's or can be "
                      "changed by group or others", LF_STR("dir", dir), LF_STR("hook", name),
                      LF_STR("found", hooks_unsafe_reason(&st)));
            continue;
        }
        if (list_append(out, &cap, name) != 0)
            goto fail;
    }
    closedir(d);
    if (out->count > 1)
        qsort(out->names, out->count, sizeof *out->names, compare_names);
    return 0;
fail:
    saved = errno;
    closedir(d);
    hooks_list_free(out);
    errno = saved;
    return -1;
}

/* ---- pure helpers ------------------------------------------------------- */

uint64_t hooks_time_limit_ms(unsigned timeout_s, uint64_t deadline_ms, uint64_t now_ms)
{
    uint64_t limit = (uint64_t)timeout_s * 1000u;

    if (deadline_ms == 0)
        return limit;
    if (now_ms >= deadline_ms)
        return 0;
    return deadline_ms - now_ms < limit ? deadline_ms - now_ms : limit;
}

bool hooks_describe_outcome(int wait_status, bool timed_out, uint64_t limit_ms, char *buf,
                            size_t cap)
{
    if (timed_out) {
        snprintf(buf, cap, "timed out after %llu ms", (unsigned long long)limit_ms);
        return false;
    }
    if (WIFEXITED(wait_status)) {
        snprintf(buf, cap, "exit %d", WEXITSTATUS(wait_status));
        return WEXITSTATUS(wait_status) == 0;
    }
    if (WIFSIGNALED(wait_status)) {
        snprintf(buf, cap, "signal %d", WTERMSIG(wait_status));
        return false;
    }
    snprintf(buf, cap, "wait status %d", wait_status);
    return false;
}

int hooks_merge_env_text(struct childenv *env, const char *text, size_t len, int *bad_line)
{
    struct childenv scratch;
    char *const none[] = { NULL };
    int bad = 0;
    int count;

    *bad_line = 0;
    if (childenv_init(&scratch, none) != 0)
        return -1;
    /* Parsed on the side first so that a bad line changes nothing. */
    if (childenv_parse_lines(&scratch, text, len, &bad) < 0) {
        childenv_free(&scratch);
        *bad_line = bad;
        return -1;
    }
    count = (int)scratch.count;
    for (size_t i = 0; i < scratch.count; i++) {
        char *entry = scratch.vars[i];
        char *eq = strchr(entry, '=');
        int rc;

        *eq = '\0';
        rc = childenv_set(env, entry, eq + 1);
        *eq = '=';
        if (rc != 0) {
            childenv_free(&scratch);
            return -1;
        }
    }
    childenv_free(&scratch);
    return count;
}

/* ---- running one hook ---------------------------------------------------- */

static void record_failure(struct agent_state *state, const char *phase, const char *hook,
                           const char *what)
{
    if (state == NULL)
        return;
    snprintf(state->hooks_failure, sizeof state->hooks_failure, "%s/%s: %s", phase, hook, what);
}

/* The hook's environment: the base plus what the agent tells every hook. */
static int build_hook_env(struct childenv *out, char *const *base, const char *phase,
                          const struct agent_state *state, uint64_t limit_ms,
                          const char *env_file)
{
    char number[32];
    const char *licence = state != NULL && state->licence.status[0] != '\0'
                              ? state->licence.status : "unknown";

    if (childenv_init(out, base != NULL ? base : environ) != 0)
        return -1;
    snprintf(number, sizeof number, "%llu", (unsigned long long)(limit_ms / 1000u));
    if (childenv_set(out, "PI_AGENT_PHASE", phase) != 0 ||
        childenv_set(out, "PI_LICENCE_STATUS", licence) != 0 ||
        childenv_set(out, "PI_AGENT_HOOK_TIME_LIMIT_SECONDS", number) != 0)
        goto fail;
    if (state != NULL && state->child_pid > 0) {
        snprintf(number, sizeof number, "%ld", (long)state->child_pid);
        if (childenv_set(out, "PI_AGENT_CHILD_PID", number) != 0)
            goto fail;
    } else {
        childenv_unset(out, "PI_AGENT_CHILD_PID");
    }
    if (env_file != NULL) {
        if (childenv_set(out, "PI_AGENT_ENV_FILE", env_file) != 0)
            goto fail;
    } else {
        childenv_unset(out, "PI_AGENT_ENV_FILE");
    }
    return 0;
fail:
    childenv_free(out);
    return -1;
}

/* In the forked child: a clean signal state (the agent blocks signals for its
 * signalfd and ignores SIGPIPE; both survive exec) and fds 0-2 only. */
static void prepare_child(void)
{
    execprep_reset_signals();
    execprep_close_fds(-1);
}

static pid_t spawn_hook(const char *path, char *const *envp)
{
    pid_t pid = fork();

    if (pid < 0)
        return -1;
    if (pid == 0) {
        char *argv[] = { (char *)path, NULL };
        int err;

        if (setpgid(0, 0) != 0) {
            log_error("hook cannot get its own process group", LF_STR("hook", path),
                      LF_STR("error", strerror(errno)));
            _exit(126);
        }
        prepare_child();
        execve(path, argv, envp);
        err = errno;
        log_error("hook cannot be executed", LF_STR("hook", path), LF_STR("error", strerror(err)));
        _exit(err == ENOENT ? 127 : 126);
    }
    /* Also from the parent, so the group exists before we may signal it. It
     * fails harmlessly (EACCES) when the child already called execve. */
    (void)setpgid(pid, pid);
    return pid;
}

/* Kills what is left of a hook's process group; true when something was. */
static bool kill_group(pid_t pgid)
{
    return kill(-pgid, SIGKILL) == 0;
}

static void log_outcome(const char *phase, const char *name, bool ok, bool fatal,
                        const char *outcome, uint64_t duration_ms)
{
    enum log_level level = ok ? LOG_INFO : fatal ? LOG_ERROR : LOG_WARN;

    log_emit(level, ok ? "hook finished" : "hook failed",
             LOG_FIELDS_(LF_STR("phase", phase), LF_STR("hook", name),
                         LF_STR("outcome", outcome), LF_INT("duration_ms", duration_ms)));
}

static void note_leftovers(const char *phase, const char *name, pid_t pgid)
{
    if (kill_group(pgid))
        log_warn("hook left processes behind: killed them", LF_STR("phase", phase),
                 LF_STR("hook", name));
}

/* ---- synchronous phases ---------------------------------------------------- */

enum sync_result { SYNC_OK, SYNC_FAILED, SYNC_STOP_REQUESTED };

struct sync_wait {
    bool exited;
    bool lost;   /* reaped without its status reaching us */
    int status;
};

static void on_sync_exit(pid_t pid, int wait_status, void *ctx)
{
    struct sync_wait *w = ctx;
    (void)pid;
    w->exited = true;
    w->status = wait_status;
}

static bool stop_requested(void)
{
    sigset_t pending;

    if (sigpending(&pending) != 0)
        return false;
    return sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1;
}

/* Waits until the hook exits, until end_ms, or until a stop signal is
 * pending. The watch makes sure an exit reaped by someone else's
 * waitpid(-1) still reaches us. */
static void wait_sync(pid_t pid, struct sync_wait *w, uint64_t end_ms, bool watch_stop,
                      bool *stopped)
{
    *stopped = false;
    while (!w->exited) {
        uint64_t now = loop_now_ms();
        int status;

        if (now >= end_ms)
            return;
        if (watch_stop && stop_requested()) {
            *stopped = true;
            return;
        }
        uint64_t left = end_ms - now;
        int slice = (int)(left < SYNC_WAIT_SLICE_MS ? left : SYNC_WAIT_SLICE_MS);
        if (reap_wait(pid, slice, &status) == 0) {
            w->exited = true;
            w->status = status;
        } else if (errno == ECHILD && !w->exited) {
            /* Gone without reaching us (only when reap_watch failed). */
            w->exited = true;
            w->lost = true;
        }
    }
}

static int make_env_file(char *path, size_t cap)
{
    const char *tmp = config_env_str("TMPDIR");
    int fd;
    int n = snprintf(path, cap, "%s/pi-agent-hook-env.XXXXXX", tmp != NULL ? tmp : "/tmp");

    if (n < 0 || (size_t)n >= cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = mkostemp(path, O_CLOEXEC); /* mode 0600: private to the agent's user */
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

/* Reads what a hook wrote to its env file. Returns 0 with a malloc'd text
 * (NULL when the hook removed the file), or -1 with *why set. */
static int read_env_file(const char *path, char **text, size_t *len, const char **why)
{
    struct stat st;
    char *buf;
    size_t got = 0;
    int fd;

    *text = NULL;
    *len = 0;
    /* O_NONBLOCK: a FIFO put in its place must not block PID 1. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        *why = strerror(errno);
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        *why = "not a regular file";
        return -1;
    }
    buf = malloc(HOOKS_ENV_FILE_MAX + 1);
    if (buf == NULL) {
        close(fd);
        *why = "out of memory";
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, buf + got, HOOKS_ENV_FILE_MAX + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *why = strerror(errno);
            goto fail;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > HOOKS_ENV_FILE_MAX) {
            *why = "larger than 64 KiB";
            goto fail;
        }
    }
    close(fd);
    buf[got] = '\0';
    *text = buf;
    *len = got;
    return 0;
fail:
    close(fd);
    free(buf);
    return -1;
}

/* Takes a successful pre-start hook's variables into env. */
static bool apply_env_file(const char *phase, const char *name, const char *path,
                           struct childenv *env, bool fatal, struct agent_state *state)
{
    const char *why = NULL;
    char what[128];
    char *text;
    size_t len;
    int bad_line;
    int count;

    if (read_env_file(path, &text, &len, &why) != 0) {
        log_emit(fatal ? LOG_ERROR : LOG_WARN, "cannot read the hook's PI_AGENT_ENV_FILE",
                 LOG_FIELDS_(LF_STR("phase", phase), LF_STR("hook", name), LF_STR("error", why)));
        snprintf(what, sizeof what, "PI_AGENT_ENV_FILE: %s", why);
        record_failure(state, phase, name, what);
        return false;
    }
    if (text == NULL || len == 0) {
        free(text);
        return true;
    }
    count = hooks_merge_env_text(env, text, len, &bad_line);
    free(text);
    if (count < 0) {
        /* The line itself is not logged: it may hold a secret. */
        if (bad_line > 0) {
            log_emit(fatal ? LOG_ERROR : LOG_WARN,
                     "hook wrote a bad line to PI_AGENT_ENV_FILE: expected KEY=VALUE with KEY "
                     "made of letters, digits and _",
                     LOG_FIELDS_(LF_STR("phase", phase), LF_STR("hook", name),
                                 LF_INT("line", bad_line)));
            snprintf(what, sizeof what, "bad PI_AGENT_ENV_FILE line %d", bad_line);
        } else {
            log_error("out of memory taking the hook's variables", LF_STR("hook", name));
            snprintf(what, sizeof what, "out of memory");
        }
        record_failure(state, phase, name, what);
        return false;
    }
    log_info("hook set variables for Tomcat", LF_STR("phase", phase), LF_STR("hook", name),
             LF_INT("count", count));
    return true;
}

static enum sync_result run_one_sync(const char *phase, const char *dir, const char *name, struct childenv *env,
                                     uint64_t limit_ms, bool prestart, bool fatal,
                                     struct agent_state *state)
{
    char path[2048];
    char env_file[512];
    char outcome[96];
    struct childenv hook_env;
    struct sync_wait w = { false, false, 0 };
    bool stopped = false, timed_out = false, ok;
    uint64_t started, duration;
    pid_t pid;

    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
        log_error("hook path too long", LF_STR("phase", phase), LF_STR("hook", name));
        record_failure(state, phase, name, "path too long");
        return SYNC_FAILED;
    }
    if (prestart && make_env_file(env_file, sizeof env_file) != 0) {
        log_error("cannot create the hook's PI_AGENT_ENV_FILE (set TMPDIR to a writable directory)",
                  LF_STR("phase", phase), LF_STR("hook", name), LF_STR("error", strerror(errno)));
        record_failure(state, phase, name, "cannot create PI_AGENT_ENV_FILE");
        return SYNC_FAILED;
    }
    if (build_hook_env(&hook_env, env != NULL ? env->vars : NULL, phase, state, limit_ms,
                       prestart ? env_file : NULL) != 0) {
        log_error("out of memory building the hook's environment", LF_STR("hook", name));
        record_failure(state, phase, name, "out of memory");
        if (prestart)
            unlink(env_file);
        return SYNC_FAILED;
    }
    log_debug("hook starting", LF_STR("phase", phase), LF_STR("hook", name),
              LF_INT("time_limit_ms", limit_ms));
    started = loop_now_ms();
    pid = spawn_hook(path, hook_env.vars);
    childenv_free(&hook_env);
    if (pid < 0) {
        log_error("cannot fork a hook", LF_STR("phase", phase), LF_STR("hook", name),
                  LF_STR("error", strerror(errno)));
        record_failure(state, phase, name, "cannot fork");
        if (prestart)
            unlink(env_file);
        return SYNC_FAILED;
    }
    if (reap_watch(pid, on_sync_exit, &w) != 0)
        log_debug("cannot watch the hook's pid: relying on reap_wait", LF_INT("pid", pid));
    wait_sync(pid, &w, started + limit_ms, true, &stopped);
    if (!w.exited) {
        timed_out = !stopped;
        bool ignored;
        kill_group(pid);
        wait_sync(pid, &w, loop_now_ms() + KILLED_REAP_MS, false, &ignored);
    } else {
        note_leftovers(phase, name, pid);
    }
    reap_unwatch(pid);
    duration = loop_now_ms() - started;

    if (stopped) {
        snprintf(outcome, sizeof outcome, "killed: stop requested");
        ok = false;
    } else if (w.lost) {
        snprintf(outcome, sizeof outcome, "exit status unknown");
        ok = false;
    } else {
        ok = hooks_describe_outcome(w.status, timed_out, limit_ms, outcome, sizeof outcome);
    }
    log_outcome(phase, name, ok, fatal && !stopped, outcome, duration);
    if (!ok)
        record_failure(state, phase, name, outcome);
    if (ok && prestart)
        ok = apply_env_file(phase, name, env_file, env, fatal, state);
    else if (prestart && !stopped)
        log_debug("failed hook's PI_AGENT_ENV_FILE ignored", LF_STR("hook", name));
    if (prestart && unlink(env_file) != 0 && errno != ENOENT)
        log_warn("cannot remove a hook's env file", LF_STR("path", env_file),
                 LF_STR("error", strerror(errno)));
    if (stopped)
        return SYNC_STOP_REQUESTED;
    return ok ? SYNC_OK : SYNC_FAILED;
}

static int phase_dir(const struct hooks_config *cfg, const char *phase, char *dir, size_t cap)
{
    int n = snprintf(dir, cap, "%s/%s.d", cfg->dir, phase);

    if (n < 0 || (size_t)n >= cap) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

int hooks_run_sync(const struct hooks_config *cfg, const char *phase, struct childenv *env,
                   uint64_t budget_ms, struct agent_state *state)
{
    char dir[1100];
    struct hook_list list;
    bool prestart, fatal;
    uint64_t deadline;
    int rc = 0;

    if (!hooks_phase_known(phase)) {
        log_error("unknown hook phase", LF_STR("phase", phase != NULL ? phase : "(null)"));
        return 0;
    }
    /* A sync phase runs outside the loop: loop phases still running now
     * belong to a loop that ended, and must not start hooks from reap_wait. */
    hooks_abort_async();
    prestart = strcmp(phase, HOOK_PHASE_PRE_START) == 0;
    fatal = prestart && !cfg->warn_only;
    list.refused[0] = '\0';
    if (phase_dir(cfg, phase, dir, sizeof dir) != 0 || hooks_list(dir, &list) != 0) {
        const char *why = list.refused[0] ? list.refused : strerror(errno);
        log_emit(fatal ? LOG_ERROR : LOG_WARN, "cannot read the hooks directory",
                 LOG_FIELDS_(LF_STR("phase", phase), LF_STR("dir", dir), LF_STR("error", why)));
        record_failure(state, phase, "(directory)", why);
        return fatal ? EXIT_HOOK_FAILED : 0;
    }
    if (list.count == 0) {
        log_debug("no hooks to run", LF_STR("phase", phase), LF_STR("dir", dir));
        return 0;
    }
    log_info("running hooks", LF_STR("phase", phase), LF_INT("count", list.count),
             LF_INT("budget_ms", budget_ms));
    deadline = budget_ms != 0 ? loop_now_ms() + budget_ms : 0;
    for (size_t i = 0; i < list.count; i++) {
        uint64_t limit = hooks_time_limit_ms(cfg->timeout_s, deadline, loop_now_ms());
        enum sync_result r;

        if (limit == 0) {
            log_emit(fatal ? LOG_ERROR : LOG_WARN, "hook phase out of time: remaining hooks skipped",
                     LOG_FIELDS_(LF_STR("phase", phase), LF_INT("skipped", list.count - i),
                                 LF_INT("budget_ms", budget_ms)));
            record_failure(state, phase, list.names[i], "skipped: phase out of time");
            rc = fatal ? EXIT_HOOK_FAILED : 0;
            break;
        }
        if (stop_requested()) {
            r = SYNC_STOP_REQUESTED;
            record_failure(state, phase, list.names[i], "skipped: stop requested");
        } else {
            r = run_one_sync(phase, dir, list.names[i], env, limit, prestart, fatal, state);
        }
        if (r == SYNC_STOP_REQUESTED) {
            /* Not a hook failure: the caller sees the pending signal. */
            log_warn("stop requested: remaining hooks skipped", LF_STR("phase", phase),
                     LF_INT("skipped", list.count - i - 1));
            break;
        }
        if (r == SYNC_FAILED && fatal) {
            log_error("pre-start hook failed: not starting (PI_AGENT_HOOK_FAILURE=warn would go on)",
                      LF_STR("hook", list.names[i]), LF_INT("exit_status", EXIT_HOOK_FAILED));
            rc = EXIT_HOOK_FAILED;
            break;
        }
    }
    hooks_list_free(&list);
    return rc;
}

/* ---- asynchronous phases ------------------------------------------------- */

struct hooks_async {
    struct loop *loop;
    struct hooks_config cfg;
    char phase[16];
    char dir[1100];
    struct hook_list list;
    size_t next;                 /* index of the next hook to start */
    struct childenv base;        /* copy of the caller's envp */
    uint64_t deadline_ms;        /* 0 = no budget */
    uint64_t budget_ms;
    struct agent_state *state;
    void (*done)(void *ctx);
    void *ctx;
    /* the running hook */
    pid_t pid;
    long timer;                  /* its time limit, or the deferred finish */
    uint64_t started_ms;
    uint64_t limit_ms;
    struct hooks_async *next_active;
};

/* Runs not finished yet, for hooks_abort_async. */
static struct hooks_async *active_runs;

static void async_free(struct hooks_async *run)
{
    for (struct hooks_async **p = &active_runs; *p != NULL; p = &(*p)->next_active) {
        if (*p == run) {
            *p = run->next_active;
            break;
        }
    }
    hooks_list_free(&run->list);
    childenv_free(&run->base);
    free(run);
}

static void async_finish(struct hooks_async *run)
{
    void (*done)(void *) = run->done;
    void *ctx = run->ctx;

    log_debug("hook phase over", LF_STR("phase", run->phase));
    async_free(run);
    done(ctx);
}

static void on_async_finish_timer(struct loop *loop, void *ctx)
{
    (void)loop;
    async_finish(ctx);
}

static void on_async_exit(pid_t pid, int wait_status, void *ctx);
static void on_async_timeout(struct loop *loop, void *ctx);

/* Starts the next hook that can be started. Returns true when one runs. */
static bool async_start_next(struct hooks_async *run)
{
    while (run->next < run->list.count) {
        const char *name = run->list.names[run->next];
        uint64_t limit = hooks_time_limit_ms(run->cfg.timeout_s, run->deadline_ms, loop_now_ms());
        struct childenv hook_env;
        char path[2048];
        pid_t pid;

        /* Readiness hooks make no sense once the task is being stopped or
         * Tomcat is gone (its clean-up also signals every hook process). */
        if (run->state != NULL && (run->state->draining || !run->state->child_running) &&
            strcmp(run->phase, HOOK_PHASE_POST_READY) == 0) {
            log_info("post-ready hooks skipped: stopping, or Tomcat is not running",
                     LF_INT("skipped", run->list.count - run->next));
            run->next = run->list.count;
            return false;
        }
        if (limit == 0) {
            log_warn("hook phase out of time: remaining hooks skipped", LF_STR("phase", run->phase),
                     LF_INT("skipped", run->list.count - run->next),
                     LF_INT("budget_ms", run->budget_ms));
            record_failure(run->state, run->phase, name, "skipped: phase out of time");
            run->next = run->list.count;
            return false;
        }
        run->next++;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", run->dir, name) >= sizeof path) {
            log_warn("hook path too long", LF_STR("phase", run->phase), LF_STR("hook", name));
            record_failure(run->state, run->phase, name, "path too long");
            continue;
        }
        if (build_hook_env(&hook_env, run->base.vars, run->phase, run->state, limit, NULL) != 0) {
            log_warn("out of memory building the hook's environment", LF_STR("hook", name));
            record_failure(run->state, run->phase, name, "out of memory");
            continue;
        }
        log_debug("hook starting", LF_STR("phase", run->phase), LF_STR("hook", name),
                  LF_INT("time_limit_ms", limit));
        run->started_ms = loop_now_ms();
        pid = spawn_hook(path, hook_env.vars);
        childenv_free(&hook_env);
        if (pid < 0) {
            log_warn("cannot fork a hook", LF_STR("phase", run->phase), LF_STR("hook", name),
                     LF_STR("error", strerror(errno)));
            record_failure(run->state, run->phase, name, "cannot fork");
            continue;
        }
        /* SIGCHLD reaches the loop only after we return: no exit is missed. */
        if (reap_watch(pid, on_async_exit, run) != 0) {
            kill_group(pid);
            log_warn("cannot watch a hook: killed it", LF_STR("hook", name));
            record_failure(run->state, run->phase, name, "out of memory");
            continue;
        }
        run->timer = loop_timer_add(run->loop, limit, 0, on_async_timeout, run);
        if (run->timer < 0) {
            reap_unwatch(pid);
            kill_group(pid);
            log_warn("cannot arm a hook's time limit: killed it", LF_STR("hook", name));
            record_failure(run->state, run->phase, name, "cannot arm its time limit");
            continue;
        }
        run->pid = pid;
        run->limit_ms = limit;
        return true;
    }
    return false;
}

static void async_hook_over(struct hooks_async *run, bool ok, const char *outcome)
{
    const char *name = run->list.names[run->next - 1];

    log_outcome(run->phase, name, ok, false, outcome, loop_now_ms() - run->started_ms);
    if (!ok)
        record_failure(run->state, run->phase, name, outcome);
    run->pid = 0;
    run->timer = 0;
    if (!async_start_next(run))
        async_finish(run); /* inside a loop callback: done may run now */
}

static void on_async_exit(pid_t pid, int wait_status, void *ctx)
{
    struct hooks_async *run = ctx;
    char outcome[96];
    bool ok;

    loop_timer_cancel(run->loop, run->timer);
    note_leftovers(run->phase, run->list.names[run->next - 1], pid);
    ok = hooks_describe_outcome(wait_status, false, run->limit_ms, outcome, sizeof outcome);
    async_hook_over(run, ok, outcome);
}

static void on_async_timeout(struct loop *loop, void *ctx)
{
    struct hooks_async *run = ctx;
    char outcome[96];
    (void)loop;

    /* Killed and forgotten: the reaper collects it as an orphan, and the
     * phase goes on (or ends) now, so the stop grace is never overrun. */
    reap_unwatch(run->pid);
    kill_group(run->pid);
    hooks_describe_outcome(0, true, run->limit_ms, outcome, sizeof outcome);
    async_hook_over(run, false, outcome);
}

int hooks_run_async(struct loop *loop, const struct hooks_config *cfg, const char *phase,
                    char *const *envp, uint64_t budget_ms, struct agent_state *state,
                    void (*done)(void *ctx), void *ctx)
{
    struct hooks_async *run;

    if (!hooks_phase_known(phase) || done == NULL) {
        log_error("unknown hook phase", LF_STR("phase", phase != NULL ? phase : "(null)"));
        return -1;
    }
    run = calloc(1, sizeof *run);
    if (run == NULL)
        return -1;
    run->loop = loop;
    run->cfg = *cfg;
    snprintf(run->phase, sizeof run->phase, "%s", phase);
    run->state = state;
    run->done = done;
    run->ctx = ctx;
    run->budget_ms = budget_ms;
    run->deadline_ms = budget_ms != 0 ? loop_now_ms() + budget_ms : 0;
    if (childenv_init(&run->base, envp != NULL ? envp : environ) != 0) {
        free(run);
        return -1;
    }
    if (phase_dir(cfg, phase, run->dir, sizeof run->dir) != 0 ||
        hooks_list(run->dir, &run->list) != 0) {
        const char *why = run->list.refused[0] ? run->list.refused : strerror(errno);
        log_warn("cannot read the hooks directory", LF_STR("phase", phase),
                 LF_STR("dir", run->dir), LF_STR("error", why));
        record_failure(state, phase, "(directory)", why);
    } else if (run->list.count == 0) {
        log_debug("no hooks to run", LF_STR("phase", phase), LF_STR("dir", run->dir));
    } else {
        log_info("running hooks", LF_STR("phase", phase), LF_INT("count", run->list.count),
                 LF_INT("budget_ms", budget_ms));
    }
    run->next_active = active_runs;
    active_runs = run;
    if (async_start_next(run))
        return 0;
    /* Nothing runs: done must still come from the loop, not from here. */
    run->timer = loop_timer_add(loop, 0, 0, on_async_finish_timer, run);
    if (run->timer < 0) {
        async_free(run);
        return -1;
    }
    return 0;
}

void hooks_abort_async(void)
{
    while (active_runs != NULL) {
        struct hooks_async *run = active_runs;

        if (run->timer > 0)
            loop_timer_cancel(run->loop, run->timer);
        if (run->pid > 0) {
            const char *name = run->list.names[run->next - 1];
            reap_unwatch(run->pid);
            kill_group(run->pid);
            log_warn("hook killed: the agent is stopping", LF_STR("phase", run->phase),
                     LF_STR("hook", name));
            record_failure(run->state, run->phase, name, "killed: the agent is stopping");
        }
        if (run->next < run->list.count)
            log_info("hooks not run: the agent is stopping", LF_STR("phase", run->phase),
                     LF_INT("skipped", run->list.count - run->next));
        async_free(run);
    }
}
