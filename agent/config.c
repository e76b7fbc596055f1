/* config: pure parsers for PI_* variables and the supervisor's own settings. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int config_fail(struct config_error *err, const char *name, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (err == NULL)
        return -1;
    n = snprintf(err->msg, sizeof err->msg, "%s: ", name);
    if (n < 0 || (size_t)n >= sizeof err->msg)
        return -1;
    va_start(ap, fmt);
    vsnprintf(err->msg + n, sizeof err->msg - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static int is_unset(const char *value)
{
    return value == NULL || value[0] == '\0';
}

int config_parse_uint(const char *name, const char *value, unsigned long long def,
                      unsigned long long min, unsigned long long max,
                      unsigned long long *out, struct config_error *err)
{
    char *end;
    unsigned long long v;

    if (is_unset(value)) {
        *out = def;
        return 0;
    }
    /* strtoull accepts "-1" and leading spaces; a setting must not. */
    if (!isdigit((unsigned char)value[0]))
        goto bad;
    errno = 0;
    v = strtoull(value, &end, 10);
    if (errno != 0 || *end != '\0')
        goto bad;
    if (v < min || v > max)
        goto bad;
    *out = v;
    return 0;
bad:
    return config_fail(err, name, "expected a whole number from %llu to %llu, got \"%.40s\"",
                       min, max, value);
}

int config_parse_bool(const char *name, const char *value, bool def, bool *out,
                      struct config_error *err)
{
    static const char *const truthy[] = { "true", "1", "yes", "on" };
    static const char *const falsy[] = { "false", "0", "no", "off" };

    if (is_unset(value)) {
        *out = def;
        return 0;
    }
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(value, truthy[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(value, falsy[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return config_fail(err, name, "expected true or false, got \"%.40s\"", value);
}

int config_parse_choice(const char *name, const char *value, int def,
                        const char *const *choices, int *out, struct config_error *err)
{
    char list[256] = "";
    size_t used = 0;

    if (is_unset(value)) {
        *out = def;
        return 0;
    }
    for (int i = 0; choices[i]; i++) {
        if (strcmp(value, choices[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    for (int i = 0; choices[i] && used < sizeof list; i++) {
        int n = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", choices[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return config_fail(err, name, "expected one of %s, got \"%.40s\"", list, value);
}

const char *config_env_str(const char *name)
{
    const char *v = getenv(name);
    return is_unset(v) ? NULL : v;
}

int config_run_dir(char *out, size_t cap, struct config_error *err)
{
    const char *v = config_env_str("PI_AGENT_RUN_DIR");
    if (v == NULL)
        v = CONFIG_DEFAULT_RUN_DIR;
    if (v[0] != '/' || strlen(v) > CONFIG_RUN_DIR_MAX || strlen(v) >= cap)
        return config_fail(err, "PI_AGENT_RUN_DIR", "expected an absolute path of at most %d "
                           "characters", CONFIG_RUN_DIR_MAX);
    snprintf(out, cap, "%s", v);
    return 0;
}

int config_env_uint(const char *name, unsigned long long def, unsigned long long min,
                    unsigned long long max, unsigned long long *out, struct config_error *err)
{
    return config_parse_uint(name, getenv(name), def, min, max, out, err);
}

int config_env_bool(const char *name, bool def, bool *out, struct config_error *err)
{
    return config_parse_bool(name, getenv(name), def, out, err);
}

int config_env_choice(const char *name, int def, const char *const *choices, int *out,
                      struct config_error *err)
{
    return config_parse_choice(name, getenv(name), def, choices, out, err);
}

char **config_split_words(const char *line, size_t *count)
{
    size_t n = 0, cap = 4;
    char **words;
    const char *p = line;

    *count = 0;
    if (line == NULL)
        return NULL;
    words = calloc(cap + 1, sizeof *words);
    if (words == NULL)
        return NULL;
    while (*p) {
        const char *start;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        start = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if (n == cap) {
            char **grown = realloc(words, (cap * 2 + 1) * sizeof *words);
            if (grown == NULL)
                goto fail;
            words = grown;
            cap *= 2;
        }
        words[n] = strndup(start, (size_t)(p - start));
        if (words[n] == NULL)
            goto fail;
        words[++n] = NULL;
    }
    if (n == 0)
        goto fail;
    *count = n;
    return words;
fail:
    config_free_words(words);
    return NULL;
}

void config_free_words(char **words)
{
    if (words == NULL)
        return;
    for (char **w = words; *w; w++)
        free(*w);
    free(words);
}

/* A name or a number: numbers need no entry in /etc/passwd, as with docker's --user.
 * An id must fit uid_t/gid_t and not be (uid_t)-1: a larger number would wrap
 * (2^32 to 0, root) when cast. */
static int parse_id(const char *s, unsigned long *out)
{
    char *end;
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    *out = strtoul(s, &end, 10);
    if (errno || *end || *out >= (unsigned long)(uid_t)-1 || *out >= (unsigned long)(gid_t)-1)
        return -1;
    return 0;
}

int config_parse_run_as(const char *name, const char *value, struct run_as *out,
                        struct config_error *err)
{
    char user[64], group[64] = "";
    const char *colon;
    unsigned long id;

    memset(out, 0, sizeof *out);
    if (is_unset(value))
        return 0;
    colon = strchr(value, ':');
    if (colon) {
        if ((size_t)(colon - value) >= sizeof user || strlen(colon + 1) >= sizeof group ||
            colon == value || colon[1] == '\0')
            return config_fail(err, name, "expected user[:group], got \"%.60s\"", value);
        memcpy(user, value, (size_t)(colon - value));
        user[colon - value] = '\0';
        strcpy(group, colon + 1);
    } else {
        if (strlen(value) >= sizeof user)
            return config_fail(err, name, "expected user[:group], got \"%.60s\"", value);
        strcpy(user, value);
    }

    struct passwd *pw = getpwnam(user);
    /* A number known to /etc/passwd takes that entry's group, and its name
     * for the supplementary groups, as docker's --user does. */
    if (pw == NULL && parse_id(user, &id) == 0 && (pw = getpwuid((uid_t)id)) == NULL) {
        out->uid = (uid_t)id;
        out->gid = (gid_t)id;
    } else if (pw) {
        out->uid = pw->pw_uid;
        out->gid = pw->pw_gid;
        if (strlen(pw->pw_name) < sizeof user)
            strcpy(user, pw->pw_name);
    } else {
        return config_fail(err, name, "unknown user \"%s\" (expected user[:group] known to /etc/passwd, or a numeric uid)", user);
    }
    if (group[0]) {
        struct group *gr = getgrnam(group);
        if (gr)
            out->gid = gr->gr_gid;
        else if (parse_id(group, &id) == 0)
            out->gid = (gid_t)id;
        else
            return config_fail(err, name, "unknown group \"%s\" (expected a group known to /etc/group, or a numeric gid)", group);
    }
    snprintf(out->user, sizeof out->user, "%s", user);
    out->set = true;
    return 0;
}

int config_parse_stop_exit_status(const char *name, const char *value, int *out,
                                  struct config_error *err)
{
    unsigned long long v;
    *out = -1;
    if (is_unset(value) || strcmp(value, "child") == 0)
        return 0;
    if (config_parse_uint(name, value, 0, 0, 255, &v, err) != 0)
        return config_fail(err, name, "expected child or a number from 0 to 255, got \"%.40s\"",
                           value);
    *out = (int)v;
    return 0;
}

int agent_config_load(struct agent_config *cfg, char **argv_command, struct config_error *err)
{
    static const char *const restart_choices[] = { "never", "on-failure", NULL };
    unsigned long long v;
    int choice;

    memset(cfg, 0, sizeof *cfg);
    if (config_env_uint("PI_AGENT_STOP_GRACE_SECONDS", 20, 1, 3600, &v, err))
        return -1;
    cfg->stop_grace_s = (unsigned)v;
    if (config_env_uint("PI_AGENT_DRAIN_SECONDS", 5, 0, 3600, &v, err))
        return -1;
    cfg->drain_s = (unsigned)v;
    if (config_env_choice("PI_AGENT_RESTART", RESTART_NEVER, restart_choices, &choice, err))
        return -1;
    cfg->restart = (enum restart_policy)choice;
    if (config_env_uint("PI_AGENT_MAX_RESTARTS", 5, 0, 1000, &v, err))
        return -1;
    cfg->max_restarts = (unsigned)v;
    if (config_parse_run_as("PI_AGENT_RUN_AS", getenv("PI_AGENT_RUN_AS"), &cfg->run_as, err))
        return -1;
    if (config_env_uint("PI_AGENT_STARTUP_TIMEOUT_SECONDS", 0, 0, 86400, &v, err))
        return -1;
    cfg->startup_timeout_s = (unsigned)v;
    if (config_parse_stop_exit_status("PI_AGENT_STOP_EXIT_STATUS", getenv("PI_AGENT_STOP_EXIT_STATUS"),
                                      &cfg->stop_exit_status, err))
        return -1;

    if (argv_command && argv_command[0]) {
        cfg->command = argv_command;
        cfg->command_allocated = false;
    } else {
        const char *line = getenv("PI_AGENT_COMMAND");
        size_t n;
        if (line != NULL && line[0] == '\0')
            return config_fail(err, "PI_AGENT_COMMAND", "is empty (expected a command and its arguments separated by spaces, or unset for the dashboard's catalina.sh run)");
        cfg->command = config_split_words(line ? line : DEFAULT_TOMCAT_COMMAND, &n);
        if (cfg->command == NULL)
            return config_fail(err, "PI_AGENT_COMMAND", "expected a command and its arguments separated by spaces");
        cfg->command_allocated = true;
    }
    return 0;
}

void agent_config_free(struct agent_config *cfg)
{
    if (cfg->command_allocated)
        config_free_words(cfg->command);
    cfg->command = NULL;
}

void config_clear(void *p, size_t n)
{
    /* Chunks of 512 bytes: fine enough to skip the untouched parts of a page
     * cheaply, coarse enough to stay fast. */
    unsigned char *b = p;
    while (n > 0) {
        size_t len = n < 512 ? n : 512;
        size_t i = 0;
        while (i < len && b[i] == 0)
            i++;
        if (i < len)
            memset(b, 0, len);
        b += len;
        n -= len;
    }
}
