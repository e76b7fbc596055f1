/* execprep: what a forked process does just before exec'ing a program of
 * someone else's (Tomcat, a hook): start it the way a shell would, with no
 * blocked or ignored signal and only file descriptors 0, 1 and 2. */
#ifndef PI_EXECPREP_H
#define PI_EXECPREP_H

/* Every signal back to its default action, the libc-reserved ones included
 * (an ignored signal survives exec), and an empty signal mask. */
void execprep_reset_signals(void);
/* Closes every descriptor from 3 up but keep (-1 for none): close-on-exec
 * covers the agent's own, this covers whatever the agent itself inherited. */
void execprep_close_fds(int keep);

#endif
