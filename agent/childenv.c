/* childenv: a growable KEY=VALUE array for execve. */
#include "childenv.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int valid_key(const char *key, size_t len)
{
    if (len == 0 || !(isalpha((unsigned char)key[0]) || key[0] == '_'))
        return 0;
    for (size_t i = 1; i < len; i++)
        if (!(isalnum((unsigned char)key[i]) || key[i] == '_'))
            return 0;
    return 1;
}

static int grow(struct childenv *env)
{
    if (env->count + 1 < env->cap)
        return 0;
    size_t cap = env->cap ? env->cap * 2 : 32;
    char **vars = realloc(env->vars, cap * sizeof *vars);
    if (vars == NULL)
        return -1;
    env->vars = vars;
    env->cap = cap;
    return 0;
}

int childenv_init(struct childenv *env, char *const *envp)
{
    memset(env, 0, sizeof *env);
    if (grow(env) != 0)
        return -1;
    env->vars[0] = NULL;
    for (char *const *e = envp; e && *e; e++) {
        if (grow(env) != 0)
            goto fail;
        env->vars[env->count] = strdup(*e);
        if (env->vars[env->count] == NULL)
            goto fail;
        env->vars[++env->count] = NULL;
    }
    return 0;
fail:
    childenv_free(env);
    return -1;
}

static ssize_t find(const struct childenv *env, const char *key, size_t len)
{
    for (size_t i = 0; i < env->count; i++)
        if (strncmp(env->vars[i], key, len) == 0 && env->vars[i][len] == '=')
            return (ssize_t)i;
    return -1;
}

static int set_n(struct childenv *env, const char *key, size_t klen, const char *value, size_t vlen)
{
    if (!valid_key(key, klen))
        return -1;
    char *entry = malloc(klen + vlen + 2);
    if (entry == NULL)
        return -1;
    memcpy(entry, key, klen);
    entry[klen] = '=';
    memcpy(entry + klen + 1, value, vlen);
    entry[klen + 1 + vlen] = '\0';
    ssize_t at = find(env, key, klen);
    if (at >= 0) {
        free(env->vars[at]);
        env->vars[at] = entry;
        return 0;
    }
    if (grow(env) != 0) {
        free(entry);
        return -1;
    }
    env->vars[env->count] = entry;
    env->vars[++env->count] = NULL;
    return 0;
}

int childenv_set(struct childenv *env, const char *key, const char *value)
{
    return set_n(env, key, strlen(key), value, strlen(value));
}

const char *childenv_get(const struct childenv *env, const char *key)
{
    size_t len = strlen(key);
    ssize_t at = find(env, key, len);
    return at >= 0 ? env->vars[at] + len + 1 : NULL;
}

void childenv_unset(struct childenv *env, const char *key)
{
    ssize_t at = find(env, key, strlen(key));
    if (at < 0)
        return;
    free(env->vars[at]);
    env->vars[at] = env->vars[--env->count];
    env->vars[env->count] = NULL;
}

void childenv_free(struct childenv *env)
{
    for (size_t i = 0; i < env->count; i++)
        free(env->vars[i]);
    free(env->vars);
    memset(env, 0, sizeof *env);
}

int childenv_parse_lines(struct childenv *env, const char *text, size_t len, int *bad_line)
{
    const char *p = text, *end = text + len;
    int lineno = 0, set = 0;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        lineno++;
        const char *s = p;
        while (s < line_end && (*s == ' ' || *s == '\t'))
            s++;
        size_t n = (size_t)(line_end - s);
        if (n > 0 && s[n - 1] == '\r')
            n--;
        if (n > 0 && s[0] != '#') {
            const char *eq = memchr(s, '=', n);
            if (eq == NULL || memchr(s, '\0', n) != NULL ||
                set_n(env, s, (size_t)(eq - s), eq + 1, n - (size_t)(eq - s) - 1) != 0) {
                if (bad_line)
                    *bad_line = lineno;
                return -1;
            }
            set++;
        }
        p = eol ? eol + 1 : end;
    }
    return set;
}
