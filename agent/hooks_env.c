/* hooks_env: see hooks_env.h. */
#include "hooks_env.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "childenv.h"
#include "config.h"
#include "hooks.h"
#include "state.h"
#include "util.h"

extern char **environ;

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

/* The hook's environment: the base plus what the agent tells every hook. */
int hooks_env_build(struct childenv *out, char *const *base, const char *phase,
                    const struct agent_state *state, uint64_t limit_ms, const char *env_file)
{
    char number[32];
    const char *licence =
        licence_status_name(state != NULL ? state->licence.status : LS_UNKNOWN);

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

int hooks_env_file_create(char *path, size_t cap)
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
    long got = util_read_fd(fd, buf, HOOKS_ENV_FILE_MAX + 1);
    int saved = errno;
    close(fd);
    if (got < 0) {
        *why = saved == EFBIG ? "larger than 64 KiB" : strerror(saved);
        free(buf);
        return -1;
    }
    *text = buf;
    *len = (size_t)got;
    return 0;
}

int hooks_env_file_take(const char *path, struct childenv *env, struct hooks_env_failure *why)
{
    const char *error = NULL;
    char *text;
    size_t len;
    int bad_line;

    memset(why, 0, sizeof *why);
    if (read_env_file(path, &text, &len, &error) != 0) {
        why->msg = "cannot read the hook's PI_AGENT_ENV_FILE";
        why->error = error;
        snprintf(why->what, sizeof why->what, "PI_AGENT_ENV_FILE: %s", error);
        return -1;
    }
    if (text == NULL || len == 0) {
        free(text);
        return 0;
    }
    int count = hooks_merge_env_text(env, text, len, &bad_line);
    free(text);
    if (count >= 0)
        return count;
    if (bad_line > 0) {
        why->msg = "hook wrote a bad line to PI_AGENT_ENV_FILE: expected KEY=VALUE with KEY "
                   "made of letters, digits and _";
        why->line = bad_line;
        snprintf(why->what, sizeof why->what, "bad PI_AGENT_ENV_FILE line %d", bad_line);
    } else {
        why->msg = "out of memory taking the hook's variables";
        snprintf(why->what, sizeof why->what, "out of memory");
    }
    return -1;
}
