/*
 * test_policy_store.c - state_dir/policy.mdb: the record codec (strict on
 * its header), a missing file as an empty store, and one write
 * transaction seen by a reader only once committed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "policy/policy_store.h"
#include "policy/user_policy.h"
#include "rules/regex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_record_codec(void **state)
{
	struct policy_store_entry e = { { 1001, -5, 999999999, 42, 77 }, 1, "abc", 3 }, d;
	struct buf b = BUF_INIT;
	policy_store_encode(&e, &b);
	assert_int_equal(policy_store_decode(b.data, b.len, &d), 0);
	assert_int_equal(d.st.uid, 1001);
	assert_int_equal(d.st.mtime_sec, -5);
	assert_int_equal(d.st.mtime_nsec, 999999999);
	assert_int_equal(d.st.ino, 42);
	assert_int_equal(d.st.size, 77);
	assert_int_equal(d.broken, 1);
	assert_int_equal(d.blob_len, 3);
	assert_memory_equal(d.blob, "abc", 3);
	for (size_t cut = 0; cut < b.len - 3; cut++)
		assert_int_equal(policy_store_decode(b.data, cut, &d), -1);
	b.data[0] = 2;          /* version */
	assert_int_equal(policy_store_decode(b.data, b.len, &d), -1);
	b.data[0] = 1;
	b.data[33] = 2;         /* unknown flag */
	assert_int_equal(policy_store_decode(b.data, b.len, &d), -1);
	b.data[33] = 0;
	b.data[13] = 0x7f;      /* nanoseconds beyond a second */
	assert_int_equal(policy_store_decode(b.data, b.len, &d), -1);
	buf_free(&b);
}

static void test_store(void **state)
{
	char dir[] = "/tmp/test_policy_store.XXXXXX", err[512];
	struct policy_store *r, *w;
	struct user_policy *p = NULL, *got = NULL;
	struct buf blob = BUF_INIT;

	assert_non_null(mkdtemp(dir));
	/* no file yet: an empty store, not an error */
	assert_int_equal(policy_store_open(dir, 0, &r, err, sizeof(err)), 0);
	assert_int_equal(policy_store_get(r, "alice", &got, err, sizeof(err)), 0);
	assert_null(got);

	static const char text[] = "block sender *@spam.test \"no\"\nmaxsize 1K\n";
	assert_int_equal(user_policy_parse(text, strlen(text), &p, NULL, NULL), 0);
	user_policy_encode(p, &blob);
	assert_int_equal(policy_store_open(dir, 1, &w, err, sizeof(err)), 0);
	struct policy_store_entry e = { { 1000, 1, 2, 3, 4 }, 0, blob.data, blob.len };
	assert_int_equal(policy_store_put(w, "alice", &e, err, sizeof(err)), 0);
	struct policy_store_entry none = { { 1001, 1, 2, 3, 4 }, 1, NULL, 0 };
	assert_int_equal(policy_store_put(w, "bob", &none, err, sizeof(err)), 0);
	/* not committed: the reader (which now finds the file) sees nothing */
	assert_int_equal(policy_store_get(r, "alice", &got, err, sizeof(err)), 0);
	assert_int_equal(policy_store_commit(w, err, sizeof(err)), 0);

	assert_int_equal(policy_store_get(r, "alice", &got, err, sizeof(err)), 1);
	assert_int_equal(user_policy_maxsize(got), 1024);
	user_policy_free(got);
	/* broken from the start: an entry, but no policy */
	assert_int_equal(policy_store_get(r, "bob", &got, err, sizeof(err)), 0);
	struct policy_store_entry ent;
	assert_int_equal(policy_store_get_entry(r, "bob", &ent, err, sizeof(err)), 1);
	assert_int_equal(ent.broken, 1);
	assert_null(ent.blob);

	assert_int_equal(policy_store_delete(w, "alice", err, sizeof(err)), 0);
	assert_int_equal(policy_store_delete(w, "nobody", err, sizeof(err)), 0);
	assert_int_equal(policy_store_commit(w, err, sizeof(err)), 0);
	assert_int_equal(policy_store_get(r, "alice", &got, err, sizeof(err)), 0);

	policy_store_close(w);
	policy_store_close(r);
	user_policy_free(p);
	buf_free(&blob);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	rule_regex_cache_clear();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_codec),
		cmocka_unit_test(test_store),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
