/* childenv: the environment Tomcat and the hooks start with: the agent's own,
 * plus what the start phases add (PI_LICENCE_FILE, variables from pre-start
 * hooks, ...). */
#ifndef PI_CHILDENV_H
#define PI_CHILDENV_H

#include <stddef.h>

struct childenv {
    char **vars;   /* "KEY=VALUE", NULL-terminated */
    size_t count;
    size_t cap;
};

/* Starts from a copy of envp. */
int childenv_init(struct childenv *env, char *const *envp);
/* Adds or replaces KEY. Returns -1 on allocation failure or a bad key. */
int childenv_set(struct childenv *env, const char *key, const char *value);
const char *childenv_get(const struct childenv *env, const char *key);
void childenv_unset(struct childenv *env, const char *key);
void childenv_free(struct childenv *env);
/* Parses KEY=VALUE lines (blank lines and # comments ignored) into env.
 * Returns the number of variables set, or -1 with the 1-based bad line in
 * *bad_line. Pure apart from env. */
int childenv_parse_lines(struct childenv *env, const char *text, size_t len, int *bad_line);

#endif
