/* hooks_list: which hooks a phase runs. Root runs them, so a hook and its
 * folders must be root's (or the agent's user's) and writable by it alone;
 * anything else is refused with a line saying why. */
#ifndef PI_HOOKS_LIST_H
#define PI_HOOKS_LIST_H

#include <stddef.h>

struct hook_list {
    char **names;   /* file names (not paths), sorted with strcmp */
    size_t count;
    char refused[320]; /* why the folder was refused, "" when it was not */
};

/* Lists the runnable hooks in dir: regular files (symlinks followed) with an
 * execute bit, not starting with '.'; others are skipped with a debug line.
 * Root runs them: a hook that is not root's (or the agent's user's) or that
 * group or others can write is refused with an error line and skipped.
 * A missing dir is an empty list. Returns 0, or -1 with errno when dir exists
 * but cannot be read, or with errno EPERM and out->refused saying why when dir
 * (or its parent, PI_AGENT_HOOKS_DIR) is not root's or is writable by group or
 * others. */
int hooks_list(const char *dir, struct hook_list *out);
void hooks_list_free(struct hook_list *list);

#endif
