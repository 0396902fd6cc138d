/*
 * test_rules_eval.c - evaluating rules conditions: every test kind alone,
 * negated and combined, header and body matching on a parsed message,
 * what an entry needs, the regex cache, and bounded work on hostile input
 * (catastrophic backtracking, long and invalid UTF-8 subjects).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db/rules_entry.h"
#include "rules/eval.h"
#include "mime/mime.h"
#include "rules/regex.h"

static struct mime_header hdrs[] = {
	{ "From", "Boss <boss@example.test>" },
	{ "Subject", "Quarterly report \xe2\x80\x94 caf\xc3\xa9" },
	{ "List-Id", "Developers <dev.lists.example.test>" },
	{ "Received", "from a.example.test" },
	{ "received", "from b.example.test by mx" },
	{ "X-Spam-Flag", "NO" },
};

static char body[] = "Hello Bob,\nthe numbers are in.\nSee https://example.test/x\n";

static struct mime_message msg = {
	hdrs, sizeof(hdrs) / sizeof(hdrs[0]), body, sizeof(body) - 1, 0,
};

static const struct rule_context base_ctx = {
	.sender = "boss@example.test",
	.rcpt = "bob+lists@example.test",
	.extension = "lists",
	.size = 50 * 1024,
	.spam = 0,
	.score = 0,
	.msg = &msg,
};

/* Whether the condition of "if COND stop" holds in ctx; the warning, if
 * any, is copied to warn. */
static int holds_in(const char *cond, const struct rule_context *ctx, char *warn,
    size_t warnlen)
{
	struct rules_entry e = { .spam = -1 };
	char err[512], line[8192];
	snprintf(line, sizeof(line), "if %s stop", cond);
	if (rules_parse_line(line, 0, 42, &e, err, sizeof(err)) != 0)
		fail_msg("\"%s\": %s", line, err);
	assert_int_equal(e.ninstr, 1);
	int r = rule_condition_holds(&e.instr[0], ctx, err, sizeof(err));
	assert_true(r == 0 || r == 1);
	if (warn != NULL)
		snprintf(warn, warnlen, "%s", err);
	else if (err[0] != '\0')
		fail_msg("\"%s\": unexpected warning %s", cond, err);
	rules_entry_free(&e);
	return r;
}

static void expect_ctx(const char *cond, const struct rule_context *ctx, int want)
{
	int r = holds_in(cond, ctx, NULL, 0);
	if (r != want)
		fail_msg("\"%s\": %s, expected %s", cond, r ? "holds" : "does not hold",
		    want ? "holds" : "does not hold");
}

/* cond holds as want, and `not cond` the other way. */
static void expect(const char *cond, int want)
{
	char negated[4096];
	expect_ctx(cond, &base_ctx, want);
	snprintf(negated, sizeof(negated), "not %s", cond);
	expect_ctx(negated, &base_ctx, !want);
}

static void test_no_condition(void **state)
{
	struct rules_entry e = { .spam = -1 };
	char err[256] = "x";
	assert_int_equal(rules_parse_line("maildir ~/x", 0, 1, &e, err, sizeof(err)), 0);
	assert_int_equal(rule_condition_holds(&e.instr[0], &base_ctx, err, sizeof(err)), 1);
	assert_string_equal(err, "");
	struct rule_context empty = { 0 };
	assert_int_equal(rule_condition_holds(&e.instr[0], &empty, err, sizeof(err)), 1);
	struct buf b = BUF_INIT;
	rule_condition_format(&e.instr[0], &b);
	assert_int_equal(b.len, 0);
	rules_entry_free(&e);
}

static void test_spam_and_score(void **state)
{
	struct rule_context ctx = base_ctx;
	expect("spam", 0);
	expect("score >= 0", 1);
	expect("score > 0", 0);
	expect("score <= 0", 1);
	expect("score < 0", 0);
	expect("score > -0.5", 1);
	ctx.spam = 1;
	ctx.score = 5.5;
	expect_ctx("spam", &ctx, 1);
	expect_ctx("not spam", &ctx, 0);
	expect_ctx("score >= 5.5", &ctx, 1);
	expect_ctx("score > 5.5", &ctx, 0);
	expect_ctx("score > 5.49", &ctx, 1);
	expect_ctx("score < 5.500001", &ctx, 1);
	expect_ctx("score <= 5", &ctx, 0);
	ctx.score = -3;
	expect_ctx("score < -2.5", &ctx, 1);
	expect_ctx("score >= -3", &ctx, 1);
	expect_ctx("score > -3", &ctx, 0);
	ctx.score = 0.1;
	expect_ctx("score >= 0.1", &ctx, 1);   /* parsed to the same double as 0.1 */
	expect_ctx("score <= 0.1", &ctx, 1);
}

static void test_size(void **state)
{
	struct rule_context ctx = base_ctx;
	expect("size > 49K", 1);
	expect("size > 50K", 0);
	expect("size >= 50K", 1);
	expect("size < 50K", 0);
	expect("size <= 51200", 1);
	expect("size < 1M", 1);
	ctx.size = 3ULL << 30;
	expect_ctx("size > 2G", &ctx, 1);
	expect_ctx("size < 3G", &ctx, 0);
	ctx.size = 0;
	expect_ctx("size < 1", &ctx, 1);
	expect_ctx("size > 0", &ctx, 0);
}

static void test_envelope(void **state)
{
	struct rule_context ctx = base_ctx;
	expect("sender ~ /@example\\.test$/", 1);
	expect("sender ~ /^BOSS@/", 1);             /* case-insensitive */
	expect("sender ~ /^BOSS@/I", 0);            /* unless /I */
	expect("sender ~ /^boss@/I", 1);
	expect("sender contains \"BOSS@EXAMPLE\"", 1);
	expect("sender contains \"bosses\"", 0);
	expect("rcpt ~ /^bob\\+lists@/", 1);
	expect("rcpt ~ /^alice/", 0);
	expect("rcpt contains \"+LISTS\"", 1);
	expect("extension ~ /^lists$/", 1);
	expect("extension ~ /^news$/", 0);
	expect("extension contains \"list\"", 1);
	/* the null sender and no extension are "" */
	ctx.sender = "";
	ctx.extension = "";
	expect_ctx("sender ~ /^$/", &ctx, 1);
	expect_ctx("sender ~ /./", &ctx, 0);
	expect_ctx("extension ~ /^$/", &ctx, 1);
	expect_ctx("extension contains \"a\"", &ctx, 0);
	/* and so are NULL strings */
	ctx.sender = NULL;
	ctx.rcpt = NULL;
	ctx.extension = NULL;
	expect_ctx("sender ~ /^$/", &ctx, 1);
	expect_ctx("rcpt ~ /x/", &ctx, 0);
	expect_ctx("extension ~ /^$/", &ctx, 1);
}

static void test_headers(void **state)
{
	expect("header List-Id ~ /<dev\\.lists\\.example\\.test>/", 1);
	expect("header list-id ~ /<dev\\.lists/", 1);       /* names are case-insensitive */
	expect("header LIST-ID contains \"DEV.LISTS\"", 1);
	expect("header List-Id ~ /<other>/", 0);
	expect("header X-Missing ~ /.*/", 0);               /* no such header: no match */
	expect("header X-Missing contains \"a\"", 0);
	expect("header X-Spam-Flag contains \"yes\"", 0);
	expect("header X-Spam-Flag ~ /^no$/", 1);
	expect("header X-Spam-Flag ~ /^no$/I", 0);
	/* any header of that name matches: here the second one */
	expect("header Received ~ /by mx/", 1);
	expect("header Received ~ /^from a\\./", 1);
	expect("header Received ~ /^from c\\./", 0);
	/* subject is header Subject, decoded UTF-8, matched as characters */
	expect("subject ~ /^quarterly/", 1);
	expect("subject ~ /caf\xc3\xa9$/", 1);
	expect("subject ~ /CAF\xc3\x89$/", 1);               /* Unicode case folding */
	expect("subject ~ /report . caf/", 1);              /* the dash is one character */
	expect("subject contains \"REPORT\"", 1);
	expect("subject ~ /invoice/", 0);
	expect("header Subject ~ /report/", 1);
}

static void test_body(void **state)
{
	struct rule_context ctx = base_ctx;
	expect("body ~ /numbers are in/", 1);
	expect("body ~ /^the numbers/", 0);                 /* ^ is the start of the body */
	expect("body ~ /(?m)^the numbers/", 1);             /* unless (?m) */
	expect("body ~ /https:\\/\\/example\\.test\\//", 1);
	expect("body contains \"SEE HTTPS\"", 1);
	expect("body ~ /unsubscribe/", 0);
	/* the body is body_text_len bytes, NULs included */
	struct mime_message m = msg;
	char bin[] = "abc\0def";
	m.body_text = bin;
	m.body_text_len = sizeof(bin) - 1;
	ctx.msg = &m;
	expect_ctx("body ~ /def$/", &ctx, 1);
	expect_ctx("body ~ /c\\x00d/", &ctx, 1);
	expect_ctx("body contains \"def\"", &ctx, 1);
	m.body_text_len = 3;
	expect_ctx("body ~ /def/", &ctx, 0);
	expect_ctx("body contains \"def\"", &ctx, 0);
	/* invalid UTF-8 in the subject neither crashes nor blocks a match */
	char bad[] = "\xff\xfe caf\xc3 X \xc3\xa9 ok \xed\xa0\x80";
	m.body_text = bad;
	m.body_text_len = sizeof(bad) - 1;
	expect_ctx("body ~ /ok/", &ctx, 1);
	expect_ctx("body ~ /X . ok/", &ctx, 1);
	expect_ctx("body ~ /\\xff/", &ctx, 0);
	m.body_text = NULL;
	m.body_text_len = 0;
	expect_ctx("body ~ /^$/", &ctx, 1);
}

static void test_and_not(void **state)
{
	struct rule_context ctx = base_ctx;
	expect_ctx("sender ~ /@example\\.test$/ and size < 100K", &ctx, 1);
	expect_ctx("sender ~ /@example\\.test$/ and size > 100K", &ctx, 0);
	expect_ctx("size > 100K and sender ~ /@example\\.test$/", &ctx, 0);
	expect_ctx("header List-Id ~ /dev/ and not spam", &ctx, 1);
	ctx.spam = 1;
	expect_ctx("header List-Id ~ /dev/ and not spam", &ctx, 0);
	expect_ctx("not header List-Id ~ /dev/ and spam", &ctx, 0);
	expect_ctx("not header List-Id ~ /other/ and spam and not size > 1M and "
	    "subject ~ /report/ and body contains \"bob\" and rcpt ~ /bob/", &ctx, 1);
	/* `not header X` holds when no header X matches at all */
	expect_ctx("not header Received ~ /^from a/", &ctx, 0);
	expect_ctx("not header Received ~ /^from z/", &ctx, 1);
}

/* 64 tests, all needed to decide. */
static void test_long_condition(void **state)
{
	struct buf b = BUF_INIT;
	buf_puts(&b, "size > 1");
	for (int i = 1; i < 63; i++)
		buf_printf(&b, " and header Received ~ /ex(a|%d)mple/", i);
	buf_puts(&b, " and not spam");
	expect_ctx(b.data, &base_ctx, 1);
	buf_reset(&b);
	buf_puts(&b, "size > 1");
	for (int i = 1; i < 63; i++)
		buf_printf(&b, " and header Received ~ /ex(a|%d)mple/", i);
	buf_puts(&b, " and spam");
	expect_ctx(b.data, &base_ctx, 0);
	buf_free(&b);
}

static void test_needs(void **state)
{
	static const struct { const char *line; int need; } cases[] = {
		{ "maildir ~/x", 0 },
		{ "if spam and score > 3 and size < 1K maildir ~/x", 0 },
		{ "if sender ~ /x/ and rcpt ~ /y/ and extension ~ /z/ stop", 0 },
		{ "if header X ~ /y/ stop", RULES_NEED_HEADERS },
		{ "if not subject contains \"a\" stop", RULES_NEED_HEADERS },
		{ "if body ~ /y/ stop", RULES_NEED_BODY },
		{ "if body ~ /y/ and subject ~ /x/ stop", RULES_NEED_HEADERS | RULES_NEED_BODY },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rules_entry e = { .spam = -1 };
		char err[256];
		assert_int_equal(rules_parse_line("mbox /var/mail/x", 0, 1, &e, err,
		    sizeof(err)), 0);
		assert_int_equal(rules_parse_line(cases[i].line, 0, 2, &e, err, sizeof(err)), 0);
		if (rules_entry_needs(&e) != cases[i].need)
			fail_msg("\"%s\": needs %d, expected %d", cases[i].line,
			    rules_entry_needs(&e), cases[i].need);
		rules_entry_free(&e);
	}
	struct rules_entry none = { .spam = -1 };
	assert_int_equal(rules_entry_needs(&none), 0);
}

/* Without a message, header and body tests see nothing and say so. */
static void test_no_message(void **state)
{
	struct rule_context ctx = base_ctx;
	char warn[256];
	ctx.msg = NULL;
	assert_int_equal(holds_in("header List-Id ~ /dev/", &ctx, warn, sizeof(warn)), 0);
	assert_string_equal(warn, "line 42: headers needed but not given");
	assert_int_equal(holds_in("not body ~ /x/", &ctx, warn, sizeof(warn)), 1);
	assert_string_equal(warn, "line 42: body needed but not given");
	assert_int_equal(holds_in("sender ~ /boss/", &ctx, warn, sizeof(warn)), 1);
	assert_string_equal(warn, "");
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* (a+)+$ on aaaa...b backtracks exponentially: the limits stop it fast,
 * it counts as no match, and the warning names the line and the limit. */
static void test_catastrophic_regex(void **state)
{
	struct rule_context ctx = base_ctx;
	struct mime_message m = msg;
	size_t n = 100000;
	char *s = malloc(n + 2);
	memset(s, 'a', n);
	s[n] = 'b';
	s[n + 1] = '\0';
	m.body_text = s;
	m.body_text_len = n + 1;
	ctx.msg = &m;
	ctx.sender = s;

	char warn[512];
	double t0 = now();
	assert_int_equal(holds_in("body ~ /(a+)+$/", &ctx, warn, sizeof(warn)), 0);
	assert_non_null(strstr(warn, "line 42: body ~ /(a+)+$/: regex hit the "));
	assert_non_null(strstr(warn, "limit; counted as not matching"));
	/* not of an undecided test holds, still with the warning */
	assert_int_equal(holds_in("not sender ~ /^(a|aa)+$/", &ctx, warn, sizeof(warn)), 1);
	assert_non_null(strstr(warn, "line 42: sender ~ /^(a|aa)+$/: regex hit the "));
	/* short subjects still match normally with the same pattern */
	ctx.sender = "aaaa";
	assert_int_equal(holds_in("sender ~ /(a+)+$/", &ctx, warn, sizeof(warn)), 1);
	assert_string_equal(warn, "");
	double elapsed = now() - t0;
	if (elapsed > 2.0)
		fail_msg("catastrophic regexes took %.2f s", elapsed);
	/* another classic, on a subject that nearly matches */
	memset(s, 'a', n);
	s[n] = '!';
	ctx.sender = s;
	t0 = now();
	assert_int_equal(holds_in("sender ~ /^(\\w+\\s?)*$/", &ctx, warn, sizeof(warn)), 0);
	assert_non_null(strstr(warn, "limit; counted as not matching"));
	if (now() - t0 > 2.0)
		fail_msg("took %.2f s", now() - t0);
	free(s);
}

/* Long and numerous inputs: linear work, right answers. */
static void test_long_inputs(void **state)
{
	struct rule_context ctx = base_ctx;
	struct mime_message m = { 0 };
	size_t n = 8 << 20;
	char *big = malloc(n + 1);
	for (size_t i = 0; i < n; i++)
		big[i] = (char)('a' + i % 23);
	memcpy(big + n - 6, "NEEDLE", 6);
	big[n] = '\0';
	m.body_text = big;
	m.body_text_len = n;
	m.nheaders = 10000;
	m.headers = calloc(m.nheaders, sizeof(*m.headers));
	for (size_t i = 0; i < m.nheaders; i++) {
		m.headers[i].name = "Received";
		m.headers[i].value = "from x";
	}
	m.headers[m.nheaders - 1].value = big;
	ctx.msg = &m;
	double t0 = now();
	expect_ctx("body ~ /needle$/", &ctx, 1);
	expect_ctx("body ~ /needleX/", &ctx, 0);
	expect_ctx("body contains \"NeEdLe\"", &ctx, 1);
	expect_ctx("header Received ~ /needle$/", &ctx, 1);
	expect_ctx("header Received contains \"needle\"", &ctx, 1);
	expect_ctx("header Received ~ /^from y/", &ctx, 0);
	expect_ctx("body contains \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\"",
	    &ctx, 0);
	if (now() - t0 > 10.0)
		fail_msg("long inputs took %.2f s", now() - t0);
	free(m.headers);
	free(big);
}

/* A pattern is compiled once per process, not once per message; a pattern
 * that no longer compiles (a forged blob) counts as no match with a
 * warning. */
static void test_regex_cache(void **state)
{
	char err[256];
	rule_regex_cache_clear();
	unsigned long before = rule_regex_compiles();
	for (int i = 0; i < 100; i++) {
		assert_int_equal(rule_regex_match("^b.ss@", 0, "boss@x", 6, err, sizeof(err)), 1);
		assert_int_equal(rule_regex_match("^b.ss@", 1, "BOSS@x", 6, err, sizeof(err)), 0);
	}
	assert_int_equal(rule_regex_compiles() - before, 2);
	/* a working set well under the cache size stays compiled */
	for (int round = 0; round < 3; round++) {
		before = rule_regex_compiles();
		for (int i = 0; i < RULE_REGEX_CACHE_SLOTS / 4; i++) {
			char pat[32];
			snprintf(pat, sizeof(pat), "^user%d@", i);
			assert_int_equal(rule_regex_match(pat, 0, "user1@x", 7, err, sizeof(err)),
			    i == 1);
		}
		assert_int_equal(rule_regex_compiles() - before,
		    round == 0 ? RULE_REGEX_CACHE_SLOTS / 4 : 0);
	}
	/* more patterns than slots: bounded, and still right */
	for (int i = 0; i < 3 * RULE_REGEX_CACHE_SLOTS; i++) {
		char pat[32], subj[32];
		snprintf(pat, sizeof(pat), "^x%d$", i);
		snprintf(subj, sizeof(subj), "X%d", i);
		assert_int_equal(rule_regex_match(pat, 0, subj, strlen(subj), err, sizeof(err)), 1);
	}
	assert_int_equal(rule_regex_match("a(b", 0, "a(b", 3, err, sizeof(err)), -1);
	assert_string_equal(err, "bad regex: missing closing parenthesis at offset 3");
	before = rule_regex_compiles();
	assert_int_equal(rule_regex_match("a(b", 0, "a(b", 3, err, sizeof(err)), -1);
	assert_int_equal(rule_regex_compiles(), before);        /* the failure is cached */
	assert_int_equal(rule_regex_check("a(b", 0, err, sizeof(err)), -1);
	assert_int_equal(rule_regex_check("a(b)", 0, err, sizeof(err)), 0);
	rule_regex_cache_clear();
	assert_int_equal(rule_regex_match("x", 0, NULL, 0, err, sizeof(err)), 0);
}

static void test_format(void **state)
{
	static const char *const conds[] = {
		"header List-Id ~ /x/ and not spam",
		"score >= 5 and score < -0.5 and score > 0.000001",
		"size > 100K and size < 3M and size <= 1G and size >= 1000",
		"sender ~ /a b; c/I and rcpt contains \"x \\\"y\\\" \\\\\"",
		"not subject ~ /\\/\\// and body ~ /(?m)^x/ and extension contains \"l\"",
	};
	for (size_t i = 0; i < sizeof(conds) / sizeof(conds[0]); i++) {
		struct rules_entry e = { .spam = -1 };
		char err[512], line[1024];
		struct buf b = BUF_INIT;
		snprintf(line, sizeof(line), "if %s maildir ~/x ; stop", conds[i]);
		assert_int_equal(rules_parse_line(line, 0, 1, &e, err, sizeof(err)), 0);
		rule_condition_format(&e.instr[1], &b);
		assert_string_equal(b.data, conds[i]);
		/* the printed form parses back to the same */
		struct rules_entry again = { .spam = -1 };
		snprintf(line, sizeof(line), "if %s stop", b.data);
		assert_int_equal(rules_parse_line(line, 0, 1, &again, err, sizeof(err)), 0);
		struct buf b2 = BUF_INIT;
		rule_condition_format(&again.instr[0], &b2);
		assert_string_equal(b2.data, b.data);
		buf_free(&b);
		buf_free(&b2);
		rules_entry_free(&e);
		rules_entry_free(&again);
	}
}

static int teardown_group(void **state)
{
	rule_regex_cache_clear();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_condition),
		cmocka_unit_test(test_spam_and_score),
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_envelope),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_body),
		cmocka_unit_test(test_and_not),
		cmocka_unit_test(test_long_condition),
		cmocka_unit_test(test_needs),
		cmocka_unit_test(test_no_message),
		cmocka_unit_test(test_catastrophic_regex),
		cmocka_unit_test(test_long_inputs),
		cmocka_unit_test(test_regex_cache),
		cmocka_unit_test(test_format),
	};
	return cmocka_run_group_tests(tests, NULL, teardown_group);
}
