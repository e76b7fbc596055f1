/* libFuzzer target for what a hook hands back and what wait-tcp is given:
 * first byte odd: the bytes are a hook's PI_AGENT_ENV_FILE, merged into an
 * environment (all or nothing); even: NUL-separated wait-tcp arguments.
 * Invariants are checked, not just crashes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "childenv.h"
#include "hooks.h"
#include "wait_tcp.h"

static void check(int ok)
{
    if (!ok)
        __builtin_trap();
}

static int key_ok(const char *entry)
{
    const char *eq = strchr(entry, '=');
    if (eq == NULL || eq == entry)
        return 0;
    for (const char *p = entry; p < eq; p++) {
        int alpha = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_';
        if (!(alpha || (p > entry && *p >= '0' && *p <= '9')))
            return 0;
    }
    return 1;
}

static void fuzz_env_file(const char *text, size_t len)
{
    char *const base[] = { "PATH=/usr/bin:/bin", "KEEP=1", NULL };
    struct childenv env;
    int bad = -1;

    if (childenv_init(&env, base) != 0)
        return;
    int n = hooks_merge_env_text(&env, text, len, &bad);
    if (n < 0) {
        /* A bad line changes nothing. */
        if (bad > 0) {
            check(env.count == 2);
            check(strcmp(childenv_get(&env, "KEEP"), "1") == 0);
        }
    } else {
        check(env.vars[env.count] == NULL);
        for (size_t i = 0; i < env.count; i++)
            check(key_ok(env.vars[i]));
    }
    childenv_free(&env);
}

static void fuzz_wait_tcp_args(const uint8_t *data, size_t size)
{
    char buf[512];
    char *argv[8];
    int argc = 0;
    struct wait_tcp_args a;
    char err[160];

    if (size >= sizeof buf)
        size = sizeof buf - 1;
    memcpy(buf, data, size);
    buf[size] = '\0';
    argv[argc++] = "wait-tcp";
    for (char *p = buf; argc < 7 && p <= buf + size; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;
    if (wait_tcp_parse_args(argc, argv, &a, err, sizeof err) == 0) {
        long port = atol(a.port);
        check(argc == 4);
        check(a.host[0] != '\0');
        check(port >= 1 && port <= 65535);
        check(a.seconds <= 86400);
    } else {
        check(err[0] != '\0');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] & 1)
        fuzz_env_file((const char *)data + 1, size - 1);
    else
        fuzz_wait_tcp_args(data + 1, size - 1);
    return 0;
}
