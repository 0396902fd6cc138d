/*
 * test_metrics_region.c - the shared regions: created with their headers,
 * sealed against resizing, an owner's attach writes where a read-only
 * mapping of another descriptor (and a forked process) sees it, the
 * read-only descriptor cannot write, a region of another kind or not a
 * region at all is refused, and the pointers stay on private structs
 * until attached.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics/metrics.h"
#include "metrics/policy_figures.h"
#include "metrics/qmgr_figures.h"
#include "metrics/receiver_figures.h"

static void close_all(int fds[METRICS_REGION_COUNT])
{
	for (int k = 0; k < METRICS_REGION_COUNT; k++)
		if (fds[k] >= 0)
			close(fds[k]);
}

static void test_private_until_attached(void **state)
{
	/* no region yet: updates go somewhere harmless */
	assert_non_null(metrics_receiver);
	assert_non_null(metrics_qmgr);
	assert_non_null(metrics_policy);
	metrics_inc(&metrics_policy->bad_requests, 1);
	assert_int_equal(metrics_read(&metrics_policy->bad_requests), 1);
}

static void test_create_headers_and_seals(void **state)
{
	int fds[METRICS_REGION_COUNT];
	static const size_t sizes[METRICS_REGION_COUNT] = {
		sizeof(struct metrics_receiver), sizeof(struct metrics_qmgr),
		sizeof(struct metrics_policy),
	};

	assert_int_equal(metrics_regions_create(fds), 0);
	for (int k = 0; k < METRICS_REGION_COUNT; k++) {
		struct stat st;
		struct metrics_region_header h;
		assert_int_equal(fstat(fds[k], &st), 0);
		assert_int_equal((size_t)st.st_size, sizes[k]);
		assert_int_equal(pread(fds[k], &h, sizeof(h), 0), (ssize_t)sizeof(h));
		assert_int_equal(h.magic, METRICS_MAGIC);
		assert_int_equal(h.version, METRICS_LAYOUT_VERSION);
		assert_int_equal(h.kind, (uint32_t)k);
		assert_int_equal(h.size, sizes[k]);
		assert_true(h.created_usec > 1000000000ull * 1000000ull);
		/* a process given a read-only descriptor cannot open it again
		 * for writing through /proc */
		assert_int_equal(st.st_mode & 07777, 0400);
		/* nobody can shrink it under a reader's mapping */
		assert_int_equal(ftruncate(fds[k], 8), -1);
		assert_int_equal(fcntl(fds[k], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	}
	close_all(fds);
}

static void test_attach_and_read_only(void **state)
{
	int fds[METRICS_REGION_COUNT];

	assert_int_equal(metrics_regions_create(fds), 0);
	int ro = metrics_region_reopen_ro(fds[METRICS_QMGR]);
	assert_true(ro >= 0);
	/* the read-only descriptor cannot be mapped for writing */
	void *w = mmap(NULL, sizeof(struct metrics_qmgr), PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0);
	assert_true(w == MAP_FAILED);
	assert_int_equal(errno, EACCES);

	const struct metrics_qmgr *view = metrics_map_ro(METRICS_QMGR, ro);
	assert_non_null(view);
	struct metrics_qmgr *before = metrics_qmgr;
	assert_int_equal(metrics_attach(METRICS_QMGR, fds[METRICS_QMGR]), 0);
	assert_true(metrics_qmgr != before);
	metrics_inc(&metrics_qmgr->bounces_sent, 3);
	metrics_gauge_set(&metrics_qmgr->queue_messages[FQ_DEFERRED], 7);
	metrics_observe(&metrics_qmgr->delay[FS_TOTAL], &metrics_delay_bounds, 0.3);
	assert_int_equal(metrics_read(&view->bounces_sent), 3);
	assert_int_equal(metrics_gauge_read(&view->queue_messages[FQ_DEFERRED]), 7);
	assert_int_equal(metrics_read(&view->delay[FS_TOTAL].count), 1);
	assert_int_equal(metrics_read(&view->delay[FS_TOTAL].bucket[4]), 1);   /* le 0.5 */

	/* another process (a restarted owner) adds to the same figures */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		metrics_inc(&metrics_qmgr->bounces_sent, 2);
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(metrics_read(&view->bounces_sent), 5);

	/* the view cannot be made writable */
	assert_int_equal(mprotect((void *)view, sizeof(*view), PROT_READ | PROT_WRITE), -1);
	close(ro);
	close_all(fds);
}

static void test_wrong_region_refused(void **state)
{
	int fds[METRICS_REGION_COUNT];

	assert_int_equal(metrics_regions_create(fds), 0);
	struct metrics_policy *before = metrics_policy;
	/* a receiver region is not a policy region (sizes differ too) */
	assert_int_equal(metrics_attach(METRICS_POLICY, fds[METRICS_RECEIVER]), -1);
	assert_ptr_equal(metrics_policy, before);
	assert_null(metrics_map_ro(METRICS_RECEIVER, fds[METRICS_QMGR]));
	assert_int_equal(metrics_attach(METRICS_RECEIVER, -1), -1);

	/* right size, wrong header */
	int fd = memfd_create("not-a-region", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)sizeof(struct metrics_receiver)), 0);
	assert_null(metrics_map_ro(METRICS_RECEIVER, fd));
	/* a header claiming another kind */
	struct metrics_region_header h = { METRICS_MAGIC, METRICS_LAYOUT_VERSION, METRICS_QMGR,
		(uint32_t)sizeof(struct metrics_receiver), 1 };
	assert_int_equal(pwrite(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	assert_null(metrics_map_ro(METRICS_RECEIVER, fd));
	h.kind = METRICS_RECEIVER;
	assert_int_equal(pwrite(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	assert_non_null(metrics_map_ro(METRICS_RECEIVER, fd));
	close(fd);
	close_all(fds);
}

static void test_view_map_closes(void **state)
{
	int fds[METRICS_REGION_COUNT], ro[METRICS_REGION_COUNT];
	struct metrics_view v;

	assert_int_equal(metrics_regions_create(fds), 0);
	for (int k = 0; k < METRICS_REGION_COUNT; k++)
		ro[k] = metrics_region_reopen_ro(fds[k]);
	int given = ro[METRICS_RECEIVER];
	close(ro[METRICS_QMGR]);
	ro[METRICS_QMGR] = -1;
	metrics_view_map(&v, ro);
	assert_non_null(v.receiver);
	assert_null(v.qmgr);
	assert_non_null(v.policy);
	for (int k = 0; k < METRICS_REGION_COUNT; k++)
		assert_int_equal(ro[k], -1);
	assert_int_equal(fcntl(given, F_GETFD), -1);   /* closed once mapped */
	close_all(fds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_private_until_attached),
		cmocka_unit_test(test_create_headers_and_seals),
		cmocka_unit_test(test_attach_and_read_only),
		cmocka_unit_test(test_wrong_region_refused),
		cmocka_unit_test(test_view_map_closes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
