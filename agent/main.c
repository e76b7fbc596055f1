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
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "check.h"
#include "childenv.h"
#include "config.h"
#include "dbcheck.h"
#include "efs.h"
#include "emf.h"
#include "exit_run.h"
#include "health.h"
#include "hooks.h"
#include "wait_tcp.h"
#include "image_links.h"
#include "licence.h"
#include "log.h"
#include "loop.h"
#include "metadata.h"
#include "probe.h"
#include "readiness.h"
#include "reap.h"
#include "startup.h"
#include "state.h"
#include "supervise.h"
#include "traffic.h"

#ifndef PI_AGENT_VERSION
#define PI_AGENT_VERSION "0.0.0"
#endif

#define EXIT_INTERNAL 70

extern char **environ;

/* Signals the agent handles through its signalfd; all others keep their
 * default action (as PID 1 the kernel ignores the unhandled ones). */
static const int handled_signals[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT,
                                       SIGUSR1, SIGUSR2, SIGWINCH };

/* Every module's settings, loaded before anything starts. The small ones
 * first, sharing pages; efs's (about 80 KiB of path buffers, mostly unused)
 * last, so the pages it leaves untouched are never made private. */
struct settings {
    struct agent_config agent;
    struct licence_config licence;
    struct health_config health;
    struct probe_config probe;
    struct emf_config emf;
    struct health_policy readiness;
    struct hooks_config hooks;
    struct dbcheck_config db;
    struct traffic_config traffic;
    struct efs_config efs;
};

struct agent {
    struct settings cfg;
    struct agent_state state;
    struct childenv env;
    struct hooks hooks;        /* hook phases under way */
    struct loop *loop;
    struct supervisor *sv;
    struct readiness readiness;
    struct health_server *health;
    struct traffic *traffic;
    struct efs_service efs;
    struct probe *probe;
    struct dbcheck *db;        /* NULL when PI_DB_HOST is unset */
    struct emf emf;
    struct exit_run run;       /* this run's record */
    struct licence_service licence;
    int sigfd;
    bool stop_started;
    uint64_t stop_started_ms;  /* monotonic */
    long drain_timer;
    uint64_t drain_ended_ms;   /* monotonic */
    int exit_status;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: pi-agent [--] [COMMAND [ARG...]]   supervise COMMAND (default: PI_AGENT_COMMAND,\n"
            "                                          else the dashboard's catalina.sh run)\n"
            "       pi-agent health [--live] [--port N]   readiness (or liveness) check: exit 0 on 200\n"
            "       pi-agent licence                  print the licence status as JSON\n"
            "       pi-agent check                    validate the configuration, start nothing\n"
            "       pi-agent du PATH...               apparent size of PATH as the storage budget counts it\n"
            "       pi-agent image-links              image build step: dashboard folders become links\n"
            "                                          into PI_EFS_ROOT (for a read-only root)\n"
            "       pi-agent wait-tcp HOST PORT SECONDS   wait until a TCP port accepts connections\n"
            "       pi-agent task-memory              the ECS task's memory limit in MiB (task metadata)\n"
            "       pi-agent --version | --help\n"
            "\n"
            "pi-agent runs as PID 1 in the Panintelligence dashboard container: it starts Tomcat,\n"
            "forwards signals, reaps zombies and stops gracefully within ECS's stop timeout.\n"
            "Configuration comes from PI_AGENT_* variables; see README.md.\n");
}

static int licence_subcommand(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return licence_command();
}

static int check_subcommand(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return check_command();
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

static int load_config(struct settings *cfg, char **argv_command)
{
    struct config_error err = { "" };

    if (load_logging(&err) != 0 || agent_config_load(&cfg->agent, argv_command, &err) != 0 ||
        licence_config_load(&cfg->licence, &err) != 0 || efs_config_load(&cfg->efs, &err) != 0 ||
        health_config_load(&cfg->health, &err) != 0 || probe_config_load(&cfg->probe, &err) != 0 ||
        emf_config_load(&cfg->emf, &err) != 0 || hooks_config_load(&cfg->hooks, &err) != 0 ||
        traffic_config_load(&cfg->traffic, &cfg->probe, &cfg->emf, cfg->agent.drain_s, &err) != 0) {
        fprintf(stderr, "pi-agent: configuration error: %s\n", err.msg);
        return EXIT_CONFIG;
    }
    dbcheck_config_load(&cfg->db); /* the dashboard's variables: never fatal */
    readiness_policy_make(&cfg->readiness, cfg->licence.required, cfg->efs.over_budget_fail);
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

/* ---- stop phases: drain, pre-stop hooks, stop the child ----------------- */

static uint64_t stop_grace_ms(const struct agent *a)
{
    return (uint64_t)a->cfg.agent.stop_grace_s * 1000u;
}

static void after_pre_stop_hooks(void *ctx)
{
    struct agent *a = ctx;
    /* The hooks' time comes out of the grace: the whole stop never takes
     * longer than drain + grace, whatever the hooks do. */
    uint64_t drain_end = a->drain_ended_ms;
    uint64_t used = loop_now_ms() > drain_end ? loop_now_ms() - drain_end : 0;
    uint64_t left = stop_grace_ms(a) > used ? stop_grace_ms(a) - used : 1;
    supervise_stop(a->sv, (unsigned)left);
}

/* why: "quiet" (Tomcat received nothing for PI_AGENT_DRAIN_QUIET_SECONDS),
 * "maximum" (PI_AGENT_DRAIN_SECONDS reached) or "none" (no drain). */
static void end_drain(struct agent *a, const char *why)
{
    struct loop *loop = a->loop;
    char last[40];
    a->drain_ended_ms = loop_now_ms();
    if (!supervise_child_running(a->sv)) {
        supervise_stop(a->sv, 0);
        return;
    }
    traffic_describe_last(&a->state.traffic, last, sizeof last);
    log_info("drain over: running pre-stop hooks, then stopping the child", LF_STR("reason", why),
             LF_INT("drain_ms", a->drain_ended_ms - a->stop_started_ms),
             LF_STR("last_traffic", last), LF_INT("quiet_s", a->cfg.traffic.drain_quiet_s),
             LF_INT("max_s", a->cfg.agent.drain_s));
    /* Pre-stop hooks may use at most half the grace; Tomcat keeps the rest. */
    if (hooks_run_async(&a->hooks, loop, &a->cfg.hooks, "pre-stop", a->env.vars,
                        stop_grace_ms(a) / 2, &a->state, after_pre_stop_hooks, a) != 0)
        after_pre_stop_hooks(a);
}

static void after_drain(struct loop *loop, void *ctx)
{
    struct agent *a = ctx;
    (void)loop;
    a->drain_timer = 0;
    end_drain(a, a->cfg.agent.drain_s > 0 && supervise_child_running(a->sv) ? "maximum" : "none");
}

/* The traffic count saw Tomcat quiet for long enough: the load balancer
 * stopped sending, so waiting longer only delays the stop. */
static void on_drain_quiet(void *ctx)
{
    struct agent *a = ctx;
    if (a->drain_timer <= 0)
        return; /* the drain is already over */
    loop_timer_cancel(a->loop, a->drain_timer);
    a->drain_timer = 0;
    end_drain(a, "quiet");
}

static void begin_stop(struct agent *a, int sig)
{
    if (a->stop_started) {
        log_info("stop already in progress: signal noted", LF_INT("signal", sig));
        return;
    }
    a->stop_started = true;
    a->stop_started_ms = loop_now_ms();
    exit_run_note_stop(&a->run, &a->state);
    /* /health answers 503 draining from now on, so the ALB stops sending new
     * requests while Tomcat finishes the ones it has. */
    a->state.draining = true;
    state_changed(&a->state);
    unsigned drain_s = supervise_child_running(a->sv) ? a->cfg.agent.drain_s : 0;
    log_info("stop requested", LF_INT("signal", sig), LF_INT("drain_s", drain_s),
             LF_INT("grace_s", a->cfg.agent.stop_grace_s));
    a->drain_timer = loop_timer_add(a->loop, (uint64_t)drain_s * 1000u, 0, after_drain, a);
    if (a->drain_timer < 0) {
        after_drain(a->loop, a);
        return;
    }
    if (drain_s > 0 && traffic_drain_begin(a->traffic, a->stop_started_ms, on_drain_quiet, a))
        log_info("the drain ends once Tomcat is quiet", LF_INT("quiet_s", a->cfg.traffic.drain_quiet_s),
                 LF_INT("max_s", drain_s), LF_STR("source", a->state.traffic.source));
}

static void post_ready_done(void *ctx)
{
    (void)ctx; /* outcomes are logged and recorded by the hooks module */
}

static void on_first_ready(void *ctx)
{
    struct agent *a = ctx;
    exit_run_note_ready(&a->run, &a->state);
    log_info("dashboard ready: running post-ready hooks");
    hooks_run_async(&a->hooks, a->loop, &a->cfg.hooks, "post-ready", a->env.vars, 0, &a->state,
                    post_ready_done, NULL);
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
            supervise_note_reaped(a->sv);
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
    loop_stop(a->loop, exit_status);
}

/* ---- run ---------------------------------------------------------------- */

/* A SIGTERM that arrived while the start phases ran (they can take a while:
 * ALM retries, a first seed) means ECS wants the task gone: do not start
 * Tomcat only to stop it again. */
static int stop_pending(void)
{
    sigset_t pending;
    if (sigpending(&pending) != 0)
        return 0;
    if (sigismember(&pending, SIGTERM) == 1)
        return SIGTERM;
    if (sigismember(&pending, SIGINT) == 1)
        return SIGINT;
    return 0;
}

/* Start phases, in order, before the child exists. Each returns 0 or the
 * exit status that stops the start; a stop request skips the rest (the
 * caller sees it pending). */
static int start_phases(struct agent *a)
{
    int rc;

    metadata_load(&a->state.metadata);
    struct exit_run_where where = { .efs_root = a->cfg.efs.root,
                                    .efs_enabled = a->cfg.efs.mode != EFS_MODE_OFF,
                                    .run_dir = a->cfg.licence.run_dir };
    exit_run_prepare(&a->run, &where, &a->state);
    if (stop_pending())
        return 0;
    rc = licence_start(&a->licence, &a->cfg.licence, &a->cfg.agent.run_as, &a->state, &a->env);
    if (rc != 0 || stop_pending())
        return rc;
    rc = efs_start(&a->efs, &a->cfg.efs, &a->cfg.agent.run_as, &a->state);
    exit_run_begin(&a->run); /* after the storage phase made ROOT/.pi-agent the agent's own */
    if (rc != 0 || stop_pending())
        return rc;
    return hooks_run_sync(&a->hooks, &a->cfg.hooks, "pre-start", &a->env, 0, &a->state);
}

/* Services that live in the loop next to the child. */
static int attach_services(struct agent *a)
{
    a->health = health_server_start(a->loop, &a->cfg.health, &a->state, &a->readiness);
    if (a->health == NULL)
        return EXIT_CONFIG; /* the bind error was logged, naming the variables */
    a->traffic = traffic_start(a->loop, &a->cfg.traffic, &a->state);
    if (a->traffic == NULL || (a->probe = probe_start(a->loop, &a->cfg.probe, &a->state)) == NULL)
        return EXIT_INTERNAL;
    /* From here on every state_changed() derives readiness. */
    a->readiness.probe = a->probe;
    readiness_attach(&a->readiness, &a->state, &a->cfg.readiness, on_first_ready, a);
    if (emf_attach(&a->emf, a->loop, &a->cfg.emf, &a->state, &a->readiness) != 0 ||
        efs_attach(&a->efs, a->loop) != 0 ||
        dbcheck_start(a->loop, &a->cfg.db, a->cfg.probe.interval_s, &a->state, &a->db) != 0 ||
        licence_attach(&a->licence, a->loop) != 0 ||
        startup_attach(a->loop, a->cfg.agent.startup_timeout_s, &a->state) != 0 ||
        exit_run_attach(&a->run, a->loop, &a->state) != 0)
        return EXIT_INTERNAL;
    return 0;
}

/* After the child is gone for good: post-stop hooks in what is left of the
 * stop window (the task is being stopped), or within their own limits. */
static void stop_phases(struct agent *a)
{
    uint64_t budget = 0;
    if (a->stop_started) {
        uint64_t window = (uint64_t)a->cfg.agent.drain_s * 1000u + stop_grace_ms(a);
        uint64_t used = loop_now_ms() - a->stop_started_ms;
        if (used >= window) {
            log_warn("no time left in the stop window: post-stop hooks skipped");
            return;
        }
        budget = window - used;
    }
    hooks_run_sync(&a->hooks, &a->cfg.hooks, "post-stop", &a->env, budget, &a->state);
}

/* The start phases run deeper than the loop ever does again (paths, log
 * lines, worker reports on the stack): give those stack pages back rather
 * than keep them as private memory for the agent's whole life. Everything
 * below this frame is dead; a margin stays for the loop's own frames. */
static void __attribute__((noinline)) release_start_stack(void)
{
    const uintptr_t page = 4096, depth = 256 * 1024;
    volatile char here = 0;
    uintptr_t top = ((uintptr_t)&here & ~(page - 1)) - 2 * page;
    /* The part of the range below the stack's mapping gives ENOMEM: harmless. */
    (void)madvise((void *)(top - depth), depth, MADV_DONTNEED);
    (void)here;
}

/* Everything from the first log line to the child's end. Fills f with what
 * exit_decide needs; returns -1 when the child ran to its end, else the
 * status the start (or the agent itself) stopped with. */
static int run_until_end(struct agent *a, struct exit_facts *f)
{
    int rc, sig;

    a->state.started_ms = wall_now_ms();
    if (getpid() != 1 && prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        log_warn("cannot become a child subreaper: orphans will not be reaped",
                 LF_STR("error", strerror(errno)));
    a->sigfd = block_signals();
    if (a->sigfd < 0) {
        log_error("cannot set up signal handling", LF_STR("error", strerror(errno)));
        return f->internal_rc = EXIT_INTERNAL;
    }
    log_info("pi-agent starting", LF_STR("version", PI_AGENT_VERSION), LF_INT("pid", getpid()),
             LF_BOOL("subreaper", getpid() != 1));
    if (childenv_init(&a->env, environ) != 0) {
        log_error("out of memory");
        return f->internal_rc = EXIT_INTERNAL;
    }

    rc = start_phases(a);
    if ((sig = stop_pending()) != 0) {
        log_info("stop requested during start-up: the dashboard is not started", LF_INT("signal", sig));
        f->start_signal = sig;
        return 128 + sig;
    }
    if (rc != 0) {
        log_error("start stopped before the dashboard was started", LF_INT("exit_status", rc));
        return f->start_rc = rc;
    }

    a->loop = loop_new();
    if (a->loop == NULL)
        return f->internal_rc = EXIT_INTERNAL;
    a->sv = supervise_new(a->loop, &a->cfg.agent, &a->state, on_child_gone, a);
    if (a->sv == NULL || loop_add_fd(a->loop, a->sigfd, EPOLLIN, on_signal, a) != 0) {
        log_error("cannot set up the event loop", LF_STR("error", strerror(errno)));
        return f->internal_rc = EXIT_INTERNAL;
    }
    rc = attach_services(a);
    if (rc == EXIT_INTERNAL)
        return f->internal_rc = rc;
    if (rc != 0)
        return f->start_rc = rc;
    exit_run_child_starting(&a->run);
    if (supervise_start(a->sv, a->env.vars) != 0)
        return f->internal_rc = EXIT_INTERNAL;

    release_start_stack();
    rc = loop_run(a->loop);
    if (rc < 0) {
        kill_descendants(0);
        return f->internal_rc = EXIT_INTERNAL;
    }
    struct supervise_outcome out;
    supervise_get_outcome(a->sv, &out);
    f->child_started = out.started;
    f->wait_status = out.wait_status;
    f->killed_after_grace = out.killed_after_grace;
    f->stop_requested = a->stop_started;
    f->startup_timed_out = a->state.startup_timed_out;
    readiness_detach(&a->readiness);
    health_server_free(a->health);
    a->health = NULL;
    probe_free(a->probe);
    a->probe = NULL;
    traffic_free(a->traffic);
    a->traffic = NULL;
    stop_phases(a);
    /* The child's clean-up spared the agent's own workers (a budget scan, a
     * licence refresh): they end with the agent. */
    kill_descendants(0);
    return -1;
}

static int run(struct agent *a)
{
    struct exit_facts f = { .stop_exit_status = a->cfg.agent.stop_exit_status };
    int rc = run_until_end(a, &f);
    if (rc >= 0 && !f.start_signal && !f.start_rc && !f.internal_rc)
        f.internal_rc = rc;
    /* The run record says how it ended, and decides the status: a stop
     * asked for may exit with PI_AGENT_STOP_EXIT_STATUS. */
    int status = exit_run_end(&a->run, &f, &a->state);
    if (rc < 0)
        log_info("pi-agent exiting", LF_INT("exit_status", status),
                 LF_INT("child_exit_status", a->exit_status));
    return status;
}

/* Subcommands are small tools of their own; none of them starts anything. */
static const struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
} subcommands[] = {
    { "health", health_command },
    { "licence", licence_subcommand },
    { "license", licence_subcommand },
    { "check", check_subcommand },
    { "du", efs_du_command },
    { "image-links", image_links_command },
    { "wait-tcp", wait_tcp_main },
    { "task-memory", metadata_memory_command },
};

int main(int argc, char **argv)
{
    static struct agent agent;
    char **command = NULL;
    int rc;

    if (argc > 1) {
        const char *arg = argv[1];
        for (size_t i = 0; i < sizeof subcommands / sizeof subcommands[0]; i++) {
            if (strcmp(arg, subcommands[i].name) == 0) {
                struct config_error err = { "" };
                if (load_logging(&err) != 0) {
                    fprintf(stderr, "pi-agent: configuration error: %s\n", err.msg);
                    return EXIT_CONFIG;
                }
                return subcommands[i].run(argc - 1, argv + 1);
            }
        }
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

    rc = load_config(&agent.cfg, command);
    if (rc != 0) {
        exit_run_config_failed(rc);
        return rc;
    }
    rc = run(&agent);
    licence_config_free(&agent.cfg.licence);
    agent_config_free(&agent.cfg.agent);
    return rc;
}
