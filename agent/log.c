/* log: JSON lines for CloudWatch Logs Insights, or text for a terminal, on
 * stderr: stdout belongs to the child (as with tini or s6), so redirecting a
 * command's output captures only that command's output. One write(2) per
 * record so lines from the agent and the child never interleave mid-line on a
 * shared stderr pipe. */
#include "log.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 8192

static enum log_level min_level_ = LOG_INFO;
static enum log_format format_ = LOG_FORMAT_JSON;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_setup(enum log_level min_level, enum log_format format)
{
    min_level_ = min_level;
    format_ = format;
}

int log_enabled(enum log_level level)
{
    return level >= min_level_;
}

int log_parse_level(const char *s, enum log_level *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcmp(s, "warning") == 0) {
        *out = LOG_WARN;
        return 0;
    }
    return -1;
}

int log_parse_format(const char *s, enum log_format *out)
{
    if (strcmp(s, "json") == 0) {
        *out = LOG_FORMAT_JSON;
        return 0;
    }
    if (strcmp(s, "text") == 0) {
        *out = LOG_FORMAT_TEXT;
        return 0;
    }
    return -1;
}

size_t json_escape(char *dst, size_t cap, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    size_t need = 0;

    if (src == NULL)
        src = "";
    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        char buf[7];
        size_t n;
        switch (*p) {
        case '"': memcpy(buf, "\\\"", 2); n = 2; break;
        case '\\': memcpy(buf, "\\\\", 2); n = 2; break;
        case '\n': memcpy(buf, "\\n", 2); n = 2; break;
        case '\r': memcpy(buf, "\\r", 2); n = 2; break;
        case '\t': memcpy(buf, "\\t", 2); n = 2; break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                buf[0] = '\\'; buf[1] = 'u'; buf[2] = '0'; buf[3] = '0';
                buf[4] = hex[*p >> 4]; buf[5] = hex[*p & 15];
                n = 6;
            } else {
                buf[0] = (char)*p;
                n = 1;
            }
        }
        /* Copy only whole escapes, so a cut line is still valid JSON text. */
        if (cap > 0 && need + n < cap)
            memcpy(dst + need, buf, n);
        else if (cap > 0 && need < cap)
            cap = need + 1; /* stop copying from here on */
        need += n;
    }
    if (cap > 0)
        dst[need < cap ? need : cap - 1] = '\0';
    return need;
}

struct line {
    char buf[LOG_LINE_MAX];
    size_t len;
    int truncated;
};

static void put(struct line *l, const char *s, size_t n)
{
    if (l->len + n >= sizeof l->buf - 2) { /* keep room for '}' and '\n' */
        l->truncated = 1;
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

static void put_json_string(struct line *l, const char *s)
{
    char esc[2048];
    size_t need = json_escape(esc, sizeof esc, s);
    put(l, "\"", 1);
    puts_(l, esc);
    if (need >= sizeof esc)
        puts_(l, "...");
    put(l, "\"", 1);
}

static void put_value(struct line *l, const struct log_field *f, int quote_strings)
{
    char num[64];
    switch (f->type) {
    case LF_STR_:
        if (quote_strings) {
            put_json_string(l, f->s ? f->s : "");
        } else {
            /* Text mode: readable, but still one line per record. */
            char esc[2048];
            json_escape(esc, sizeof esc, f->s ? f->s : "");
            puts_(l, esc);
        }
        break;
    case LF_INT_:
        snprintf(num, sizeof num, "%lld", f->i);
        puts_(l, num);
        break;
    case LF_BOOL_:
        puts_(l, f->i ? "true" : "false");
        break;
    case LF_DOUBLE_:
        if (isfinite(f->d))
            snprintf(num, sizeof num, "%.6g", f->d);
        else
            snprintf(num, sizeof num, "null");
        puts_(l, num);
        break;
    case LF_END_:
        break;
    }
}

static void timestamp(char *out, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || gmtime_r(&ts.tv_sec, &tm) == NULL) {
        snprintf(out, cap, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
}

static void write_line(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report a logging failure */
        }
        buf += n;
        len -= (size_t)n;
    }
}

void log_emit(enum log_level level, const char *msg, const struct log_field *fields)
{
    struct line l = { .len = 0 };
    char ts[96];
    int saved_errno = errno;

    if (!log_enabled(level))
        return;
    timestamp(ts, sizeof ts);
    if (format_ == LOG_FORMAT_JSON) {
        puts_(&l, "{\"ts\":\"");
        puts_(&l, ts);
        puts_(&l, "\",\"level\":\"");
        puts_(&l, level_names[level]);
        puts_(&l, "\",\"msg\":");
        put_json_string(&l, msg);
        for (const struct log_field *f = fields; f && f->key; f++) {
            put(&l, ",", 1);
            put_json_string(&l, f->key);
            put(&l, ":", 1);
            put_value(&l, f, 1);
        }
        if (l.truncated)
            l.len = 0, puts_(&l, "{\"level\":\"error\",\"msg\":\"log record too long, dropped\"");
        /* put() kept room for it: a record that just fits still closes. */
        l.buf[l.len++] = '}';
    } else {
        puts_(&l, ts);
        puts_(&l, " ");
        puts_(&l, level_names[level]);
        puts_(&l, " ");
        char esc[2048];
        json_escape(esc, sizeof esc, msg);
        puts_(&l, esc);
        for (const struct log_field *f = fields; f && f->key; f++) {
            put(&l, " ", 1);
            puts_(&l, f->key);
            put(&l, "=", 1);
            put_value(&l, f, 0);
        }
    }
    l.buf[l.len++] = '\n';
    write_line(l.buf, l.len);
    errno = saved_errno;
}

void log_raw_line(const char *line)
{
    size_t len = strlen(line);
    char buf[LOG_LINE_MAX];
    /* One write with its newline, like log_emit: the child's output on a
     * shared stderr must not land between the record and its end. */
    if (len < sizeof buf) {
        memcpy(buf, line, len);
        buf[len] = '\n';
        write_line(buf, len + 1);
        return;
    }
    write_line(line, len);
    write_line("\n", 1);
}
