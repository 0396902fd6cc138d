/*
 * safe_open.h - opening mailbox files without following an attacker's
 * symlink or hard link (in the spirit of Postfix's safe_open).
 */
#ifndef MP_SAFE_OPEN_H
#define MP_SAFE_OPEN_H

#include <stddef.h>
#include <sys/stat.h>

/* Open an existing regular file or create it (mode), refusing symlinks
 * (O_NOFOLLOW), files with more than one link, and files not owned by the
 * caller's euid.  flags are the open(2) access flags (e.g. O_WRONLY|O_APPEND).
 * On success returns the fd and fills st; -1 with errno and a reason. */
int safe_open_append(const char *path, int flags, mode_t mode, struct stat *st,
    char *err, size_t errlen);

/* The same for name relative to the directory dirfd (or AT_FDCWD). */
int safe_open_append_at(int dirfd, const char *name, int flags, mode_t mode, struct stat *st,
    char *err, size_t errlen);

#endif
