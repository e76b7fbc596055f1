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

#include "exit_record.h"

struct loop;
struct agent_state;

struct exit_run_where {
    const char *efs_root;    /* PI_EFS_ROOT */
    bool efs_enabled;        /* PI_EFS_MODE is not off */
    const char *run_dir;     /* PI_AGENT_RUN_DIR */
};

/* After the task metadata is known: this run's record, in memory. */
void exit_run_prepare(const struct exit_run_where *where, struct agent_state *state);
/* After the storage start phase (which makes ROOT/.pi-agent the agent's
 * own): opens the records folder and writes the record. A start that stops
 * earlier has it written by exit_run_end. */
void exit_run_begin(void);
/* Right before Tomcat starts: the cgroup's OOM kill counter to compare with
 * at the end. */
void exit_run_child_starting(void);
/* Updates the record: first ready, stop requested. */
void exit_run_note_ready(const struct agent_state *state);
void exit_run_note_stop(const struct agent_state *state);
/* Inside the loop: recounts the fleet's recent abnormal ends every minute. */
int exit_run_attach(struct loop *loop, struct agent_state *state);
/* Decides how the run ended (facts->oom_killed is filled here from the
 * cgroup's counter), logs it, completes the record. Returns the status
 * pi-agent exits with. */
int exit_run_end(struct exit_facts *facts, const struct agent_state *state);

/* A configuration error before anything was loaded: records a run that
 * ended with reason "config", finding the folder from the raw variables. */
void exit_run_config_failed(int exit_status);

#endif
