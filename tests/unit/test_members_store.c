/*
 * test_members_store.c - members.mdb and the members check: written whole
 * and swapped in (a reader follows the new file at its next lookup),
 * member, owner and moderator may post, case and +detail ignored, no data
 * or data older than 10 sync intervals is "unknown", and a failed fetch
 * (Mailman not there: a real connection refused) keeps the old file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf/config.h"
#include "lib/xalloc.h"
#include "lists/lists_sync.h"
#include "lists/members.h"
#include "lists/members_key.h"
#include "lists/members_source.h"
#include "lists/members_store.h"

struct fixture {
	char dir[64];
	struct config cfg;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_members_XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	config_defaults(&f->cfg);
	f->cfg.members_source = MEMBERS_MAILMAN3;
	f->cfg.members_sync_interval = 60;
	f->cfg.recipient_delimiter = '+';
	f->cfg.state_dir = xstrdup(f->dir);
	f->cfg.members_url = xstrdup("http://127.0.0.1:1/3.1");
	f->cfg.members_credentials = xstrdup("restadmin:nothing");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		return -1;
	config_free(&f->cfg);
	free(f);
	return 0;
}

static void store(struct fixture *f, time_t fetched, const char *extra_member)
{
	struct members_data d;
	char err[256];
	members_data_init(&d);
	struct members_list *l = members_data_list(&d, "Devs@Lists.Example.Test", fetched);
	members_list_add(l, "alice@example.org", "member");
	members_list_add(l, "alice@example.org", "owner");     /* both: stored once */
	members_list_add(l, "owner@example.org", "owner");
	members_list_add(l, "mod@example.org", "moderator");
	if (extra_member != NULL)
		members_list_add(l, extra_member, "member");
	members_data_list(&d, "empty@lists.example.test", fetched);
	if (members_store_write(f->dir, &d, err, sizeof(err)) < 0)
		fail_msg("members_store_write: %s", err);
	members_data_free(&d);
}

static enum members_answer check(struct members *m, const char *list, const char *sender,
    const char *want_why)
{
	char why[512];
	enum members_answer a = members_check(m, list, sender, why, sizeof(why));
	if (want_why != NULL && strstr(why, want_why) == NULL)
		fail_msg("why \"%s\" does not say \"%s\"", why, want_why);
	return a;
}

static void test_check(void **state)
{
	struct fixture *f = *state;
	char err[256];
	struct members *m = members_open(&f->cfg, err, sizeof(err));
	assert_non_null(m);

	/* no file yet */
	assert_int_equal(check(m, "devs@lists.example.test", "alice@example.org",
	    "members.mdb"), MEMBERS_UNKNOWN);
	store(f, time(NULL), NULL);
	const char *list = "devs@lists.example.test";
	assert_int_equal(check(m, list, "alice@example.org", "is a member"), MEMBERS_IS_MEMBER);
	assert_int_equal(check(m, list, "ALICE+news@Example.Org", NULL), MEMBERS_IS_MEMBER);
	assert_int_equal(check(m, "DEVS@lists.EXAMPLE.test", "alice@example.org", NULL),
	    MEMBERS_IS_MEMBER);
	assert_int_equal(check(m, list, "owner@example.org", "is an owner"), MEMBERS_IS_MEMBER);
	assert_int_equal(check(m, list, "mod@example.org", "is a moderator"), MEMBERS_IS_MEMBER);
	assert_int_equal(check(m, list, "mallory@example.com",
	    "<mallory@example.com> is no member"), MEMBERS_NOT_MEMBER);
	assert_int_equal(check(m, list, "", "null sender"), MEMBERS_NOT_MEMBER);
	assert_int_equal(check(m, "empty@lists.example.test", "alice@example.org", NULL),
	    MEMBERS_NOT_MEMBER);
	assert_int_equal(check(m, "other@lists.example.test", "alice@example.org",
	    "no members data for <other@lists.example.test>"), MEMBERS_UNKNOWN);

	/* a new file: seen at the next lookup, through the same reader */
	assert_int_equal(check(m, list, "dave@example.org", NULL), MEMBERS_NOT_MEMBER);
	store(f, time(NULL), "dave@example.org");
	assert_int_equal(check(m, list, "dave@example.org", NULL), MEMBERS_IS_MEMBER);

	/* 10 intervals old: still trusted; older: unknown */
	store(f, time(NULL) - 10 * 60 + 5, NULL);
	assert_int_equal(check(m, list, "mallory@example.com", NULL), MEMBERS_NOT_MEMBER);
	store(f, time(NULL) - 10 * 60 - 5, NULL);
	assert_int_equal(check(m, list, "mallory@example.com", "more than 10 x"),
	    MEMBERS_UNKNOWN);
	members_close(m);
}

static void test_failed_fetch_keeps_old_data(void **state)
{
	struct fixture *f = *state;
	char path[128], err[512] = "";
	struct stat before, after;

	store(f, time(NULL), NULL);
	snprintf(path, sizeof(path), "%s/members.mdb", f->dir);
	assert_int_equal(stat(path, &before), 0);
	/* port 1 on loopback: connection refused, a real failure */
	assert_int_equal(lists_sync_run(&f->cfg, NULL, NULL, err, sizeof(err)), -1);
	if (strstr(err, "GET http://127.0.0.1:1/3.1/lists") == NULL)
		fail_msg("error \"%s\" does not name the request", err);
	assert_int_equal(stat(path, &after), 0);
	assert_int_equal(before.st_ino, after.st_ino);
	struct members *m = members_open(&f->cfg, err, sizeof(err));
	assert_int_equal(check(m, "devs@lists.example.test", "alice@example.org", NULL),
	    MEMBERS_IS_MEMBER);
	members_close(m);
	/* nothing left behind */
	snprintf(path, sizeof(path), "%s/members.mdb.tmp.%ld", f->dir, (long)getpid());
	assert_int_equal(access(path, F_OK), -1);
}

/* What the members source takes at its limits can be stored and found:
 * a list and a member of MEMBERS_ADDRESS_MAX bytes each. */
static void test_longest_addresses_fit(void **state)
{
	struct fixture *f = *state;
	char list[MEMBERS_ADDRESS_MAX + 1], member[MEMBERS_ADDRESS_MAX + 1], text[1024];
	char err[400];
	struct members_source s;
	memset(list, 'l', sizeof(list) - 1);
	list[sizeof(list) - 1] = '\0';
	list[4] = '@';
	memset(member, 'm', sizeof(member) - 1);
	member[sizeof(member) - 1] = '\0';
	member[4] = '@';
	snprintf(text, sizeof(text), "%s %s", list, member);

	members_source_init(&s, '+');
	assert_int_equal(members_source_line(&s, text, 0, err, sizeof(err)), 0);
	if (members_store_write(f->dir, &s.data, err, sizeof(err)) < 0)
		fail_msg("members_store_write: %s", err);
	members_source_free(&s);
	struct members *m = members_open(&f->cfg, err, sizeof(err));
	assert_non_null(m);
	assert_int_equal(check(m, list, member, "is a member"), MEMBERS_IS_MEMBER);
	members_close(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_fetch_keeps_old_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_longest_addresses_fit, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
