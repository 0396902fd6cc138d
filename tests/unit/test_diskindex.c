/*
 * test_diskindex.c - the qmgr's index of queue files waiting on disk: new
 * mail oldest first, due deferred mail round-robin over the users' lanes
 * and oldest first in each, put back keeps the turn, scans forget what
 * left the disk, a flush makes everything due, ids survive packing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "qmgr/diskindex.h"

static void put(struct diskindex *ix, const char *qid, int dir, uint32_t due, uint32_t lane)
{
	struct di_item it = { .dir = dir, .due = due, .lane = lane };
	snprintf(it.qid, sizeof(it.qid), "%s", qid);
	assert_int_equal(di_put(ix, &it), 0);
}

static void test_fresh_oldest_first(void **state)
{
	struct diskindex *ix = di_new();
	struct di_item it;
	put(ix, "0000003", 2, 0, DI_LANE_FRESH);
	put(ix, "0000001", 0, 0, DI_LANE_FRESH);
	put(ix, "0000002", 2, 0, DI_LANE_FRESH);
	assert_int_equal(di_count_fresh(ix), 3);
	assert_int_equal(di_count_deferred(ix), 0);
	assert_int_equal(di_take_fresh(ix, &it), 1);
	assert_string_equal(it.qid, "0000001");
	assert_int_equal(it.dir, 0);
	assert_int_equal(di_take_fresh(ix, &it), 1);
	assert_string_equal(it.qid, "0000002");
	assert_int_equal(it.dir, 2);
	assert_int_equal(di_take_fresh(ix, &it), 1);
	assert_string_equal(it.qid, "0000003");
	assert_int_equal(di_take_fresh(ix, &it), 0);
	assert_int_equal(di_take_due(ix, 100, &it), 0);
	di_free(ix);
}

/* Lane 2 has 100 due messages, lane 3 three: they alternate; in each
 * lane the oldest due first; not yet due ones stay. */
static void test_due_round_robin(void **state)
{
	struct diskindex *ix = di_new();
	struct di_item it;
	char q[32];
	for (int i = 0; i < 100; i++) {
		snprintf(q, sizeof(q), "A%05d", i);
		put(ix, q, 1, (uint32_t)(1000 - i), 2);      /* the later id, the earlier due */
	}
	put(ix, "B2", 1, 50, 3);
	put(ix, "B1", 1, 60, 3);
	put(ix, "B3", 1, 5000, 3);      /* not due */
	put(ix, "C1", 1, 70, DI_LANE_UNKNOWN);
	assert_int_equal(di_count_deferred(ix), 104);
	uint32_t next;
	assert_int_equal(di_next_due(ix, &next), 1);
	assert_int_equal(next, 50);
	const char *expect[] = { "C1", "A00099", "B2", "A00098", "B1", "A00097", "A00096" };
	for (size_t k = 0; k < sizeof(expect) / sizeof(*expect); k++) {
		assert_int_equal(di_take_due(ix, 2000, &it), 1);
		assert_string_equal(it.qid, expect[k]);
	}
	/* put back: the same lane keeps its turn */
	di_put_back(ix, &it);
	assert_int_equal(di_take_due(ix, 2000, &it), 1);
	assert_string_equal(it.qid, "A00096");
	int n = 1;
	while (di_take_due(ix, 2000, &it) == 1) {
		assert_true(it.qid[0] == 'A');
		n++;
	}
	assert_int_equal(n, 97);   /* A00096 .. A00000 */
	assert_int_equal(di_count_deferred(ix), 1);
	assert_int_equal(di_any_due(ix, 2000), 0);
	assert_int_equal(di_any_due(ix, 5000), 1);
	di_free(ix);
}

static void test_put_moves_and_del(void **state)
{
	struct diskindex *ix = di_new();
	struct di_item it;
	put(ix, "X1", 1, 10, DI_LANE_UNKNOWN);
	put(ix, "X1", 1, 10, 7);        /* its user is known now */
	assert_int_equal(di_count_deferred(ix), 1);
	assert_int_equal(di_lanes(ix), 1);
	assert_int_equal(di_seen(ix, "X1"), 1);
	assert_int_equal(di_seen(ix, "X2"), 0);
	assert_int_equal(di_take_due(ix, 10, &it), 1);
	assert_int_equal(it.lane, 7);
	put(ix, "X2", 2, 0, DI_LANE_FRESH);
	assert_int_equal(di_del(ix, "X2"), 1);
	assert_int_equal(di_del(ix, "X2"), 0);
	assert_int_equal(di_count_fresh(ix), 0);
	struct di_item bad = { .qid = "bad-id", .lane = 1 };
	assert_int_equal(di_put(ix, &bad), -1);
	di_free(ix);
}

/* Many entries (the hash grows, slots are reused), all found again. */
static void test_many(void **state)
{
	struct diskindex *ix = di_new();
	char q[32];
	for (int i = 0; i < 50000; i++) {
		snprintf(q, sizeof(q), "K%07dZ", i);
		put(ix, q, 1, (uint32_t)(i % 97), 2 + (uint32_t)(i % 5));
	}
	for (int i = 0; i < 50000; i += 2) {
		snprintf(q, sizeof(q), "K%07dZ", i);
		assert_int_equal(di_del(ix, q), 1);
	}
	for (int i = 0; i < 50000; i++) {
		snprintf(q, sizeof(q), "K%07dZ", i);
		assert_int_equal(di_seen(ix, q), i % 2);
	}
	assert_int_equal(di_count_deferred(ix), 25000);
	struct di_item it;
	uint32_t last[8] = { 0 };
	size_t n = 0;
	while (di_take_due(ix, 1000, &it) == 1) {
		assert_true(it.due >= last[it.lane]);
		last[it.lane] = it.due;
		n++;
	}
	assert_int_equal(n, 25000);
	di_free(ix);
}

/* A scan forgets the files of a directory it did not see. */
static void test_scan_sweep(void **state)
{
	struct diskindex *ix = di_new();
	char oldest[32];
	put(ix, "S1", 1, 10, DI_LANE_UNKNOWN);
	put(ix, "S2", 1, 10, DI_LANE_UNKNOWN);
	put(ix, "S3", 2, 0, DI_LANE_FRESH);
	di_oldest(ix, oldest);
	assert_string_equal(oldest, "S1");
	di_scan_begin(ix);
	assert_int_equal(di_seen(ix, "S2"), 1);
	put(ix, "S4", 1, 10, 2);        /* put back to disk during the scan */
	assert_int_equal(di_sweep(ix, 1), 1);   /* S1 is gone */
	assert_int_equal(di_seen(ix, "S1"), 0);
	assert_int_equal(di_seen(ix, "S4"), 1);
	assert_int_equal(di_seen(ix, "S3"), 1);  /* another directory */
	di_oldest(ix, oldest);
	assert_string_equal(oldest, "S2");
	di_scan_begin(ix);
	assert_int_equal(di_sweep(ix, 1), 2);
	assert_int_equal(di_sweep(ix, 2), 1);
	di_oldest(ix, oldest);
	assert_string_equal(oldest, "");
	di_free(ix);
}

static void count(const char *qid, uint32_t lane, void *ctx)
{
	(*(int *)ctx)++;
}

static void test_all_due(void **state)
{
	struct diskindex *ix = di_new();
	struct di_item it;
	int n = 0;
	put(ix, "F2", 1, 900, 2);
	put(ix, "F1", 1, 800, 2);
	put(ix, "F3", 2, 0, DI_LANE_FRESH);
	di_all_due(ix, 0, count, &n);
	assert_int_equal(n, 2);
	assert_int_equal(di_take_due(ix, 0, &it), 1);
	assert_string_equal(it.qid, "F1");
	assert_int_equal(di_take_due(ix, 0, &it), 1);
	assert_string_equal(it.qid, "F2");
	di_free(ix);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fresh_oldest_first),
		cmocka_unit_test(test_due_round_robin),
		cmocka_unit_test(test_put_moves_and_del),
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_scan_sweep),
		cmocka_unit_test(test_all_due),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
