/* log: one JSON object per line on stderr (or plain text for a terminal);
 * stdout is left to the child and to subcommands' results.
 * Fields are typed key/value pairs so that callers never build JSON by hand:
 *     log_info("child started", LF_INT("pid", pid), LF_STR("command", argv0));
 * Never pass a secret as a field: there is no redaction layer behind this. */
#ifndef PI_LOG_H
#define PI_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_JSON, LOG_FORMAT_TEXT };

enum log_field_type { LF_END_, LF_STR_, LF_INT_, LF_BOOL_, LF_DOUBLE_ };

struct log_field {
    const char *key;
    enum log_field_type type;
    const char *s;
    long long i;
    double d;
};

#define LF_STR(k, v)    ((struct log_field){ .key = (k), .type = LF_STR_, .s = (v) })
#define LF_INT(k, v)    ((struct log_field){ .key = (k), .type = LF_INT_, .i = (long long)(v) })
#define LF_BOOL(k, v)   ((struct log_field){ .key = (k), .type = LF_BOOL_, .i = !!(v) })
#define LF_DOUBLE(k, v) ((struct log_field){ .key = (k), .type = LF_DOUBLE_, .d = (double)(v) })

void log_setup(enum log_level min_level, enum log_format format);
int log_enabled(enum log_level level);
/* fields: array terminated by an entry whose key is NULL (the macros add it). */
void log_emit(enum log_level level, const char *msg, const struct log_field *fields);
/* Writes one already-formatted line (an EMF record) as it is, with a newline. */
void log_raw_line(const char *line);

#define LOG_FIELDS_(...) ((const struct log_field[]){ __VA_ARGS__ __VA_OPT__(,) { 0 } })
#define log_debug(msg, ...) log_emit(LOG_DEBUG, (msg), LOG_FIELDS_(__VA_ARGS__))
#define log_info(msg, ...)  log_emit(LOG_INFO,  (msg), LOG_FIELDS_(__VA_ARGS__))
#define log_warn(msg, ...)  log_emit(LOG_WARN,  (msg), LOG_FIELDS_(__VA_ARGS__))
#define log_error(msg, ...) log_emit(LOG_ERROR, (msg), LOG_FIELDS_(__VA_ARGS__))

/* Pure helpers, exposed for tests and for other JSON writers. */
/* Writes src as the inside of a JSON string (no quotes) into dst (always
 * NUL-terminated when cap > 0). Returns the length the full escape needs. */
size_t json_escape(char *dst, size_t cap, const char *src);
int log_parse_level(const char *s, enum log_level *out);
int log_parse_format(const char *s, enum log_format *out);

#endif
