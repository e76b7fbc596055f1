/* fsafe: file operations, as root, in folders that another user can write
 * (the EFS root, the dashboard's folders, Tomcat's logs). Nothing planted
 * there can steer them: every step starts from a directory descriptor, no
 * symlink is followed, files are created O_CREAT | O_EXCL | O_NOFOLLOW under
 * random names, and owners change only through a descriptor of a directory
 * (never a name, never a file with more than one link).
 *
 * Errors follow one convention: -1 with errno set; functions that can say
 * more take a msg buffer ("PATH: what was found"). */
#ifndef PI_FSAFE_H
#define PI_FSAFE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Opens rel (a relative path, no ".." parts) beneath dirfd without following
 * any symlink on any component. flags apply to the last component (O_CLOEXEC
 * and O_NOFOLLOW are added); intermediate components are opened
 * O_DIRECTORY | O_NOFOLLOW. Uses openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) where the kernel has it, a component-by-component walk
 * otherwise. A symlink on the way fails with ELOOP (or ENOTDIR). */
int fsafe_openat(int dirfd, const char *rel, int flags, mode_t mode);

/* Opens the directory at the absolute path abs, following only symlinks that
 * only root could have made: owned by root, in a directory owned by root and
 * not writable by group or others. Any other symlink fails with ELOOP. With
 * create, missing components are made (mode 0755, root's). */
int fsafe_open_dir_trusted(const char *abs, bool create);

/* n random bytes as 2n hex digits into out (cap >= 2n + 1). Returns 0/-1. */
int fsafe_random_hex(char *out, size_t cap, size_t n);

/* Creates a new file in dirfd named prefix + 16 random hex digits, opened
 * O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC with mode. The name
 * goes to name (cap >= strlen(prefix) + 17). Returns the fd or -1. */
int fsafe_tmpfile(int dirfd, const char *prefix, mode_t mode, char *name, size_t cap);

/* Writes data to dirfd/name all at once: a random temporary (see
 * fsafe_tmpfile) is written, given mode (and the owner when uid != -1),
 * fsynced and renamed over name; the folder is fsynced. A reader sees the old
 * content or the new one. Returns 0, or -1 with errno and *step naming the
 * step that failed. */
int fsafe_write_replace(int dirfd, const char *name, const void *data, size_t len, mode_t mode,
                        uid_t uid, gid_t gid, const char **step);

/* Creates dirfd/name as a directory (mode) when missing and opens it
 * O_DIRECTORY | O_NOFOLLOW. *created tells whether this call made it. A
 * symlink or a file there fails (ELOOP / ENOTDIR); it is left as it is. */
int fsafe_mkdir_open(int dirfd, const char *name, mode_t mode, bool *created);

/* Gives the directory open on fd to uid:gid (fchown through the descriptor:
 * never a name, never a file). Returns 0/-1. */
int fsafe_chown_dir(int fd, uid_t uid, gid_t gid);

/* Gives the symlink dirfd/name to uid:gid, checked through a descriptor: if
 * name has been swapped for anything but a symlink, nothing changes and
 * errno is EPERM. */
int fsafe_chown_symlink(int dirfd, const char *name, uid_t uid, gid_t gid);

/* Moves dirfd/name aside to name + "." + label + "-" + random hex, never
 * replacing anything (renameat2 RENAME_NOREPLACE; plain renameat of the
 * random name where the file system lacks it). Renaming a symlink never
 * touches its target. The new name goes to moved (may be NULL). */
int fsafe_move_aside(int dirfd, const char *name, const char *label, char *moved, size_t cap);

/* The uid the file system gives the agent's new files in dirfd: the agent's
 * own, unless identities are mapped (an EFS access point's POSIX user, root
 * squashing). Found by creating (and removing) a random temporary. */
uid_t fsafe_new_owner(int dirfd);
/* Is uid the agent's (its own, or the one its new files in dirfd get)? */
bool fsafe_owner_ok(int dirfd, uid_t uid);

/* A private directory of the agent's: owned by the agent's uid, mode 0700,
 * not a link. fsafe_private_dir opens dirfd/name as one: created when
 * missing; an honest earlier version of it (the agent's own, writable by
 * nobody else) is tightened to 0700; anything else (a symlink, a file, a
 * folder another user owns or can write) is moved aside as
 * name.refused-RANDOM and a fresh one created. *moved (may be NULL) gets the
 * name it was moved to, "" when nothing was. Where the file system gives
 * the agent's new files to another uid (identities mapped), a folder of that
 * uid is accepted, and msg then holds a warning to log. Returns the fd (msg ""
 * or that warning), or -1 with msg naming what was found and why it could not
 * be used. */
int fsafe_private_dir(int dirfd, const char *name, const char *display, char *moved,
                      size_t moved_cap, char *msg, size_t cap);

/* What a directory entry is, in words, for messages: "a symlink to /etc",
 * "a file", "a folder owned by uid 1000", "a folder writable by others". */
void fsafe_describe(int dirfd, const char *name, char *out, size_t cap);

#ifdef PI_UNIT_TEST
/* Lets the unit tests take the component-by-component walk. */
extern bool fsafe_test_without_openat2;
#endif

#endif
