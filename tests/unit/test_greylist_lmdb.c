/*
 * test_greylist_lmdb.c - greylisting in state_dir/greylist.mdb through
 * greylist.h: defer, the rest of the wait, pass, state kept across a
 * close, auto-allow, the dry run writing nothing, the purge resuming
 * step by step, a full map answering UNAVAILABLE, a missing directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/config.h"
#include "lib/buf.h"
#include "policy/greylist.h"
#include "policy/greylist_store.h"

#define T0 1700000000

struct fixture {
	char dir[64];
	struct config cfg;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	strcpy(f->dir, "/tmp/test_greylist.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	config_defaults(&f->cfg);
	f->cfg.state_dir = strdup(f->dir);
	f->cfg.greylist_delay = 300;
	f->cfg.greylist_max_age = 86400;
	f->cfg.greylist_auto_allow = 3;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	config_free(&f->cfg);
	free(f);
	return 0;
}

struct result {
	int calls;
	struct greylist_answer a;
};

static void done(void *arg, const struct greylist_answer *a)
{
	struct result *r = arg;
	r->calls++;
	r->a = *a;
}

/* One check, answered before greylist_check returns (LMDB). */
static struct greylist_answer check(struct greylist *g, const char *client,
    const char *sender, const char *rcpt, time_t now)
{
	struct result r = { 0 };
	assert_null(greylist_check(g, client, sender, rcpt, now, done, &r));
	assert_int_equal(r.calls, 1);
	return r.a;
}

static struct greylist *open_ok(struct fixture *f)
{
	char err[256] = "";
	struct greylist *g = greylist_open(&f->cfg, NULL, err, sizeof(err));
	if (g == NULL)
		fail_msg("greylist_open: %s", err);
	return g;
}

static void test_defer_then_pass(void **state)
{
	struct fixture *f = *state;
	struct greylist *g = open_ok(f);
	struct greylist_answer a;

	a = check(g, "192.0.2.1", "a@x.test", "u@y.test", T0);
	assert_int_equal(a.verdict, GREYLIST_DEFER);
	assert_int_equal(a.retry_in, 300);
	a = check(g, "192.0.2.9", "A@X.TEST", "u@y.test", T0 + 120);   /* same /24, case */
	assert_int_equal(a.verdict, GREYLIST_DEFER);
	assert_int_equal(a.retry_in, 180);
	a = check(g, "192.0.2.1", "a@x.test", "u@y.test", T0 + 300);
	assert_int_equal(a.verdict, GREYLIST_PASS);
	assert_int_equal(a.auto_allowed, 0);
	a = check(g, "192.0.3.1", "a@x.test", "u@y.test", T0 + 300);   /* another /24 */
	assert_int_equal(a.verdict, GREYLIST_DEFER);
	a = check(g, "2001:db8::1", "", "u@y.test", T0);                /* null sender, IPv6 */
	assert_int_equal(a.verdict, GREYLIST_DEFER);
	greylist_close(g);

	/* kept across a close (synced there) */
	g = open_ok(f);
	a = check(g, "192.0.2.1", "a@x.test", "u@y.test", T0 + 400);
	assert_int_equal(a.verdict, GREYLIST_PASS);
	a = check(g, "2001:db8::ffff", "", "u@y.test", T0 + 300);
	assert_int_equal(a.verdict, GREYLIST_PASS);
	greylist_close(g);
}

static void test_auto_allow(void **state)
{
	struct fixture *f = *state;
	struct greylist *g = open_ok(f);
	char rcpt[32];
	struct greylist_answer a;

	for (int i = 0; i < 3; i++) {
		snprintf(rcpt, sizeof(rcpt), "u%d@y.test", i);
		assert_int_equal(check(g, "198.51.100.7", "a@x.test", rcpt, T0).verdict,
		    GREYLIST_DEFER);
		if (i < 2) {
			a = check(g, "198.51.100.7", "a@x.test", "new@y.test", T0 + 1);
			assert_int_equal(a.auto_allowed, 0);
		}
		assert_int_equal(check(g, "198.51.100.7", "a@x.test", rcpt, T0 + 300).verdict,
		    GREYLIST_PASS);
	}
	a = check(g, "198.51.100.99", "b@z.test", "other@y.test", T0 + 400);
	assert_int_equal(a.verdict, GREYLIST_PASS);
	assert_int_equal(a.auto_allowed, 1);
	a = check(g, "198.51.101.1", "b@z.test", "other@y.test", T0 + 400);
	assert_int_equal(a.verdict, GREYLIST_DEFER);
	greylist_close(g);
}

static void test_peek_writes_nothing(void **state)
{
	struct fixture *f = *state;
	struct greylist_answer a;
	char err[256];
	struct greylist *g;

	/* no file yet: a first attempt */
	assert_int_equal(greylist_peek(&f->cfg, "192.0.2.1", "a@x.test", "u@y.test", T0, &a,
	    err, sizeof(err)), 0);
	assert_int_equal(a.verdict, GREYLIST_DEFER);
	assert_int_equal(a.retry_in, 300);
	assert_int_equal(access(f->dir, F_OK), 0);

	g = open_ok(f);
	check(g, "192.0.2.1", "a@x.test", "u@y.test", T0);
	greylist_close(g);

	assert_int_equal(greylist_peek(&f->cfg, "192.0.2.1", "a@x.test", "u@y.test", T0 + 300,
	    &a, err, sizeof(err)), 0);
	assert_int_equal(a.verdict, GREYLIST_PASS);
	/* that pass was not recorded: still waiting at T0 + 100 */
	assert_int_equal(greylist_peek(&f->cfg, "192.0.2.1", "a@x.test", "u@y.test", T0 + 100,
	    &a, err, sizeof(err)), 0);
	assert_int_equal(a.verdict, GREYLIST_DEFER);
	assert_int_equal(a.retry_in, 200);
	/* and nothing recorded for a triplet only peeked at */
	g = open_ok(f);
	a = check(g, "192.0.2.1", "a@x.test", "u@y.test", T0 + 100);
	assert_int_equal(a.verdict, GREYLIST_DEFER);
	assert_int_equal(a.retry_in, 200);
	greylist_close(g);
}

static void add_triplet(struct gl_lmdb *l, const char *client, int i, time_t now,
    struct greylist_answer *a)
{
	struct buf t = BUF_INIT, c = BUF_INIT;
	char rcpt[64];
	snprintf(rcpt, sizeof(rcpt), "user%05d@y.test", i);
	greylist_keys(client, "s@x.test", rcpt, &t, &c);
	gl_lmdb_check(l, &t, &c, now, a);
	buf_free(&t);
	buf_free(&c);
}

static void test_purge(void **state)
{
	struct fixture *f = *state;
	struct greylist_params p = { 300, 86400, 0 };  /* no auto-allow: all recorded */
	struct greylist_answer a;
	char err[256];
	struct gl_lmdb *l = gl_lmdb_open(f->dir, GREYLIST_LMDB_MAPSIZE, &p, NULL, err,
	    sizeof(err));
	size_t removed = 0, steps = 0, r;

	assert_non_null(l);
	for (int i = 0; i < 100; i++)           /* interleaved: old and recent */
		add_triplet(l, "192.0.2.1", i, i % 2 ? T0 : T0 + 50000, &a);
	for (int i = 0; i < 10; i++) {          /* passed at T0 + 300: 10 + 1 client */
		add_triplet(l, "203.0.113.1", i, T0, &a);
		add_triplet(l, "203.0.113.1", i, T0 + 300, &a);
		assert_int_equal(a.verdict, GREYLIST_PASS);
	}
	/* at T0 + 86401 the 50 old ones are past max_age, 7 records a step */
	do {
		r = gl_lmdb_tick(l, T0 + 86401, 7);
		assert_true(r <= 7);            /* bounded work per tick */
		removed += r;
	} while (++steps < 40 && (r > 0 || removed == 0));
	assert_int_equal(removed, 50);
	for (int i = 0; i < 100; i++) {         /* the recent ones are still waiting */
		add_triplet(l, "192.0.2.1", i, T0 + 50100, &a);
		assert_int_equal(a.verdict, GREYLIST_DEFER);
		assert_int_equal(a.retry_in, i % 2 ? 300 : 200);
	}
	/* later, the passed ones and their client go too */
	removed = 0;
	for (steps = 0; steps < 40; steps++)
		removed += gl_lmdb_tick(l, T0 + 300 + 86401, 7);
	assert_int_equal(removed, 11);
	gl_lmdb_close(l);
}

/* The service's loop purges on its own, once a second. */
static void test_purge_on_the_loop(void **state)
{
	struct fixture *f = *state;
	struct greylist_params p = { 300, 86400, 0 };
	struct greylist_answer a;
	struct event_base *base = event_base_new();
	struct timeval wait = { 1, 500000 };
	char err[256];
	struct gl_lmdb *l = gl_lmdb_open(f->dir, GREYLIST_LMDB_MAPSIZE, &p, base, err,
	    sizeof(err));
	time_t old = time(NULL) - 86400 - 100;

	assert_non_null(l);
	for (int i = 0; i < 5; i++)
		add_triplet(l, "192.0.2.1", i, old, &a);
	add_triplet(l, "192.0.2.1", 99, time(NULL), &a);
	event_base_loopexit(base, &wait);
	event_base_dispatch(base);
	/* nothing left to purge: the timer did it */
	assert_int_equal(gl_lmdb_tick(l, time(NULL), 100), 0);
	add_triplet(l, "192.0.2.1", 99, time(NULL), &a);   /* the recent one stays */
	assert_int_equal(a.verdict, GREYLIST_DEFER);
	assert_true(a.retry_in < 300);                 /* counted from its first attempt */
	gl_lmdb_close(l);
	event_base_free(base);
}

static void test_map_full(void **state)
{
	struct fixture *f = *state;
	struct greylist_params p = { 300, 86400, 3 };
	struct greylist_answer a;
	char err[256];
	struct gl_lmdb *l = gl_lmdb_open(f->dir, 64 * 1024, &p, NULL, err, sizeof(err));
	int deferred = 0, unavailable = 0;

	assert_non_null(l);
	for (int i = 0; i < 3000 && unavailable < 5; i++) {
		add_triplet(l, "192.0.2.1", i, T0, &a);
		if (a.verdict == GREYLIST_DEFER)
			deferred++;
		else if (a.verdict == GREYLIST_UNAVAILABLE)
			unavailable++;
		else
			fail_msg("triplet %d: verdict %d", i, a.verdict);
	}
	assert_true(deferred > 10);
	assert_int_equal(unavailable, 5);
	/* once the purge made room, checks work again */
	while (gl_lmdb_tick(l, T0 + 86401, 100) > 0)
		;
	add_triplet(l, "192.0.2.1", 99999, T0 + 86401, &a);
	assert_int_equal(a.verdict, GREYLIST_DEFER);
	gl_lmdb_close(l);
}

/* A reload: new delays at once; another state_dir, another store. */
static void test_reconfigure(void **state)
{
	struct fixture *f = *state;
	struct greylist *g = open_ok(f);
	char other[128];

	assert_int_equal(check(g, "192.0.2.1", "a@x.test", "u@y.test", T0).verdict, GREYLIST_DEFER);
	f->cfg.greylist_delay = 60;
	greylist_reconfigure(g, &f->cfg);
	assert_int_equal(check(g, "192.0.2.1", "a@x.test", "u@y.test", T0 + 60).verdict,
	    GREYLIST_PASS);

	snprintf(other, sizeof(other), "%s/other", f->dir);
	assert_int_equal(mkdir(other, 0700), 0);
	free(f->cfg.state_dir);
	f->cfg.state_dir = strdup(other);
	greylist_reconfigure(g, &f->cfg);
	assert_int_equal(check(g, "192.0.2.1", "a@x.test", "u@y.test", T0 + 70).verdict,
	    GREYLIST_DEFER);
	snprintf(other, sizeof(other), "%s/other/greylist.mdb", f->dir);
	assert_int_equal(access(other, F_OK), 0);

	/* a store that cannot be opened: the old one stays */
	free(f->cfg.state_dir);
	f->cfg.state_dir = strdup("/nonexistent/state");
	greylist_reconfigure(g, &f->cfg);
	assert_int_equal(check(g, "192.0.2.1", "a@x.test", "u@y.test", T0 + 130).verdict,
	    GREYLIST_PASS);
	greylist_close(g);
}

/* A broken file (a system crash between syncs) is moved aside. */
static void test_broken_file_moved_aside(void **state)
{
	struct fixture *f = *state;
	char path[128], aside[160], junk[8192];
	struct greylist *g;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/greylist.mdb", f->dir);
	snprintf(aside, sizeof(aside), "%s.broken", path);
	memset(junk, 'x', sizeof(junk));
	assert_non_null(fp = fopen(path, "w"));
	assert_int_equal(fwrite(junk, 1, sizeof(junk), fp), sizeof(junk));
	fclose(fp);
	g = open_ok(f);
	assert_int_equal(access(aside, F_OK), 0);
	assert_int_equal(check(g, "192.0.2.1", "a@x.test", "u@y.test", T0).verdict, GREYLIST_DEFER);
	assert_int_equal(check(g, "192.0.2.1", "a@x.test", "u@y.test", T0 + 300).verdict,
	    GREYLIST_PASS);
	greylist_close(g);
}

static void test_unopenable(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	free(f->cfg.state_dir);
	f->cfg.state_dir = strdup("/nonexistent/state");
	assert_null(greylist_open(&f->cfg, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/state/greylist.mdb"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defer_then_pass, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auto_allow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peek_writes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_purge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_purge_on_the_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconfigure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broken_file_moved_aside, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unopenable, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
