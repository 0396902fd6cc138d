/*
 * test_fd_syncer.c - the sync thread: it syncs every interval (seen
 * through its log line for a descriptor that cannot be synced), and a
 * stop wakes it at once instead of waiting out the interval.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "policy/fd_syncer.h"

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_syncs_every_interval(void **state)
{
	char path[] = "/tmp/test_fd_syncer.XXXXXX";
	int p[2], saved = dup(2), logfd = mkstemp(path);
	char text[4096] = "";
	ssize_t n;

	assert_true(logfd >= 0 && saved >= 0);
	assert_int_equal(pipe(p), 0);           /* fdatasync on a pipe fails: logged */
	dup2(logfd, 2);
	struct fd_syncer *s = fd_syncer_start(p[0], 1, "the pipe");
	assert_non_null(s);
	usleep(1500 * 1000);
	fd_syncer_stop(s);
	dup2(saved, 2);
	n = pread(logfd, text, sizeof(text) - 1, 0);
	assert_true(n > 0);
	assert_non_null(strstr(text, "the pipe: fdatasync: "));
	close(p[0]);
	close(p[1]);
	close(logfd);
	close(saved);
	unlink(path);
}

static void test_stop_does_not_wait_the_interval(void **state)
{
	char path[] = "/tmp/test_fd_syncer.XXXXXX";
	int fd = mkstemp(path);
	double start;

	assert_true(fd >= 0);
	struct fd_syncer *s = fd_syncer_start(fd, 3600, path);
	assert_non_null(s);
	usleep(200 * 1000);                     /* the thread is waiting by now */
	start = mono();
	fd_syncer_stop(s);
	assert_true(mono() - start < 60);       /* not the hour */
	fd_syncer_stop(NULL);
	close(fd);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_syncs_every_interval),
		cmocka_unit_test(test_stop_does_not_wait_the_interval),
	};
	log_init("test_fd_syncer", 1, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
