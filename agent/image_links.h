/* image_links: `pi-agent image-links`, a step for the image's build (run by
 * the Dockerfile, as root) so that the container can run with a read-only
 * root file system and one EFS root volume. For each dashboard folder of the
 * table (PI_EFS_LINKS, else the default under PI_DASHBOARD_HOME) it moves the
 * image's content to PI_EFS_SEED_DIR/NAME and leaves in its place a symlink to
 * PI_EFS_ROOT/NAME. At run time the agent then only creates, checks and seeds
 * the EFS folders (from the seed location) and finds the links right: the
 * root is never written. Running it again changes nothing. */
#ifndef PI_IMAGE_LINKS_H
#define PI_IMAGE_LINKS_H

#include <stddef.h>

/* Copies the tree at src (a directory) to dst, which must not exist: files,
 * directories and symlinks with their modes, owners and times; never follows
 * a symlink, refuses devices, sockets and FIFOs. Returns 0, or -1 with msg
 * naming the path. */
int image_copy_tree(const char *src, const char *dst, char *msg, size_t cap);

/* The subcommand: one line per folder on stdout; exit 0, 1 when a folder
 * could not be handled (it is named on stderr), 78 for a configuration error. */
int image_links_command(int argc, char **argv);

#endif
