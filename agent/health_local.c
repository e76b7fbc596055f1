/* health_local: the unix socket the container check asks first. See
 * health_server.h. */
#include "health_server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

/* ---- the unix socket ---------------------------------------------------- */

/* Opens run_dir/health.sock for the container check. The directory must be
 * ours and writable by nobody else; the socket is reached through the
 * directory's descriptor (/proc/self/fd/N/...), so a path component swapped
 * for a link meanwhile leads nowhere. A socket left by an agent that was
 * killed is replaced; one that answers (another agent) is left alone.
 * Returns the listening descriptor, or -1 after a warning: the TCP endpoint
 * then serves the container check alone. */
int health_local_open(struct health_server *srv)
{
    const char *dir = srv->cfg->run_dir;
    const char *why = NULL;
    int dfd = -1, fd = -1;
    struct stat st;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };

    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        why = "cannot create the directory";
        goto fail;
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0 || fstat(dfd, &st) != 0) {
        why = "cannot open the directory";
        goto fail;
    }
    if (st.st_uid != geteuid() || (st.st_mode & 022) != 0) {
        errno = EPERM;
        why = "the directory is not the agent's own or others can write to it";
        goto fail;
    }
    snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/%s", dfd, HEALTH_SOCKET_NAME);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
        why = "cannot create a unix socket";
        goto fail;
    }
    if (fstatat(dfd, HEALTH_SOCKET_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            errno = EEXIST;
            why = "something other than a socket has the name; left alone";
            goto fail;
        }
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 || errno == EAGAIN) {
            errno = EADDRINUSE;
            why = "another agent answers on it; left alone";
            goto fail;
        }
        close(fd);
        if (unlinkat(dfd, HEALTH_SOCKET_NAME, 0) != 0 && errno != ENOENT) {
            fd = -1;
            why = "cannot remove the stale socket";
            goto fail;
        }
        if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
            why = "cannot create a unix socket";
            goto fail;
        }
    }
    /* 0600 from the start: only the agent's own uid may connect. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc != 0 || fstatat(dfd, HEALTH_SOCKET_NAME, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        why = "cannot create the socket";
        goto fail;
    }
    srv->sock_dev = st.st_dev;
    srv->sock_ino = st.st_ino;
    if (listen(fd, 64) != 0) {
        int saved = errno;
        unlinkat(dfd, HEALTH_SOCKET_NAME, 0);
        errno = saved;
        why = "cannot listen on the socket";
        goto fail;
    }
    srv->run_dir_fd = dfd;
    return fd;
fail:
    log_warn("health: no unix socket for the container check (it uses the TCP endpoint); check "
             "PI_AGENT_RUN_DIR", LF_STR("path", dir), LF_STR("socket", HEALTH_SOCKET_NAME),
             LF_STR("reason", why), LF_STR("error", strerror(errno)));
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    return -1;
}

/* Removes health.sock if it is still the one this agent created. */
void health_local_close(struct health_server *srv)
{
    if (srv->run_dir_fd < 0)
        return;
    struct stat st;
    if (fstatat(srv->run_dir_fd, HEALTH_SOCKET_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        st.st_dev == srv->sock_dev && st.st_ino == srv->sock_ino)
        unlinkat(srv->run_dir_fd, HEALTH_SOCKET_NAME, 0);
    close(srv->run_dir_fd);
    srv->run_dir_fd = -1;
}
