/*
 * test_qremove.c - queue_remove_noted() and queue_removals_sync(): finished
 * queue files are unlinked at once, and one fsync per directory after the
 * unlinks makes the removals of a group durable (fsync and unlinkat are
 * wrapped with the linker's --wrap to see the order of the calls; they
 * still run).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "queue/qfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int __real_fsync(int fd);
int __real_unlinkat(int dirfd, const char *path, int flags);
int __real_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
int __wrap_fsync(int fd);
int __wrap_unlinkat(int dirfd, const char *path, int flags);
int __wrap_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);

/* The calls seen, in order: 'u' unlinkat, 'f' fsync, 'r' renameat, with
 * their (first) fds. */
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

int __wrap_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
	note('r', olddirfd);
	return __real_renameat(olddirfd, oldpath, newdirfd, newpath);
}

static void make_file(const char *dir, const char *name)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
}

static int exists(const char *dir, const char *name)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

static void test_group_shares_one_fsync(void **state)
{
	char a[] = "/tmp/test_qremove.XXXXXX", b[] = "/tmp/test_qremove.XXXXXX";
	struct queue_removals r = QUEUE_REMOVALS_INIT;

	assert_non_null(mkdtemp(a));
	assert_non_null(mkdtemp(b));
	make_file(a, "0ABC");
	make_file(a, "0ABD");
	make_file(b, "0ABE");
	int afd = open(a, O_RDONLY | O_DIRECTORY), bfd = open(b, O_RDONLY | O_DIRECTORY);
	assert_true(afd >= 0 && bfd >= 0);

	ncalls = 0;
	assert_int_equal(queue_remove_noted(&r, afd, "0ABC"), 0);
	assert_int_equal(queue_remove_noted(&r, afd, "0ABD"), 0);
	assert_int_equal(queue_remove_noted(&r, bfd, "0ABE"), 0);
	/* gone at once, not yet synced */
	assert_false(exists(a, "0ABC") || exists(a, "0ABD") || exists(b, "0ABE"));
	assert_int_equal(ncalls, 3);
	assert_memory_equal(calls, "uuu", 3);

	/* then one fsync for each directory, after the unlinks */
	assert_int_equal(queue_removals_sync(&r), 0);
	assert_int_equal(ncalls, 5);
	assert_memory_equal(calls + 3, "ff", 2);
	assert_true((call_fd[3] == afd && call_fd[4] == bfd) ||
	    (call_fd[3] == bfd && call_fd[4] == afd));

	/* the group is over: nothing left to sync */
	ncalls = 0;
	assert_int_equal(queue_removals_sync(&r), 0);
	assert_int_equal(ncalls, 0);

	/* nothing to remove: an error, nothing noted, no fsync */
	assert_int_equal(queue_remove_noted(&r, afd, "0ABC"), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(queue_removals_sync(&r), 0);
	assert_int_equal(ncalls, 1);
	assert_int_equal(calls[0], 'u');

	close(afd);
	close(bfd);
	rmdir(a);
	rmdir(b);
}

/* More directories in a group than it notes: the others' removals are
 * synced at once, none is left unsynced. */
static void test_more_directories_than_noted(void **state)
{
	char dirs[QUEUE_REMOVAL_DIRS + 1][32];
	int fds[QUEUE_REMOVAL_DIRS + 1];
	struct queue_removals r = QUEUE_REMOVALS_INIT;

	ncalls = 0;
	for (int i = 0; i <= QUEUE_REMOVAL_DIRS; i++) {
		snprintf(dirs[i], sizeof(dirs[i]), "/tmp/test_qremove.XXXXXX");
		assert_non_null(mkdtemp(dirs[i]));
		make_file(dirs[i], "0ABC");
		fds[i] = open(dirs[i], O_RDONLY | O_DIRECTORY);
		assert_true(fds[i] >= 0);
		assert_int_equal(queue_remove_noted(&r, fds[i], "0ABC"), 0);
	}
	assert_int_equal(queue_removals_sync(&r), 0);
	for (int i = 0; i <= QUEUE_REMOVAL_DIRS; i++) {
		int synced = 0;
		for (int k = 0; k < ncalls; k++)
			synced += calls[k] == 'f' && call_fd[k] == fds[i];
		assert_int_equal(synced, 1);
		close(fds[i]);
		rmdir(dirs[i]);
	}
}

/* With finished/: the file is renamed there at once, the fsync of its
 * directory comes next, and only after it the unlink from finished/. */
static void test_through_finished(void **state)
{
	char a[] = "/tmp/test_qremove.XXXXXX", fin[] = "/tmp/test_qremove.XXXXXX";
	struct queue_removals r = QUEUE_REMOVALS_INIT;

	assert_non_null(mkdtemp(a));
	assert_non_null(mkdtemp(fin));
	make_file(a, "0ABC");
	make_file(a, "0ABD");
	int afd = open(a, O_RDONLY | O_DIRECTORY), ffd = open(fin, O_RDONLY | O_DIRECTORY);
	assert_true(afd >= 0 && ffd >= 0);
	r.finished_fd = ffd;

	ncalls = 0;
	assert_int_equal(queue_remove_noted(&r, afd, "0ABC"), 0);
	assert_int_equal(queue_remove_noted(&r, afd, "0ABD"), 0);
	/* out of active/ at once, waiting in finished/, nothing unlinked */
	assert_false(exists(a, "0ABC") || exists(a, "0ABD"));
	assert_true(exists(fin, "0ABC") && exists(fin, "0ABD"));
	assert_int_equal(ncalls, 2);
	assert_memory_equal(calls, "rr", 2);

	/* the group is handed over (as to the syncing thread) */
	struct queue_removals group;
	queue_removals_take(&group, &r);
	assert_int_equal(r.ndirs, 0);
	assert_int_equal(r.nnames, 0);
	assert_int_equal(r.finished_fd, ffd);

	assert_int_equal(queue_removals_sync(&group), 0);
	assert_int_equal(ncalls, 5);
	assert_memory_equal(calls + 2, "fuu", 3);
	assert_int_equal(call_fd[2], afd);
	assert_int_equal(call_fd[3], ffd);
	assert_false(exists(fin, "0ABC") || exists(fin, "0ABD"));
	queue_removals_free(&group);

	/* nothing to remove: an error, nothing noted */
	assert_int_equal(queue_remove_noted(&r, afd, "0ABC"), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(r.nnames, 0);
	/* a name that is not a queue id is refused */
	make_file(a, "..x");
	assert_int_equal(queue_remove_noted(&r, afd, "..x"), -1);
	assert_int_equal(errno, EINVAL);
	assert_true(exists(a, "..x"));
	unlinkat(afd, "..x", 0);
	queue_removals_free(&r);

	close(afd);
	close(ffd);
	rmdir(a);
	rmdir(fin);
}

/* A rename into finished/ that cannot be made (here: finished/ on another
 * file system, EXDEV; on a full disk, ENOSPC) unlinks the file in place. */
static void test_finished_elsewhere_unlinks_in_place(void **state)
{
	char a[] = "/tmp/test_qremove.XXXXXX", fin[] = "/dev/shm/test_qremove.XXXXXX";
	struct queue_removals r = QUEUE_REMOVALS_INIT;
	struct stat sa, sf;

	assert_non_null(mkdtemp(a));
	if (mkdtemp(fin) == NULL || stat(a, &sa) < 0 || stat(fin, &sf) < 0 ||
	    sa.st_dev == sf.st_dev) {
		rmdir(fin);
		rmdir(a);
		skip();
	}
	make_file(a, "0ABC");
	int afd = open(a, O_RDONLY | O_DIRECTORY), ffd = open(fin, O_RDONLY | O_DIRECTORY);
	assert_true(afd >= 0 && ffd >= 0);
	r.finished_fd = ffd;
	ncalls = 0;
	assert_int_equal(queue_remove_noted(&r, afd, "0ABC"), 0);
	assert_memory_equal(calls, "ru", 2);
	assert_false(exists(a, "0ABC") || exists(fin, "0ABC"));
	assert_int_equal(r.nnames, 0);
	assert_int_equal(r.ndirs, 1);           /* its removal is still synced */
	assert_int_equal(queue_removals_sync(&r), 0);
	queue_removals_free(&r);
	close(afd);
	close(ffd);
	rmdir(a);
	rmdir(fin);
}

/* What a crash left in finished/ is removed; the count says how much. */
static void test_purge_finished(void **state)
{
	char fin[] = "/tmp/test_qremove.XXXXXX";

	assert_non_null(mkdtemp(fin));
	make_file(fin, "0ABC");
	make_file(fin, "0ABD");
	int ffd = open(fin, O_RDONLY | O_DIRECTORY);
	assert_true(ffd >= 0);
	assert_int_equal(queue_purge_finished(ffd), 2);
	assert_false(exists(fin, "0ABC") || exists(fin, "0ABD"));
	/* again, with the shared offset at the end: still from the start */
	make_file(fin, "0ABE");
	assert_int_equal(queue_purge_finished(ffd), 1);
	assert_int_equal(queue_purge_finished(ffd), 0);
	close(ffd);
	assert_int_equal(rmdir(fin), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_group_shares_one_fsync),
		cmocka_unit_test(test_more_directories_than_noted),
		cmocka_unit_test(test_through_finished),
		cmocka_unit_test(test_finished_elsewhere_unlinks_in_place),
		cmocka_unit_test(test_purge_finished),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
