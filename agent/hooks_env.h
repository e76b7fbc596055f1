/* hooks_env: what a hook's environment holds, and PI_AGENT_ENV_FILE, the
 * file a pre-start hook writes KEY=VALUE lines to for Tomcat. The text is
 * hostile input (a hook may be anyone's script): hooks_merge_env_text is a
 * pure parser with a fuzz target (tests/fuzz/fuzz_hooks.c). */
#ifndef PI_HOOKS_ENV_H
#define PI_HOOKS_ENV_H

#include <stddef.h>
#include <stdint.h>

struct childenv;
struct agent_state;

/* Parses a hook's PI_AGENT_ENV_FILE text into env, all or nothing: on a bad
 * line env is unchanged, and *bad_line is its 1-based number (0 when the
 * failure was allocation). Returns the number of variables set, or -1. */
int hooks_merge_env_text(struct childenv *env, const char *text, size_t len, int *bad_line);

/* The hook's environment into out: base (NULL = environ) plus PI_AGENT_PHASE,
 * PI_LICENCE_STATUS, PI_AGENT_HOOK_TIME_LIMIT_SECONDS, PI_AGENT_CHILD_PID
 * (while Tomcat runs) and PI_AGENT_ENV_FILE (env_file, or unset when NULL).
 * state may be NULL. Returns 0, or -1 when out of memory (out is freed). */
int hooks_env_build(struct childenv *out, char *const *base, const char *phase,
                    const struct agent_state *state, uint64_t limit_ms, const char *env_file);

/* Creates an empty PI_AGENT_ENV_FILE (mode 0600) under TMPDIR (default /tmp)
 * with a random name into path. Returns 0, or -1 with errno. */
int hooks_env_file_create(char *path, size_t cap);

/* Why hooks_env_file_take failed: what to log, and what to record. */
struct hooks_env_failure {
    const char *msg;    /* the log line */
    const char *error;  /* its "error" field, or NULL */
    int line;           /* its "line" field (a bad line's number), or 0 */
    char what[128];     /* for state->hooks_failure */
};

/* Takes the variables a hook wrote to path into env (all or nothing). A
 * missing or empty file sets none. Never follows a symlink, never blocks on
 * a FIFO, reads at most HOOKS_ENV_FILE_MAX bytes. Returns the number of
 * variables set, or -1 with *why filled (the bad line itself is never
 * given: it may hold a secret). */
int hooks_env_file_take(const char *path, struct childenv *env, struct hooks_env_failure *why);

#endif
