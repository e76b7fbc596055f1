/* pi-agent: PID 1 for the Panintelligence dashboard container.
 *
 * main wires the modules in the one direction data flows:
 *   config -> start phases -> event loop -> stop phases -> exit
 * Every module owns its settings and its work; main only orders them. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "childenv.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "metadata.h"
#include "reap.h"
#include "state.h"
#include "supervise.h"

#ifndef PI_AGENT_VERSION
#define PI_AGENT_VERSION "0.0.0"
#endif

#define EXIT_INTERNAL 70

extern char **environ;

/* Signals the agent handles through its signalfd; all others keep their
 * default action (as PID 1 the kernel ignores the unhandled ones). */
static const int handled_signals[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT,
                                       SIGUSR1, SIGUSR2, SIGWINCH };

struct agent {
    struct agent_config cfg;
    struct agent_state state;
    struct childenv env;
    struct loop *loop;
    struct supervisor *sv;
    int sigfd;
    bool stop_started;
    int exit_status;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pi-agent [--] [COMMAND [ARG...]]   supervise COMMAND (default: PI_AGENT_COMMAND,\n"
            "                                          else the dashboard's catalina.sh run)\n"
            "       pi-agent --version | --help\n"
            "\n"
            "pi-agent runs as PID 1 in the Panintelligence dashboard container: it starts Tomcat,\n"
            "forwards signals, reaps zombies and stops gracefully within ECS's stop timeout.\n"
            "Configuration comes from PI_AGENT_* variables; see README.md.\n");
}

/* ---- configuration ------------------------------------------------------ */

static int load_logging(struct config_error *err)
{
    enum log_level level = LOG_INFO;
    enum log_format format = LOG_FORMAT_JSON;
    const char *v;

    if ((v = config_env_str("PI_AGENT_LOG_LEVEL")) && log_parse_level(v, &level) != 0)
        return config_fail(err, "PI_AGENT_LOG_LEVEL", "expected debug, info, warn or error, got \"%.40s\"", v);
    if ((v = config_env_str("PI_AGENT_LOG_FORMAT")) && log_parse_format(v, &format) != 0)
        return config_fail(err, "PI_AGENT_LOG_FORMAT", "expected json or text, got \"%.40s\"", v);
    log_setup(level, format);
    return 0;
}

static int load_config(struct agent *a, char **argv_command)
{
    struct config_error err = { "" };

    if (load_logging(&err) != 0 || agent_config_load(&a->cfg, argv_command, &err) != 0) {
        fprintf(stderr, "pi-agent: configuration error: %s\n", err.msg);
        return EXIT_CONFIG;
    }
    return 0;
}

/* ---- signals and reaping ------------------------------------------------ */

static int block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof handled_signals / sizeof handled_signals[0]; i++)
        sigaddset(&set, handled_signals[i]);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    /* A closed health connection must not kill PID 1. */
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void begin_stop(struct agent *a, int sig)
{
    if (a->stop_started) {
        log_info("stop already in progress: signal noted", LF_INT("signal", sig));
        return;
    }
    a->stop_started = true;
    a->state.draining = true;
    log_info("stop requested", LF_INT("signal", sig), LF_INT("grace_s", a->cfg.stop_grace_s));
    supervise_stop(a->sv, 0);
}

static void on_signal(struct loop *loop, int fd, uint32_t events, void *ctx)
{
    struct agent *a = ctx;
    struct signalfd_siginfo si;
    (void)loop;
    (void)events;

    while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
        int sig = (int)si.ssi_signo;
        switch (sig) {
        case SIGCHLD:
            reap_all();
            supervise_note_reaped();
            break;
        case SIGTERM:
        case SIGINT:
            begin_stop(a, sig);
            break;
        default:
            supervise_forward(a->sv, sig);
            break;
        }
    }
}

static void on_child_gone(struct supervisor *sv, int exit_status, void *ctx)
{
    struct agent *a = ctx;
    (void)sv;
    a->exit_status = exit_status;
    log_info("pi-agent exiting", LF_INT("exit_status", exit_status));
    loop_stop(a->loop, exit_status);
}

/* ---- run ---------------------------------------------------------------- */

static int run(struct agent *a)
{
    int rc;

    a->state.started_ms = wall_now_ms();
    if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        log_warn("cannot become a child subreaper: orphans will not be reaped",
                 LF_STR("error", strerror(errno)));
    a->sigfd = block_signals();
    if (a->sigfd < 0) {
        log_error("cannot set up signal handling", LF_STR("error", strerror(errno)));
        return EXIT_INTERNAL;
    }
    log_info("pi-agent starting", LF_STR("version", PI_AGENT_VERSION), LF_INT("pid", getpid()),
             LF_BOOL("subreaper", getpid() != 1));

    metadata_load(&a->state.metadata);

    if (childenv_init(&a->env, environ) != 0) {
        log_error("out of memory");
        return EXIT_INTERNAL;
    }

    a->loop = loop_new();
    if (a->loop == NULL)
        return EXIT_INTERNAL;
    a->sv = supervise_new(a->loop, &a->cfg, &a->state, on_child_gone, a);
    if (a->sv == NULL || loop_add_fd(a->loop, a->sigfd, EPOLLIN, on_signal, a) != 0) {
        log_error("cannot set up the event loop", LF_STR("error", strerror(errno)));
        return EXIT_INTERNAL;
    }
    if (supervise_start(a->sv, a->env.vars) != 0)
        return EXIT_INTERNAL;

    rc = loop_run(a->loop);
    if (rc < 0) {
        kill_descendants(0);
        return EXIT_INTERNAL;
    }
    return a->exit_status;
}

int main(int argc, char **argv)
{
    static struct agent agent;
    char **command = NULL;
    int rc;

    if (argc > 1) {
        const char *arg = argv[1];
        if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0) {
            printf("pi-agent %s\n", PI_AGENT_VERSION);
            return 0;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(arg, "--") == 0) {
            command = argv + 2;
            if (command[0] == NULL) {
                fprintf(stderr, "pi-agent: expected a command after --\n");
                return EXIT_CONFIG;
            }
        } else if (arg[0] == '-') {
            fprintf(stderr, "pi-agent: unknown option %s (try --help)\n", arg);
            return EXIT_CONFIG;
        } else {
            command = argv + 1;
        }
    }

    rc = load_config(&agent, command);
    if (rc != 0)
        return rc;
    rc = run(&agent);
    agent_config_free(&agent.cfg);
    return rc;
}
