/*
 * test_greylist_key.c - the pure parts of greylisting: client networks,
 * keys, the records' text form and the decision over time (defer, the
 * remaining wait, pass, start over, auto-allow and its expiry).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "lib/buf.h"
#include "policy/greylist_key.h"

static const struct greylist_params P = { .delay = 300, .max_age = 86400, .auto_allow = 3 };

static void assert_net(const char *addr, const char *want)
{
	struct buf b = BUF_INIT;
	greylist_client_net(addr, &b);
	assert_string_equal(b.data, want);
	buf_free(&b);
}

static void test_client_net(void **state)
{
	assert_net("192.0.2.77", "192.0.2.0/24");
	assert_net("192.0.2.0", "192.0.2.0/24");
	assert_net("198.51.100.255", "198.51.100.0/24");
	assert_net("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64");
	assert_net("2001:DB8:1:2::ff", "2001:db8:1:2::/64");
	assert_net("IPv6:2001:db8::1", "2001:db8::/64");
	assert_net("::ffff:192.0.2.9", "192.0.2.0/24");
	assert_net("unknown", "unknown");
	assert_net("300.1.2.3", "300.1.2.3");
	assert_net("", "");
}

static void keys(const char *a, const char *s, const char *r, struct buf *t, struct buf *c)
{
	buf_reset(t);
	buf_reset(c);
	greylist_keys(a, s, r, t, c);
}

static void test_keys(void **state)
{
	struct buf t1 = BUF_INIT, c1 = BUF_INIT, t2 = BUF_INIT, c2 = BUF_INIT;
	static const char want[] = GREYLIST_TRIPLET_PREFIX "192.0.2.0/24\0a@x.test\0b@y.test";

	keys("192.0.2.1", "A@X.Test", "b@Y.TEST", &t1, &c1);
	assert_int_equal(t1.len, sizeof(want) - 1);
	assert_memory_equal(t1.data, want, sizeof(want) - 1);
	assert_string_equal(c1.data, GREYLIST_CLIENT_PREFIX "192.0.2.0/24");

	/* the same network, another host: the same keys */
	keys("192.0.2.200", "a@x.test", "b@y.test", &t2, &c2);
	assert_int_equal(t1.len, t2.len);
	assert_memory_equal(t1.data, t2.data, t1.len);
	assert_string_equal(c1.data, c2.data);

	/* fields cannot run into each other */
	keys("192.0.2.1", "a@x.test", "", &t1, &c1);
	keys("192.0.2.1", "", "a@x.test", &t2, &c2);
	assert_false(t1.len == t2.len && memcmp(t1.data, t2.data, t1.len) == 0);

	/* another network, another key */
	keys("192.0.3.1", "a@x.test", "b@y.test", &t2, &c2);
	assert_string_not_equal(c1.data, c2.data);

	buf_free(&t1);
	buf_free(&c1);
	buf_free(&t2);
	buf_free(&c2);
}

static void test_long_keys(void **state)
{
	struct buf t1 = BUF_INIT, c1 = BUF_INIT, t2 = BUF_INIT, c2 = BUF_INIT;
	char s[700];

	memset(s, 'a', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	keys("192.0.2.1", s, "b@y.test", &t1, &c1);
	assert_true(t1.len <= GREYLIST_KEY_MAX);
	keys("192.0.2.1", s, "c@y.test", &t2, &c2);
	assert_true(t2.len <= GREYLIST_KEY_MAX);
	assert_false(t1.len == t2.len && memcmp(t1.data, t2.data, t1.len) == 0);
	/* an unparseable client address of any length */
	keys(s, "", "b@y.test", &t1, &c1);
	assert_true(c1.len <= GREYLIST_KEY_MAX);
	buf_free(&t1);
	buf_free(&c1);
	buf_free(&t2);
	buf_free(&c2);
}

static void test_codec(void **state)
{
	struct greylist_triplet t = { 1, 1700000000, 1700000400, 1 }, t2;
	struct greylist_client c = { 1, 7, 1700000400 }, c2;
	struct buf b = BUF_INIT;
	static const char *const bad[] = {
		"", "1 2", "1 2 3", "a b c", "1 2 0 ", "1  2 0", "-1 2 0", " 1 2 0",
		"99999999999999999999999 1 0",
	};

	greylist_triplet_encode(&t, &b);
	assert_int_equal(greylist_triplet_decode(b.data, b.len, &t2), 0);
	assert_int_equal(t2.present, 1);
	assert_int_equal(t2.first, t.first);
	assert_int_equal(t2.last, t.last);
	assert_int_equal(t2.passed, 1);
	buf_reset(&b);
	greylist_client_encode(&c, &b);
	assert_int_equal(greylist_client_decode(b.data, b.len, &c2), 0);
	assert_int_equal(c2.present, 1);
	assert_int_equal(c2.count, 7);
	assert_int_equal(c2.last, c.last);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(greylist_triplet_decode(bad[i], strlen(bad[i]), &t2), -1);
		assert_int_equal(t2.present, 0);
	}
	assert_int_equal(greylist_client_decode("1 2 0", 5, &c2), -1);
	assert_int_equal(greylist_triplet_decode("1 2\0 0", 6, &t2), -1);
	buf_free(&b);
}

/* One attempt with the records kept here (what a store would do). */
struct store {
	struct greylist_triplet t;
	struct greylist_client c;
};

static struct greylist_answer attempt(const struct greylist_params *p, struct store *s,
    time_t now, int *writes)
{
	struct greylist_answer a;
	struct greylist_triplet t = s->t;
	struct greylist_client c = s->c;
	int w = greylist_decide(p, now, &c, &t, &a);
	if (w & GREYLIST_WRITE_TRIPLET)
		s->t = t;
	if (w & GREYLIST_WRITE_CLIENT)
		s->c = c;
	if (writes != NULL)
		*writes = w;
	return a;
}

static void test_decide_delay(void **state)
{
	struct store s = { 0 };
	const time_t t0 = 1700000000;
	struct greylist_answer a;
	int w;

	a = attempt(&P, &s, t0, &w);
	assert_int_equal(a.verdict, GREYLIST_DEFER);
	assert_int_equal(a.retry_in, 300);
	assert_int_equal(w, GREYLIST_WRITE_TRIPLET);

	a = attempt(&P, &s, t0 + 100, &w);             /* too early: the rest of the wait */
	assert_int_equal(a.verdict, GREYLIST_DEFER);
	assert_int_equal(a.retry_in, 200);
	assert_int_equal(w, 0);
	assert_int_equal(s.t.first, t0);

	a = attempt(&P, &s, t0 + 299, NULL);
	assert_int_equal(a.verdict, GREYLIST_DEFER);
	assert_int_equal(a.retry_in, 1);

	a = attempt(&P, &s, t0 + 300, &w);             /* after the delay: passes */
	assert_int_equal(a.verdict, GREYLIST_PASS);
	assert_int_equal(a.auto_allowed, 0);
	assert_int_equal(w, GREYLIST_WRITE_TRIPLET | GREYLIST_WRITE_CLIENT);
	assert_int_equal(s.c.count, 1);

	/* and stays passed while it is used, each use refreshing it */
	a = attempt(&P, &s, t0 + 300 + 86400, NULL);
	assert_int_equal(a.verdict, GREYLIST_PASS);
	a = attempt(&P, &s, t0 + 300 + 2 * 86400, NULL);
	assert_int_equal(a.verdict, GREYLIST_PASS);
	assert_int_equal(s.c.count, 1);                 /* one triplet counts once */

	/* unseen for longer than max_age: starts over */
	a = attempt(&P, &s, t0 + 300 + 3 * 86400 + 1, NULL);
	assert_int_equal(a.verdict, GREYLIST_DEFER);
	assert_int_equal(a.retry_in, 300);
}

static void test_decide_retry_too_late(void **state)
{
	struct store s = { 0 };
	const time_t t0 = 1700000000;
	struct greylist_answer a;

	attempt(&P, &s, t0, NULL);
	a = attempt(&P, &s, t0 + 86400, NULL);         /* at max_age: still in time */
	assert_int_equal(a.verdict, GREYLIST_PASS);

	memset(&s, 0, sizeof(s));
	attempt(&P, &s, t0, NULL);
	a = attempt(&P, &s, t0 + 86401, NULL);         /* later: starts over */
	assert_int_equal(a.verdict, GREYLIST_DEFER);
	assert_int_equal(a.retry_in, 300);
	assert_int_equal(s.t.first, t0 + 86401);
	a = attempt(&P, &s, t0 + 86401 + 300, NULL);
	assert_int_equal(a.verdict, GREYLIST_PASS);
}

/* Pass n distinct triplets of one client; returns the client record. */
static void pass_triplets(const struct greylist_params *p, struct greylist_client *c, int n,
    time_t now)
{
	for (int i = 0; i < n; i++) {
		struct store s = { .c = *c };
		assert_int_equal(attempt(p, &s, now, NULL).verdict, GREYLIST_DEFER);
		assert_int_equal(attempt(p, &s, now + p->delay, NULL).verdict, GREYLIST_PASS);
		*c = s.c;
	}
}

static void test_decide_auto_allow(void **state)
{
	struct greylist_client c = { 0 };
	const time_t t0 = 1700000000;
	struct store s;
	struct greylist_answer a;

	pass_triplets(&P, &c, 2, t0);
	assert_int_equal(c.count, 2);
	s = (struct store){ .c = c };                  /* 2 of 3: still greylisted */
	assert_int_equal(attempt(&P, &s, t0 + 300, NULL).verdict, GREYLIST_DEFER);

	pass_triplets(&P, &c, 1, t0);
	s = (struct store){ .c = c };                  /* 3: a new triplet skips it */
	a = attempt(&P, &s, t0 + 1000, NULL);
	assert_int_equal(a.verdict, GREYLIST_PASS);
	assert_int_equal(a.auto_allowed, 1);
	assert_int_equal(s.t.present, 0);              /* and is not recorded */
	assert_int_equal(s.c.last, t0 + 1000);         /* the client was seen */

	a = attempt(&P, &s, t0 + 1000 + 86400, NULL);  /* seen within max_age */
	assert_int_equal(a.auto_allowed, 1);
	a = attempt(&P, &s, t0 + 1000 + 2 * 86400 + 1, NULL);  /* unseen longer */
	assert_int_equal(a.verdict, GREYLIST_DEFER);
	assert_int_equal(a.auto_allowed, 0);
}

static void test_decide_auto_allow_off(void **state)
{
	struct greylist_params p = P;
	struct greylist_client c = { 0 };
	struct store s;

	p.auto_allow = 0;
	pass_triplets(&p, &c, 10, 1700000000);
	s = (struct store){ .c = c };
	assert_int_equal(attempt(&p, &s, 1700000400, NULL).verdict, GREYLIST_DEFER);
}

static void test_expiry(void **state)
{
	struct greylist_triplet fresh = { 1, 1000, 1000, 0 }, passed = { 1, 1000, 5000, 1 };
	struct greylist_client c = { 1, 3, 5000 };

	assert_false(greylist_triplet_expired(&P, 1000 + 86400, &fresh));
	assert_true(greylist_triplet_expired(&P, 1000 + 86401, &fresh));
	assert_false(greylist_triplet_expired(&P, 5000 + 86400, &passed));
	assert_true(greylist_triplet_expired(&P, 5000 + 86401, &passed));
	assert_true(greylist_client_expired(&P, 5000 + 86401, &c));
	assert_int_equal(greylist_triplet_ttl(&P, 1000, &fresh), 86401);
	assert_int_equal(greylist_triplet_ttl(&P, 6000, &passed), 86400 - 1000 + 1);
	assert_int_equal(greylist_client_ttl(&P, 999999, &c), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client_net),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_long_keys),
		cmocka_unit_test(test_codec),
		cmocka_unit_test(test_decide_delay),
		cmocka_unit_test(test_decide_retry_too_late),
		cmocka_unit_test(test_decide_auto_allow),
		cmocka_unit_test(test_decide_auto_allow_off),
		cmocka_unit_test(test_expiry),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
