/*
 * test_worker_held.c - the results a worker holds for its batch: which
 * can be sent, which jobs are over, and a batched maildir copy that did
 * not become durable turning its recipient's result into a failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "spawner/worker_held.h"

static void set_done(struct buf *b, const char *s)
{
	buf_free(b);
	buf_puts(b, s);
}

static void test_done_remove(void **state)
{
	struct buf b = BUF_INIT;
	set_done(&b, "0,2,12");
	held_done_remove(&b, 2);
	assert_string_equal(b.data, "0,12");
	held_done_remove(&b, 1);                /* not there, nor a prefix of 12 */
	assert_string_equal(b.data, "0,12");
	held_done_remove(&b, 12);
	assert_string_equal(b.data, "0");
	held_done_remove(&b, 0);
	assert_string_equal(b.data, "");
	assert_int_equal(b.len, 0);
	set_done(&b, "3,4");
	held_done_remove(&b, 3);
	assert_string_equal(b.data, "4");
	buf_free(&b);
}

static struct held_result *add_final(struct held *h, uint32_t index, size_t *seq)
{
	struct held_result *r = held_result_new(h, index, seq);
	r->final = 1;
	snprintf(r->r.dsn, sizeof(r->r.dsn), "2.0.0");
	return r;
}

static void test_ready_and_drop(void **state)
{
	struct held h = { 0 };
	size_t s0, s1, s2, s3, nres, njobs, from, to;

	held_job_begin(&h, "Q1");
	add_final(&h, 0, &s0);
	add_final(&h, 1, &s1);
	held_job_end(&h);
	held_job_begin(&h, "Q2");
	add_final(&h, 0, &s2);
	held_result_new(&h, 1, &s3);            /* still running */
	assert_int_equal(s3, 3);
	held_ready(&h, &nres, &njobs);
	assert_int_equal(nres, 3);
	assert_int_equal(njobs, 1);             /* Q2 is not over */
	held_job_range(&h, 0, nres, &from, &to);
	assert_int_equal(from, 0);
	assert_int_equal(to, 2);
	held_job_range(&h, 1, nres, &from, &to);
	assert_int_equal(from, 2);
	assert_int_equal(to, 3);
	held_drop(&h, nres, njobs);
	assert_null(held_result_get(&h, s2));   /* sent */
	struct held_result *r = held_result_get(&h, s3);
	assert_non_null(r);
	assert_int_equal(r->index, 1);
	r->final = 1;
	held_job_end(&h);
	held_ready(&h, &nres, &njobs);
	assert_int_equal(nres, 1);
	assert_int_equal(njobs, 1);
	held_job_range(&h, 0, nres, &from, &to);
	assert_int_equal(from, 0);              /* Q2's first result went before */
	assert_int_equal(to, 1);
	assert_string_equal(h.jobs[0].qid, "Q2");
	held_drop(&h, nres, njobs);
	assert_int_equal(h.n, 0);
	assert_int_equal(h.njobs, 0);
	free(h.res);
	free(h.jobs);
}

static void test_fail(void **state)
{
	struct held h = { 0 };
	size_t seq;
	struct delivery_result fail = { .status = DELIVERY_TEMPFAIL, .dsn = "4.3.0",
	    .text = "fsync new/ of /m: Input/output error" };

	held_job_begin(&h, "Q1");
	struct held_result *r = add_final(&h, 7, &seq);
	snprintf(r->r.text, sizeof(r->r.text), "delivered to maildir /m/new/x");
	buf_puts(&r->done, "0,1");
	held_fail(&h, seq, 1, &fail);
	r = held_result_get(&h, seq);
	assert_int_equal(r->r.status, DELIVERY_TEMPFAIL);
	assert_string_equal(r->r.dsn, "4.3.0");
	assert_string_equal(r->done.data, "0");
	/* a permanent failure already there stays the result */
	r->r.status = DELIVERY_PERMFAIL;
	snprintf(r->r.text, sizeof(r->r.text), "rejected");
	held_fail(&h, seq, 0, &fail);
	assert_int_equal(r->r.status, DELIVERY_PERMFAIL);
	assert_string_equal(r->r.text, "rejected");
	assert_string_equal(r->done.data, "");
	/* the default delivery (-1) is in no done list */
	buf_puts(&r->done, "4");
	held_fail(&h, seq, -1, &fail);
	assert_string_equal(r->done.data, "4");
	held_job_end(&h);
	held_drop(&h, 1, 1);
	free(h.res);
	free(h.jobs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_done_remove),
		cmocka_unit_test(test_ready_and_drop),
		cmocka_unit_test(test_fail),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
