/*
 * test_tx_memory.c - the recipients remembered by instance for the size
 * check at END-OF-MESSAGE: the limits checked, recipients refused later by
 * Postfix (recipient_count) dropped, requests without recipient_count,
 * expiry, the bound on transactions and on recipients.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "policy/tx_memory.h"

static void test_over_limit(void **state)
{
	struct tx_memory *m = tx_memory_new(10, 3600);
	int found;

	tx_memory_add(m, "i1", 0, "a@x", 0, "", 100);
	tx_memory_add(m, "i1", 1, "b@x", 3072, "maxsize", 100);
	assert_null(tx_memory_over(m, "i1", 2, 3072, 101, &found));
	assert_true(found);
	const struct tx_rcpt *r = tx_memory_over(m, "i1", 2, 3073, 101, &found);
	assert_non_null(r);
	assert_string_equal(r->address, "b@x");
	assert_string_equal(r->limit_why, "maxsize");
	assert_null(tx_memory_over(m, "i2", 2, 99999, 101, &found));
	assert_false(found);
	tx_memory_forget(m, "i1");
	assert_null(tx_memory_over(m, "i1", 2, 99999, 101, &found));
	assert_false(found);
	assert_int_equal(tx_memory_count(m), 0);
	tx_memory_free(m);
}

/* b was answered DUNNO, then refused by a later restriction: the next
 * request's recipient_count did not grow. */
static void test_refused_later_dropped(void **state)
{
	struct tx_memory *m = tx_memory_new(10, 3600);
	int found;

	tx_memory_add(m, "i", 0, "b@x", 1000, "", 1);
	tx_memory_add(m, "i", 0, "a@x", 0, "", 1);
	assert_null(tx_memory_over(m, "i", 1, 5000, 1, &found));
	assert_true(found);

	/* the last recipient refused: END-OF-MESSAGE's count says so */
	tx_memory_add(m, "j", 0, "a@x", 0, "", 1);
	tx_memory_add(m, "j", 1, "b@x", 1000, "", 1);
	assert_null(tx_memory_over(m, "j", 1, 5000, 1, &found));
	tx_memory_add(m, "k", 0, "a@x", 0, "", 1);
	tx_memory_add(m, "k", 1, "b@x", 1000, "", 1);
	assert_non_null(tx_memory_over(m, "k", 2, 5000, 1, &found));
	tx_memory_free(m);
}

static void test_unknown_count_never_prunes(void **state)
{
	struct tx_memory *m = tx_memory_new(10, 3600);
	int found;

	tx_memory_add(m, "i", TX_COUNT_UNKNOWN, "b@x", 1000, "", 1);
	tx_memory_add(m, "i", TX_COUNT_UNKNOWN, "a@x", 0, "", 1);
	assert_non_null(tx_memory_over(m, "i", TX_COUNT_UNKNOWN, 5000, 1, &found));
	assert_non_null(tx_memory_over(m, "i", 0, 5000, 1, &found));
	tx_memory_free(m);
}

static void test_expiry_and_bounds(void **state)
{
	struct tx_memory *m = tx_memory_new(3, 60);
	int found;
	char inst[16];

	tx_memory_add(m, "old", 0, "b@x", 10, "", 100);
	tx_memory_over(m, "old", 1, 50, 160, &found);
	assert_true(found);                     /* 60 s: still there */
	tx_memory_over(m, "old", 1, 50, 221, &found);
	assert_false(found);                    /* untouched for 61 s */
	for (int i = 0; i < 5; i++) {
		snprintf(inst, sizeof(inst), "t%d", i);
		tx_memory_add(m, inst, 0, "b@x", 10, "", 300 + i);
	}
	assert_int_equal(tx_memory_count(m), 3);
	tx_memory_over(m, "t0", 1, 50, 310, &found);
	assert_false(found);                    /* the least recently used went */
	tx_memory_over(m, "t4", 1, 50, 310, &found);
	assert_true(found);
	for (int i = 0; i < TX_MEMORY_MAX_RCPTS + 10; i++)
		tx_memory_add(m, "many", (uint64_t)i, "c@x", 10, "", 320);
	/* the bound keeps the first ones; the rest are not remembered */
	assert_non_null(tx_memory_over(m, "many", TX_MEMORY_MAX_RCPTS + 10, 50, 320, &found));
	tx_memory_add(m, "", 0, "d@x", 10, "", 320);     /* no instance: nothing kept */
	assert_null(tx_memory_over(m, "", 1, 50, 320, &found));
	assert_false(found);
	tx_memory_free(m);
}

/* Transactions that never reach END-OF-MESSAGE, each with many long
 * recipients: the byte budget drops the least recently used ones, and
 * the bytes counted come back to zero. */
static void test_byte_budget(void **state)
{
	struct tx_memory *m = tx_memory_new(100000, 3600);
	char inst[32], addr[1100];
	int found;

	tx_memory_set_max_bytes(m, 1024 * 1024);
	memset(addr, 'a', 1000);
	for (int t = 0; t < 50; t++) {
		snprintf(inst, sizeof(inst), "abandoned%d", t);
		for (int i = 0; i < 100; i++) {
			snprintf(addr + 1000, 100, "%d@x", i);
			tx_memory_add(m, inst, (uint64_t)i, addr, 10, "maxsize", 100);
		}
		assert_true(tx_memory_bytes(m) <= 1024 * 1024);
	}
	/* 50 x 100 x ~1 KiB was asked for: the oldest went, the newest stay */
	assert_true(tx_memory_count(m) < 50);
	assert_true(tx_memory_bytes(m) > 512 * 1024);
	tx_memory_over(m, "abandoned0", 100, 5, 100, &found);
	assert_false(found);
	assert_non_null(tx_memory_over(m, "abandoned49", 100, 50, 100, &found));
	/* pruning and forgetting give the bytes back */
	tx_memory_add(m, "abandoned48", 1, "z@x", 10, "", 100);
	tx_memory_forget(m, "abandoned49");
	tx_memory_forget(m, "abandoned48");
	for (int t = 0; t < 50; t++) {
		snprintf(inst, sizeof(inst), "abandoned%d", t);
		tx_memory_forget(m, inst);
	}
	assert_int_equal(tx_memory_count(m), 0);
	assert_int_equal(tx_memory_bytes(m), 0);
	tx_memory_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_over_limit),
		cmocka_unit_test(test_refused_later_dropped),
		cmocka_unit_test(test_unknown_count_never_prunes),
		cmocka_unit_test(test_expiry_and_bounds),
		cmocka_unit_test(test_byte_budget),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
