/* exit_run: this run's record (exit_record.h, exit_history.h) through the
 * agent's life. At start it reads the records (in a worker), logs the
 * previous run of this task family as one line (msg "previous run"), fills
 * state->previous_run and the fleet's count of recent abnormal ends, and
 * writes this run's record; it notes the first ready and a stop request;
 * at exit it decides how the run ended and completes the record. A failure
 * to keep records is one warning: it never stops the dashboard. */
#ifndef PI_EXIT_RUN_H
#define PI_EXIT_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "exit_history.h"
#include "exit_record.h"

struct loop;
struct agent_state;

struct exit_run_where {
    const char *efs_root;    /* PI_EFS_ROOT */
    bool efs_enabled;        /* PI_EFS_MODE is not off */
    const char *run_dir;     /* PI_AGENT_RUN_DIR */
};

/* This run's record through the agent's life: the agent holds one (zeroed
 * before exit_run_prepare) and passes it to every call below. */
struct exit_run {
    bool open;
    struct exit_history h;
    struct exit_record rec;
    bool have_oom_base;
    uint64_t oom_base;
    bool counting;
    struct loop *loop;
    pid_t update_pid;     /* a worker writing an update, 0 when none */
    bool update_pending;  /* another update came while it ran */
    struct agent_state *state;
    struct exit_run_where where;
    bool read_once;       /* the first reading (previous run, pruning) is done */
    bool ending;          /* exit_run_end runs: late worker reports are not taken */
    bool prepared;        /* exit_run_prepare ran: rec and where are set */
    bool store_tried;     /* the records folder was opened (or could not be) */
};

/* After the task metadata is known: this run's record, in memory. */
void exit_run_prepare(struct exit_run *run, const struct exit_run_where *where,
                      struct agent_state *state);
/* After the storage start phase (which makes ROOT/.pi-agent the agent's
 * own): opens the records folder and writes the record. A start that stops
 * earlier has it written by exit_run_end. */
void exit_run_begin(struct exit_run *run);
/* Right before Tomcat starts: the cgroup's OOM kill counter to compare with
 * at the end. */
void exit_run_child_starting(struct exit_run *run);
/* Updates the record: first ready, stop requested. */
void exit_run_note_ready(struct exit_run *run, const struct agent_state *state);
void exit_run_note_stop(struct exit_run *run, const struct agent_state *state);
/* Inside the loop: recounts the fleet's recent abnormal ends every minute. */
int exit_run_attach(struct exit_run *run, struct loop *loop, struct agent_state *state);
/* Decides how the run ended (facts->oom_killed is filled here from the
 * cgroup's counter), logs it, completes the record. Returns the status
 * pi-agent exits with. */
int exit_run_end(struct exit_run *run, struct exit_facts *facts, const struct agent_state *state);

/* A configuration error before anything was loaded: records a run that
 * ended with reason "config", finding the folder from the raw variables. */
void exit_run_config_failed(int exit_status);

#endif
