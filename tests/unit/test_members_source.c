/*
 * test_members_source.c - the parser of the `members` text source and
 * the normalisation of members' addresses: a list line with addresses,
 * indented lines that add to it, lower-case and +detail removed, and the
 * errors (an indented line first, a bad address, a bad list, a list
 * twice).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lists/members_key.h"
#include "lists/members_source.h"

static int line(struct members_source *s, const char *text, int indented, char *err)
{
	char buf[512];
	snprintf(buf, sizeof(buf), "%s", text);
	return members_source_line(s, buf, indented, err, 256);
}

static void test_normalise(void **state)
{
	struct buf b = BUF_INIT;
	assert_int_equal(members_normalise("Alice+Lists@Example.ORG", '+', &b), 0);
	assert_string_equal(b.data, "alice@example.org");
	assert_int_equal(members_normalise("alice-x@example.org", '-', &b), 0);
	assert_string_equal(b.data, "alice@example.org");
	assert_int_equal(members_normalise("alice+x@example.org", '\0', &b), 0);
	assert_string_equal(b.data, "alice+x@example.org");
	/* a delimiter first in the local part is no detail */
	assert_int_equal(members_normalise("+x@example.org", '+', &b), 0);
	assert_string_equal(b.data, "+x@example.org");
	/* the last '@' splits; a '+' in the domain stays */
	assert_int_equal(members_normalise("a+b@c+d.example", '+', &b), 0);
	assert_string_equal(b.data, "a@c+d.example");
	assert_int_equal(members_normalise("noat", '+', &b), -1);
	assert_int_equal(members_normalise("@example.org", '+', &b), -1);
	assert_int_equal(members_normalise("a@", '+', &b), -1);
	assert_int_equal(members_normalise("a b@example.org", '+', &b), -1);
	assert_int_equal(members_normalise("a\t@example.org", '+', &b), -1);
	buf_free(&b);
}

static void test_lists_and_continuations(void **state)
{
	struct members_source s;
	char err[256];
	members_source_init(&s, '+');
	assert_int_equal(line(&s, "Devs@Lists.Example.Test  alice@example.org Bob+x@EXAMPLE.org", 0,
	    err), 0);
	assert_int_equal(line(&s, "carol@example.net   dave@example.net", 1, err), 0);
	assert_int_equal(line(&s, "empty@lists.example.test", 0, err), 0);
	assert_int_equal(line(&s, "announce@lists.example.test\teve@example.org", 0, err), 0);
	assert_int_equal(s.data.n, 3);
	struct members_list *l = &s.data.lists[0];
	assert_string_equal(l->address, "devs@lists.example.test");
	assert_int_equal(l->n, 4);
	assert_string_equal(l->addrs[0], "alice@example.org");
	assert_string_equal(l->addrs[1], "bob@example.org");
	assert_string_equal(l->addrs[2], "carol@example.net");
	assert_string_equal(l->addrs[3], "dave@example.net");
	assert_string_equal(l->roles[0], "member");
	assert_int_equal(l->fetched, 0);
	assert_int_equal(s.data.lists[1].n, 0);
	assert_int_equal(s.data.lists[2].n, 1);
	assert_string_equal(s.data.lists[2].addrs[0], "eve@example.org");
	/* an indented line after announce adds to announce */
	assert_int_equal(line(&s, "frank@example.org", 1, err), 0);
	assert_int_equal(s.data.lists[2].n, 2);
	members_source_free(&s);
}

static void assert_error(const char *const *lines, const int *indented, size_t n,
    const char *want)
{
	struct members_source s;
	char err[256] = "";
	int r = 0;
	members_source_init(&s, '+');
	for (size_t i = 0; i < n && r == 0; i++)
		r = line(&s, lines[i], indented[i], err);
	assert_int_equal(r, -1);
	if (strstr(err, want) == NULL)
		fail_msg("error \"%s\" does not say \"%s\"", err, want);
	members_source_free(&s);
}

static void test_errors(void **state)
{
	const char *first[] = { "alice@example.org" };
	const int in1[] = { 1 };
	assert_error(first, in1, 1, "an indented line must follow a LIST@DOMAIN line");
	const char *bad_addr[] = { "devs@lists.example.test alice@example.org nobody" };
	const int in0[] = { 0, 0 };
	assert_error(bad_addr, in0, 1, "\"nobody\" is no address");
	const char *bad_list[] = { "devs alice@example.org" };
	assert_error(bad_list, in0, 1, "\"devs\" is no list address");
	const char *two_at[] = { "a@b@c alice@example.org" };
	assert_error(two_at, in0, 1, "\"a@b@c\" is no list address");
	const char *twice[] = { "devs@lists.example.test a@example.org",
	    "DEVS@lists.example.test b@example.org" };
	assert_error(twice, in0, 2, "named twice");
	/* after a bad list line, indented lines have no list to add to */
	const char *orphan[] = { "devs x@example.org", "y@example.org" };
	const int in01[] = { 0, 1 };
	struct members_source s;
	char err[256];
	members_source_init(&s, '+');
	assert_int_equal(line(&s, orphan[0], in01[0], err), -1);
	assert_int_equal(line(&s, orphan[1], in01[1], err), -1);
	assert_non_null(strstr(err, "must follow"));
	members_source_free(&s);
}

/* A list or member address longer than MEMBERS_ADDRESS_MAX (254) is an
 * error of its line: LIST TAB ADDRESS must fit an LMDB key (511 bytes), or
 * the source was accepted and its compile failed at the store, without a
 * line.  tests/fuzz/fuzz_lists_source.c found it (a list of 531 bytes). */
static void test_lengths(void **state)
{
	char list[MEMBERS_ADDRESS_MAX + 2], member[MEMBERS_ADDRESS_MAX + 2], text[1024];
	struct members_source s;
	char err[400];
	memset(list, 'l', sizeof(list) - 1);
	list[sizeof(list) - 1] = '\0';
	list[4] = '@';
	memset(member, 'm', sizeof(member) - 1);
	member[sizeof(member) - 1] = '\0';
	member[4] = '@';

	members_source_init(&s, '+');
	snprintf(text, sizeof(text), "%s m@x", list);
	assert_int_equal(members_source_line(&s, text, 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "is no list address"));
	list[MEMBERS_ADDRESS_MAX] = '\0';
	snprintf(text, sizeof(text), "%s %s", list, member);
	assert_int_equal(members_source_line(&s, text, 0, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "is no address"));
	member[MEMBERS_ADDRESS_MAX] = '\0';
	snprintf(text, sizeof(text), "%s", member);
	assert_int_equal(members_source_line(&s, text, 1, err, sizeof(err)), 0);
	assert_int_equal(s.data.n, 1);
	assert_int_equal(s.data.lists[0].n, 1);
	assert_string_equal(s.data.lists[0].addrs[0], member);
	members_source_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normalise),
		cmocka_unit_test(test_lists_and_continuations),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_lengths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
