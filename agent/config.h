/* config: reading PI_* variables. Each module owns its own settings struct and
 * loader; this file gives them the shared, pure parsing primitives and holds
 * the supervisor's own settings. A parse failure fills config_error with one
 * line naming the variable and the expected form; main exits 78 with it. */
#ifndef PI_CONFIG_H
#define PI_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define EXIT_CONFIG 78 /* EX_CONFIG from sysexits.h */

struct config_error {
    char msg[512];
};

/* Sets err->msg to "NAME: ..." and returns -1. */
int config_fail(struct config_error *err, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Pure parsers: value may be NULL or "" (then *out = def). */
int config_parse_uint(const char *name, const char *value, unsigned long long def,
                      unsigned long long min, unsigned long long max,
                      unsigned long long *out, struct config_error *err);
int config_parse_bool(const char *name, const char *value, bool def, bool *out,
                      struct config_error *err);
/* value must be one of choices (NULL-terminated); *out is its index. */
int config_parse_choice(const char *name, const char *value, int def,
                        const char *const *choices, int *out, struct config_error *err);
/* Same, reading getenv(name). */
int config_env_uint(const char *name, unsigned long long def, unsigned long long min,
                    unsigned long long max, unsigned long long *out, struct config_error *err);
int config_env_bool(const char *name, bool def, bool *out, struct config_error *err);
int config_env_choice(const char *name, int def, const char *const *choices, int *out,
                      struct config_error *err);
/* memset(p, 0, n) that leaves pages already zero untouched (reading them
 * costs no memory): large settings structs, mostly unused, then stay out of
 * an idle agent's private memory. */
void config_clear(void *p, size_t n);
/* getenv that treats "" as unset. */
const char *config_env_str(const char *name);

/* PI_AGENT_RUN_DIR, the agent's own folder (licence hand-over, health
 * socket, run records when EFS is off): the one rule every reader applies.
 * An absolute path of at most CONFIG_RUN_DIR_MAX characters (room for the
 * file names beneath it); CONFIG_DEFAULT_RUN_DIR when unset. cap must exceed
 * CONFIG_RUN_DIR_MAX. Returns 0, or -1 with err naming the variable. */
#define CONFIG_DEFAULT_RUN_DIR "/run/pi-agent"
#define CONFIG_RUN_DIR_MAX 223
int config_run_dir(char *out, size_t cap, struct config_error *err);

/* Splits a command line on spaces and tabs (no shell, no quoting) into a
 * NULL-terminated argv allocated with malloc. Returns NULL on allocation
 * failure or when the line holds no word (*count is set to 0 then). */
char **config_split_words(const char *line, size_t *count);
void config_free_words(char **words);

enum restart_policy { RESTART_NEVER, RESTART_ON_FAILURE };

struct run_as {
    bool set;
    uid_t uid;
    gid_t gid;
    char user[64];
};

/* Parses "user[:group]" (names or numeric ids) against the passwd/group files. */
int config_parse_run_as(const char *name, const char *value, struct run_as *out,
                        struct config_error *err);

/* The supervisor's settings. */
struct agent_config {
    char **command;            /* child argv, NULL-terminated */
    bool command_allocated;    /* command came from config_split_words */
    unsigned stop_grace_s;     /* PI_AGENT_STOP_GRACE_SECONDS */
    unsigned drain_s;          /* PI_AGENT_DRAIN_SECONDS, default 5: /health says draining
                                * for this long before the child is stopped */
    enum restart_policy restart;
    unsigned max_restarts;     /* PI_AGENT_MAX_RESTARTS */
    struct run_as run_as;      /* PI_AGENT_RUN_AS */
    unsigned startup_timeout_s; /* PI_AGENT_STARTUP_TIMEOUT_SECONDS, 0 = off */
    int stop_exit_status;      /* PI_AGENT_STOP_EXIT_STATUS: -1 = the child's, else 0-255 */
};

#define DEFAULT_TOMCAT_COMMAND "/var/panintelligence/Dashboard/tomcat/bin/catalina.sh run"

/* Pure: PI_AGENT_STOP_EXIT_STATUS, "child" (or unset: -1) or 0-255. */
int config_parse_stop_exit_status(const char *name, const char *value, int *out,
                                  struct config_error *err);

/* Loads the supervisor settings. argv_command (may be NULL) is the command
 * given on pi-agent's command line, which wins over PI_AGENT_COMMAND. */
int agent_config_load(struct agent_config *cfg, char **argv_command, struct config_error *err);
void agent_config_free(struct agent_config *cfg);

#endif
