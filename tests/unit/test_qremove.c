/*
 * test_qremove.c - queue_remove(): a finished queue file's removal is made
 * durable by an fsync of its directory after the unlink (fsync and
 * unlinkat are wrapped with the linker's --wrap to see the order of the
 * calls; they still run).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "queue/qfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int __real_fsync(int fd);
int __real_unlinkat(int dirfd, const char *path, int flags);
int __wrap_fsync(int fd);
int __wrap_unlinkat(int dirfd, const char *path, int flags);

/* The calls seen, in order: 'u' unlinkat, 'f' fsync, with their fds. */
static char calls[16];
static int call_fd[16];
static int ncalls;

static void note(char what, int fd)
{
	if (ncalls < (int)sizeof(calls)) {
		calls[ncalls] = what;
		call_fd[ncalls++] = fd;
	}
}

int __wrap_fsync(int fd)
{
	note('f', fd);
	return __real_fsync(fd);
}

int __wrap_unlinkat(int dirfd, const char *path, int flags)
{
	note('u', dirfd);
	return __real_unlinkat(dirfd, path, flags);
}

static void test_remove_is_synced(void **state)
{
	char dir[] = "/tmp/test_qremove.XXXXXX";
	char path[64];

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/0ABC", dir);
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(dfd >= 0);

	ncalls = 0;
	assert_int_equal(queue_remove(dfd, "0ABC"), 0);
	assert_int_equal(access(path, F_OK), -1);
	/* the unlink, then an fsync of the same directory */
	assert_int_equal(ncalls, 2);
	assert_int_equal(calls[0], 'u');
	assert_int_equal(calls[1], 'f');
	assert_int_equal(call_fd[0], dfd);
	assert_int_equal(call_fd[1], dfd);

	/* nothing to remove: an error, and no fsync */
	ncalls = 0;
	assert_int_equal(queue_remove(dfd, "0ABC"), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(ncalls, 1);
	assert_int_equal(calls[0], 'u');

	close(dfd);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_remove_is_synced),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
