/*
 * safe_open.c - open or create a mailbox file without being tricked.
 *
 * The name is looked at with lstat first (no symlink, regular file, one
 * link, owned by us), then opened with O_NOFOLLOW and O_NONBLOCK (a FIFO or
 * device slipped in cannot block us), and the open file must be the very
 * file that was looked at.  A missing file is created with O_EXCL, so a
 * file or symlink planted between the two steps makes us look again.
 */
#include "lib/safe_open.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SAFE_OPEN_TRIES 5

static int refuse(int err_no, char *err, size_t errlen, const char *reason)
{
	snprintf(err, errlen, "%s", reason);
	errno = err_no;
	return -1;
}

/* 0 if st describes a file we may append to; -1 with errno and err. */
static int check_file(const struct stat *st, char *err, size_t errlen)
{
	if (S_ISLNK(st->st_mode))
		return refuse(ELOOP, err, errlen, "is a symbolic link");
	if (S_ISDIR(st->st_mode))
		return refuse(EISDIR, err, errlen, "is a directory");
	if (!S_ISREG(st->st_mode))
		return refuse(EPERM, err, errlen, "is not a regular file");
	if (st->st_nlink > 1) {
		snprintf(err, errlen, "has %lu hard links", (unsigned long)st->st_nlink);
		errno = EMLINK;
		return -1;
	}
	if (st->st_uid != geteuid()) {
		snprintf(err, errlen, "is owned by uid %lu, not by uid %lu",
		    (unsigned long)st->st_uid, (unsigned long)geteuid());
		errno = EPERM;
		return -1;
	}
	return 0;
}

static int fail_errno(char *err, size_t errlen)
{
	int saved = errno;
	snprintf(err, errlen, "%s", strerror(saved));
	errno = saved;
	return -1;
}

static int close_and_fail(int fd)
{
	int saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

/* Create name; 1 if it appeared meanwhile (look again), fd or -1. */
static int create_new(int dirfd, const char *name, int flags, mode_t mode, struct stat *st,
    char *err, size_t errlen, int *again)
{
	int fd = openat(dirfd, name, flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, mode);
	if (fd < 0) {
		if (errno == EEXIST) {
			*again = 1;
			return -1;
		}
		return fail_errno(err, errlen);
	}
	if (fstat(fd, st) < 0) {
		fail_errno(err, errlen);
		return close_and_fail(fd);
	}
	if (check_file(st, err, errlen) < 0)
		return close_and_fail(fd);
	return fd;
}

/* Open the existing file described by lst; again is set if it changed. */
static int open_existing(int dirfd, const char *name, int flags, const struct stat *lst,
    struct stat *st, char *err, size_t errlen, int *again)
{
	int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {
			*again = 1;
			return -1;
		}
		if (errno == ELOOP)
			return refuse(ELOOP, err, errlen, "is a symbolic link");
		return fail_errno(err, errlen);
	}
	if (fstat(fd, st) < 0) {
		fail_errno(err, errlen);
		return close_and_fail(fd);
	}
	if (st->st_dev != lst->st_dev || st->st_ino != lst->st_ino || st->st_nlink == 0) {
		close(fd);
		*again = 1;
		return -1;
	}
	if (check_file(st, err, errlen) < 0)
		return close_and_fail(fd);
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		fail_errno(err, errlen);
		return close_and_fail(fd);
	}
	return fd;
}

int safe_open_append_at(int dirfd, const char *name, int flags, mode_t mode, struct stat *st,
    char *err, size_t errlen)
{
	flags &= ~(O_CREAT | O_EXCL | O_TRUNC);
	for (int i = 0; i < SAFE_OPEN_TRIES; i++) {
		struct stat lst;
		int again = 0, fd;

		if (fstatat(dirfd, name, &lst, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				return fail_errno(err, errlen);
			fd = create_new(dirfd, name, flags, mode, st, err, errlen, &again);
		} else {
			if (check_file(&lst, err, errlen) < 0)
				return -1;
			fd = open_existing(dirfd, name, flags, &lst, st, err, errlen, &again);
		}
		if (fd >= 0 || !again)
			return fd;
	}
	return refuse(EAGAIN, err, errlen, "kept changing while being opened");
}

int safe_open_append(const char *path, int flags, mode_t mode, struct stat *st,
    char *err, size_t errlen)
{
	return safe_open_append_at(AT_FDCWD, path, flags, mode, st, err, errlen);
}
