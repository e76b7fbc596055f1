/* execprep: a clean start for exec'd programs. */
#include "execprep.h"

#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The kernel's own struct sigaction: libc's sigaction() refuses the signals
 * it reserves for itself (32-34 in musl, 32-33 in glibc), but a parent may
 * have left them ignored, and an ignored signal stays ignored across exec. */
struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
};

void execprep_reset_signals(void)
{
    struct kernel_sigaction dfl;
    sigset_t none;

    memset(&dfl, 0, sizeof dfl);
    dfl.handler = SIG_DFL;
    for (int sig = 1; sig < 65; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL);
}

static void close_range_(unsigned first, unsigned last)
{
    if (first > last)
        return;
#ifdef SYS_close_range
    if (syscall(SYS_close_range, first, last, 0u) == 0)
        return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (unsigned fd = first; fd <= last && fd < (unsigned)max; fd++)
        (void)close((int)fd);
}

void execprep_close_fds(int keep)
{
    if (keep < 3) {
        close_range_(3, ~0u);
        return;
    }
    close_range_(3, (unsigned)keep - 1);
    close_range_((unsigned)keep + 1, ~0u);
}
