/*
 * fsutil.h - small file-system helpers with durability in mind.
 */
#ifndef MP_FSUTIL_H
#define MP_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* write(2)/pwrite(2) the whole buffer, retrying on EINTR and short writes. */
int write_all(int fd, const void *p, size_t len);
int pwrite_all(int fd, const void *p, size_t len, off_t off);
/* pread(2) exactly len bytes; -1 with errno (EIO on early end of file). */
int pread_all(int fd, void *p, size_t len, off_t off);
/* fsync the directory at path (or the directory fd). */
int fsync_dir(const char *path);
/* mkdir -p with mode for created components; existing ones are kept. */
int mkdir_p(const char *path, mode_t mode);
/* Read a whole (small) file into a malloc'd NUL-terminated buffer. */
char *read_file(const char *path, size_t max, size_t *len_out);

#endif
