/*
 * test_smtp_parse.c - the SMTP/LMTP parser: command verbs, MAIL/RCPT paths
 * and parameters, bounded line assembly, the DATA state machine (end of
 * data, dot-unstuffing, CRLF -> LF, smuggling sequences, every chunk
 * split), reply lines and the Received: header.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/buf.h"
#include "proto/smtp_addr.h"
#include "proto/smtp_data.h"
#include "proto/smtp_line.h"
#include "proto/smtp_parse.h"
#include "proto/smtp_received.h"
#include "proto/smtp_reply.h"

/* ------------------------------------------------------------ commands */

static enum smtp_cmd_status parse_cmd(const char *line, size_t len, struct smtp_cmd *cmd,
    char *store)
{
	memcpy(store, line, len);
	return smtp_parse_command(store, len, cmd);
}

#define CMD(s, cmd, store) parse_cmd((s), sizeof(s) - 1, (cmd), (store))

static void test_verbs(void **state)
{
	static const struct { const char *line; enum smtp_verb verb; const char *arg; } ok[] = {
		{ "HELO client.example", SMTP_VERB_HELO, "client.example" },
		{ "helo client.example", SMTP_VERB_HELO, "client.example" },
		{ "EhLo x", SMTP_VERB_EHLO, "x" },
		{ "LHLO x", SMTP_VERB_LHLO, "x" },
		{ "MAIL FROM:<a@b.c>", SMTP_VERB_MAIL, "FROM:<a@b.c>" },
		{ "mail from:<>", SMTP_VERB_MAIL, "from:<>" },
		{ "RCPT TO:<a@b.c>", SMTP_VERB_RCPT, "TO:<a@b.c>" },
		{ "data", SMTP_VERB_DATA, "" },
		{ "DATA", SMTP_VERB_DATA, "" },
		{ "RSET", SMTP_VERB_RSET, "" },
		{ "noop", SMTP_VERB_NOOP, "" },
		{ "NOOP  hello there  ", SMTP_VERB_NOOP, "hello there" },
		{ "QUIT", SMTP_VERB_QUIT, "" },
		{ "QUIT   ", SMTP_VERB_QUIT, "" },
		{ "QUIT\t", SMTP_VERB_QUIT, "" },
		{ "VRFY bob", SMTP_VERB_VRFY, "bob" },
		{ "help", SMTP_VERB_HELP, "" },
		{ "HELP mail", SMTP_VERB_HELP, "mail" },
		{ "MAIL", SMTP_VERB_MAIL, "" },
	};
	struct smtp_cmd cmd;
	char store[SMTP_LINE_MAX + 2];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		size_t len = strlen(ok[i].line);
		assert_int_equal(parse_cmd(ok[i].line, len, &cmd, store), SMTP_CMD_OK);
		assert_int_equal(cmd.verb, ok[i].verb);
		assert_string_equal(cmd.arg, ok[i].arg);
	}

	static const char *const unknown[] = {
		"", " ", "MAILX FROM:<>", "MAI", "EXPN list", "STARTTLS", "BDAT 10",
		" NOOP", "NOOP\tx", "QUIT\r", "\r", "HELO\x01", "TURN", "ETRN x",
		"\xff\xfe", "H\xc3\x89LO x",
	};
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		size_t len = strlen(unknown[i]);
		assert_int_equal(parse_cmd(unknown[i], len, &cmd, store), SMTP_CMD_UNKNOWN);
		assert_int_equal(cmd.verb, SMTP_VERB_UNKNOWN);
	}

	assert_int_equal(CMD("NO\0OP", &cmd, store), SMTP_CMD_NUL);
	assert_int_equal(CMD("\0", &cmd, store), SMTP_CMD_NUL);
	assert_int_equal(CMD("NOOP\0", &cmd, store), SMTP_CMD_NUL);
	assert_int_equal(CMD("MAIL FROM:<a\0@b.c>", &cmd, store), SMTP_CMD_NUL);
	assert_int_equal(CMD("RCPT TO:<a@b.c>\0", &cmd, store), SMTP_CMD_NUL);

	assert_string_equal(smtp_verb_name(SMTP_VERB_LHLO), "LHLO");
	assert_string_equal(smtp_verb_name(SMTP_VERB_COUNT), "?");
}

static void test_long_command_line(void **state)
{
	char *line = malloc(SMTP_LINE_MAX + 1);
	struct smtp_cmd cmd;

	memcpy(line, "NOOP ", 5);
	memset(line + 5, 'x', SMTP_LINE_MAX - 5);
	assert_int_equal(smtp_parse_command(line, SMTP_LINE_MAX, &cmd), SMTP_CMD_OK);
	assert_int_equal(cmd.verb, SMTP_VERB_NOOP);
	assert_int_equal(strlen(cmd.arg), SMTP_LINE_MAX - 5);
	free(line);
}

static void test_helo(void **state)
{
	char big[SMTP_HELO_MAX + 2];

	assert_true(smtp_helo_valid("client.example.test"));
	assert_true(smtp_helo_valid("[192.0.2.1]"));
	assert_true(smtp_helo_valid("[IPv6:2001:db8::1]"));
	assert_true(smtp_helo_valid("x"));
	assert_false(smtp_helo_valid(""));
	assert_false(smtp_helo_valid("two words"));
	assert_false(smtp_helo_valid("tab\there"));
	assert_false(smtp_helo_valid("cr\r"));
	assert_false(smtp_helo_valid("del\x7f"));
	assert_false(smtp_helo_valid("h\xc3\xa9llo"));
	memset(big, 'a', SMTP_HELO_MAX);
	big[SMTP_HELO_MAX] = '\0';
	assert_true(smtp_helo_valid(big));
	big[SMTP_HELO_MAX] = 'a';
	big[SMTP_HELO_MAX + 1] = '\0';
	assert_false(smtp_helo_valid(big));
}

/* ------------------------------------------------------------ paths */

struct path_case {
	const char *arg;
	enum smtp_path_status st;
	const char *addr;       /* expected canonical address when OK */
};

static void check_paths(const struct path_case *c, size_t n, int mail)
{
	for (size_t i = 0; i < n; i++) {
		struct smtp_path p;
		enum smtp_path_status st = mail ? smtp_parse_mail(c[i].arg, &p) :
		    smtp_parse_rcpt(c[i].arg, &p);
		if (st != c[i].st)
			fail_msg("%s %s: status %d, expected %d", mail ? "MAIL" : "RCPT",
			    c[i].arg, (int)st, (int)c[i].st);
		if (st == SMTP_PATH_OK)
			assert_string_equal(p.addr, c[i].addr);
		else
			assert_string_equal(p.addr, "");
	}
}

static void test_mail_paths(void **state)
{
	static const struct path_case c[] = {
		{ "FROM:<>", SMTP_PATH_OK, "" },
		{ "from:<>", SMTP_PATH_OK, "" },
		{ "From:<user@example.com>", SMTP_PATH_OK, "user@example.com" },
		{ "FROM: <user@example.com>", SMTP_PATH_OK, "user@example.com" },
		{ " FROM:<user@example.com>", SMTP_PATH_OK, "user@example.com" },
		{ "FROM:<User.Name+tag@Example.COM>", SMTP_PATH_OK, "User.Name+tag@Example.COM" },
		{ "FROM:<!#$%&'*+-/=?^_`{|}~@example.com>", SMTP_PATH_OK,
		  "!#$%&'*+-/=?^_`{|}~@example.com" },
		{ "FROM:<a@b>", SMTP_PATH_OK, "a@b" },
		{ "FROM:<a@1.2.3.4>", SMTP_PATH_OK, "a@1.2.3.4" },
		{ "FROM:<a@x-y.example>", SMTP_PATH_OK, "a@x-y.example" },
		{ "FROM:<user@[192.0.2.1]>", SMTP_PATH_OK, "user@[192.0.2.1]" },
		{ "FROM:<user@[IPv6:2001:db8::1]>", SMTP_PATH_OK, "user@[IPv6:2001:db8::1]" },
		/* quoted local parts */
		{ "FROM:<\"john doe\"@example.com>", SMTP_PATH_OK, "\"john doe\"@example.com" },
		{ "FROM:<\"john\"@example.com>", SMTP_PATH_OK, "john@example.com" },
		{ "FROM:<\"j.o.h.n\"@example.com>", SMTP_PATH_OK, "j.o.h.n@example.com" },
		{ "FROM:<\"a..b\"@example.com>", SMTP_PATH_OK, "\"a..b\"@example.com" },
		{ "FROM:<\".a\"@example.com>", SMTP_PATH_OK, "\".a\"@example.com" },
		{ "FROM:<\"a\\\"b\"@example.com>", SMTP_PATH_OK, "\"a\\\"b\"@example.com" },
		{ "FROM:<\"a\\\\b\"@example.com>", SMTP_PATH_OK, "\"a\\\\b\"@example.com" },
		{ "FROM:<\"\\j\\o\\e\"@example.com>", SMTP_PATH_OK, "joe@example.com" },
		{ "FROM:<\"a>b\"@example.com>", SMTP_PATH_OK, "\"a>b\"@example.com" },
		{ "FROM:<\"a@b\"@example.com>", SMTP_PATH_OK, "\"a@b\"@example.com" },
		{ "FROM:<\"a<b>\"@example.com>", SMTP_PATH_OK, "\"a<b>\"@example.com" },
		{ "FROM:<\"\"@example.com>", SMTP_PATH_OK, "\"\"@example.com" },
		{ "FROM:<\" \"@example.com>", SMTP_PATH_OK, "\" \"@example.com" },
		/* source routes are accepted and stripped */
		{ "FROM:<@relay.example:user@example.com>", SMTP_PATH_OK, "user@example.com" },
		{ "FROM:<@r1.example,@r2.example:user@example.com>", SMTP_PATH_OK, "user@example.com" },
		{ "FROM:<@[192.0.2.1],@r2:u@d>", SMTP_PATH_OK, "u@d" },
		/* command syntax */
		{ "FROM:user@example.com", SMTP_PATH_SYNTAX, NULL },
		{ "FROM:<user@example.com", SMTP_PATH_SYNTAX, NULL },
		{ "FROM:", SMTP_PATH_SYNTAX, NULL },
		{ "", SMTP_PATH_SYNTAX, NULL },
		{ "FROM", SMTP_PATH_SYNTAX, NULL },
		{ "FROM <a@b.c>", SMTP_PATH_SYNTAX, NULL },
		{ "TO:<a@b.c>", SMTP_PATH_SYNTAX, NULL },
		{ "FROMX:<a@b.c>", SMTP_PATH_SYNTAX, NULL },
		{ "FROM:<a@b.c>x", SMTP_PATH_SYNTAX, NULL },
		{ "FROM:<a@b.c>>", SMTP_PATH_SYNTAX, NULL },
		{ "FROM:<<a@b.c>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<\"unterminated@b.c>", SMTP_PATH_SYNTAX, NULL },
		/* address syntax */
		{ "FROM:<user>", SMTP_PATH_NO_DOMAIN, NULL },
		{ "FROM:<\"quoted\">", SMTP_PATH_NO_DOMAIN, NULL },
		{ "FROM:<user@>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<@r1.example:>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<@r1.example user@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<@r1.example,user@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<@:user@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<user@-example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<user@example-.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<user@example.com.>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<user@.example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<user@example..com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<user@exa_mple.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<user@exa mple.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<user@[]>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<user@[1.2.3.4>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<user@[1.2[3].4]>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<user@[1.2.3.4]x>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<us er@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<a..b@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<.a@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<a.@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<a@b@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<a(b)@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<a,b@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<a\x01@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<a\r@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<a\t@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<a\x7f@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<user@exam\x01ple.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<user@[1.2.3.4\x01]>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<\"a\x01\"@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<\"a\\\x01\"@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<\"a\x7f\"@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<\"a\r\"@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<\"a\"b@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<\xc3\xa9@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<\"\xc3\xa9\"@example.com>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "FROM:<user@\xc3\xa9.example>", SMTP_PATH_BAD_ADDRESS, NULL },
	};
	check_paths(c, sizeof(c) / sizeof(c[0]), 1);
}

static void test_rcpt_paths(void **state)
{
	static const struct path_case c[] = {
		{ "TO:<user@example.com>", SMTP_PATH_OK, "user@example.com" },
		{ "to:<User+ext@Example.COM>", SMTP_PATH_OK, "User+ext@Example.COM" },
		{ "To: <user@example.com>", SMTP_PATH_OK, "user@example.com" },
		{ "TO:<user@example.com>   ", SMTP_PATH_OK, "user@example.com" },
		{ "TO:<@r1,@r2:user@example.com>", SMTP_PATH_OK, "user@example.com" },
		{ "TO:<\"a b\"@example.com>", SMTP_PATH_OK, "\"a b\"@example.com" },
		{ "TO:<>", SMTP_PATH_BAD_ADDRESS, NULL },
		{ "TO:<postmaster>", SMTP_PATH_OK, "postmaster" },
		{ "TO:<PostMaster>", SMTP_PATH_OK, "postmaster" },
		{ "TO:<postmaster> FOO=1", SMTP_PATH_PARAM_UNKNOWN, NULL },
		{ "TO:<postmasterx>", SMTP_PATH_NO_DOMAIN, NULL },
		{ "TO:<user>", SMTP_PATH_NO_DOMAIN, NULL },
		{ "TO:<\"a b\">", SMTP_PATH_NO_DOMAIN, NULL },
		{ "TO:user@example.com", SMTP_PATH_SYNTAX, NULL },
		{ "FROM:<user@example.com>", SMTP_PATH_SYNTAX, NULL },
		{ "TO:<user@example.com> NOTIFY=NEVER", SMTP_PATH_PARAM_UNKNOWN, NULL },
		{ "TO:<user@example.com> SIZE=10", SMTP_PATH_PARAM_UNKNOWN, NULL },
		{ "TO:<user@example.com> =x", SMTP_PATH_PARAM_SYNTAX, NULL },
		{ "TO:<user@example.com> A=", SMTP_PATH_PARAM_SYNTAX, NULL },
		{ "TO:<user@\x01.com>", SMTP_PATH_BAD_ADDRESS, NULL },
	};
	check_paths(c, sizeof(c) / sizeof(c[0]), 0);

	struct smtp_path p;
	assert_int_equal(smtp_parse_rcpt("TO:<a@b.c> ORCPT=rfc822;a@b.c", &p),
	    SMTP_PATH_PARAM_UNKNOWN);
	assert_string_equal(p.param, "ORCPT");
}

static void test_mail_params(void **state)
{
	struct smtp_path p;

	assert_int_equal(smtp_parse_mail("FROM:<a@b.c>", &p), SMTP_PATH_OK);
	assert_false(p.params.has_size);
	assert_int_equal(p.params.body, SMTP_BODY_NONE);

	assert_int_equal(smtp_parse_mail("FROM:<a@b.c> SIZE=12345", &p), SMTP_PATH_OK);
	assert_true(p.params.has_size);
	assert_int_equal(p.params.size, 12345);

	assert_int_equal(smtp_parse_mail("FROM:<> size=0 body=8bitmime", &p), SMTP_PATH_OK);
	assert_string_equal(p.addr, "");
	assert_true(p.params.has_size);
	assert_int_equal(p.params.size, 0);
	assert_int_equal(p.params.body, SMTP_BODY_8BITMIME);

	assert_int_equal(smtp_parse_mail("FROM:<a@b.c>   BODY=7BIT   SIZE=1  ", &p), SMTP_PATH_OK);
	assert_int_equal(p.params.body, SMTP_BODY_7BIT);
	assert_int_equal(p.params.size, 1);

	assert_int_equal(smtp_parse_mail("FROM:<a@b.c> SIZE=18446744073709551615", &p), SMTP_PATH_OK);
	assert_int_equal(p.params.size, UINT64_MAX);
	assert_int_equal(smtp_parse_mail("FROM:<a@b.c> SIZE=99999999999999999999", &p), SMTP_PATH_OK);
	assert_int_equal(p.params.size, UINT64_MAX);

	static const struct { const char *arg; enum smtp_path_status st; const char *param; } bad[] = {
		{ "FROM:<a@b.c> SIZE=123456789012345678901", SMTP_PATH_PARAM_VALUE, "SIZE" },
		{ "FROM:<a@b.c> SIZE=abc", SMTP_PATH_PARAM_VALUE, "SIZE" },
		{ "FROM:<a@b.c> SIZE=-1", SMTP_PATH_PARAM_VALUE, "SIZE" },
		{ "FROM:<a@b.c> SIZE=1k", SMTP_PATH_PARAM_VALUE, "SIZE" },
		{ "FROM:<a@b.c> SIZE", SMTP_PATH_PARAM_VALUE, "SIZE" },
		{ "FROM:<a@b.c> SIZE=1 SIZE=2", SMTP_PATH_PARAM_VALUE, "SIZE" },
		{ "FROM:<a@b.c> BODY=BINARYMIME", SMTP_PATH_PARAM_VALUE, "BODY" },
		{ "FROM:<a@b.c> BODY=", SMTP_PATH_PARAM_SYNTAX, "" },
		{ "FROM:<a@b.c> BODY", SMTP_PATH_PARAM_VALUE, "BODY" },
		{ "FROM:<a@b.c> BODY=7BIT BODY=7BIT", SMTP_PATH_PARAM_VALUE, "BODY" },
		{ "FROM:<a@b.c> FOO=bar", SMTP_PATH_PARAM_UNKNOWN, "FOO" },
		{ "FROM:<a@b.c> SIZE=1 AUTH=<>", SMTP_PATH_PARAM_UNKNOWN, "AUTH" },
		{ "FROM:<a@b.c> SMTPUTF8", SMTP_PATH_PARAM_UNKNOWN, "SMTPUTF8" },
		{ "FROM:<a@b.c> RET=HDRS ENVID=x", SMTP_PATH_PARAM_UNKNOWN, "RET" },
		{ "FROM:<a@b.c> -X", SMTP_PATH_PARAM_SYNTAX, "" },
		{ "FROM:<a@b.c> X=a=b", SMTP_PATH_PARAM_SYNTAX, "" },
		{ "FROM:<a@b.c> X=\x01", SMTP_PATH_PARAM_SYNTAX, "" },
		{ "FROM:<a@b.c> X_Y=1", SMTP_PATH_PARAM_SYNTAX, "" },
		{ "FROM:<a@b.c> X=\xc3\xa9", SMTP_PATH_PARAM_SYNTAX, "" },
		{ "FROM:<a@b.c>SIZE=1", SMTP_PATH_SYNTAX, "" },
		{ "FROM:<a@b.c> SIZE=1\t", SMTP_PATH_PARAM_SYNTAX, "" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enum smtp_path_status st = smtp_parse_mail(bad[i].arg, &p);
		if (st != bad[i].st)
			fail_msg("%s: status %d, expected %d", bad[i].arg, (int)st, (int)bad[i].st);
		if (st == SMTP_PATH_PARAM_VALUE || st == SMTP_PATH_PARAM_UNKNOWN)
			assert_string_equal(p.param, bad[i].param);
	}

	/* a very long keyword is reported cut, never overflowing */
	char arg[600];
	snprintf(arg, sizeof(arg), "FROM:<a@b.c> %0500d=1", 0);
	memset(arg + 13, 'K', 500);
	assert_int_equal(smtp_parse_mail(arg, &p), SMTP_PATH_PARAM_UNKNOWN);
	assert_int_equal(strlen(p.param), sizeof(p.param) - 1);
}

/* An address whose text between the brackets is exactly n bytes. */
static void make_path(char *out, const char *kw, size_t n, const char *route)
{
	const char *domain = "@example.com";
	size_t fixed = strlen(route) + strlen(domain);
	size_t local = n - fixed;
	char *p = out + sprintf(out, "%s<%s", kw, route);
	memset(p, 'a', local);
	p += local;
	sprintf(p, "%s>", domain);
}

static void test_path_length(void **state)
{
	char arg[1200];
	struct smtp_path p;

	make_path(arg, "FROM:", SMTP_PATH_MAX, "");
	assert_int_equal(smtp_parse_mail(arg, &p), SMTP_PATH_OK);
	assert_int_equal(strlen(p.addr), SMTP_PATH_MAX);
	make_path(arg, "FROM:", SMTP_PATH_MAX + 1, "");
	assert_int_equal(smtp_parse_mail(arg, &p), SMTP_PATH_TOO_LONG);
	make_path(arg, "TO:", SMTP_PATH_MAX, "");
	assert_int_equal(smtp_parse_rcpt(arg, &p), SMTP_PATH_OK);
	make_path(arg, "TO:", SMTP_PATH_MAX + 1, "");
	assert_int_equal(smtp_parse_rcpt(arg, &p), SMTP_PATH_TOO_LONG);
	/* the source route counts */
	make_path(arg, "TO:", SMTP_PATH_MAX, "@relay.example:");
	assert_int_equal(smtp_parse_rcpt(arg, &p), SMTP_PATH_OK);
	make_path(arg, "TO:", SMTP_PATH_MAX + 1, "@relay.example:");
	assert_int_equal(smtp_parse_rcpt(arg, &p), SMTP_PATH_TOO_LONG);
	/* unterminated and long */
	make_path(arg, "TO:", 1000, "");
	arg[strlen(arg) - 1] = '\0';
	assert_int_equal(smtp_parse_rcpt(arg, &p), SMTP_PATH_TOO_LONG);

	/* a quoted local part at the limit, full of escapes */
	char *q = arg + sprintf(arg, "TO:<\"");
	size_t room = SMTP_PATH_MAX - strlen("\"\"@example.com");
	for (size_t i = 0; i + 2 <= room; i += 2)
		q += sprintf(q, "\\\"");
	sprintf(q, "\"@example.com>");
	assert_int_equal(smtp_parse_rcpt(arg, &p), SMTP_PATH_OK);
	assert_true(strlen(p.addr) <= SMTP_PATH_MAX);

	/* a 63-character label is fine, 64 is not */
	char label[70];
	memset(label, 'd', 64);
	label[63] = '\0';
	snprintf(arg, sizeof(arg), "TO:<u@%s.example>", label);
	assert_int_equal(smtp_parse_rcpt(arg, &p), SMTP_PATH_OK);
	label[63] = 'd';
	label[64] = '\0';
	snprintf(arg, sizeof(arg), "TO:<u@%s.example>", label);
	assert_int_equal(smtp_parse_rcpt(arg, &p), SMTP_PATH_BAD_ADDRESS);
}

static void test_dot_string(void **state)
{
	assert_true(smtp_addr_is_dot_string("a", 1));
	assert_true(smtp_addr_is_dot_string("a.b.c", 5));
	assert_false(smtp_addr_is_dot_string("", 0));
	assert_false(smtp_addr_is_dot_string(".a", 2));
	assert_false(smtp_addr_is_dot_string("a.", 2));
	assert_false(smtp_addr_is_dot_string("a..b", 4));
	assert_false(smtp_addr_is_dot_string("a b", 3));
	assert_false(smtp_addr_is_dot_string("a\0b", 3));
}

/* ------------------------------------------------------------ lines */

static enum smtp_line_status feed_str(struct smtp_line *l, const char *s, size_t n,
    size_t *used)
{
	return smtp_line_feed(l, s, n, used);
}

static void test_line_basic(void **state)
{
	struct smtp_line l;
	size_t used;
	const char in[] = "HELO x\r\nNOOP\nQUIT\r\n\r\nNO\0OP\r\n";

	smtp_line_init(&l);
	const char *p = in;
	size_t left = sizeof(in) - 1;

	assert_int_equal(feed_str(&l, p, left, &used), SMTP_LINE_READY);
	assert_int_equal(used, 8);
	assert_int_equal(l.len, 6);
	assert_memory_equal(l.buf, "HELO x", 6);
	p += used, left -= used;
	assert_int_equal(feed_str(&l, p, left, &used), SMTP_LINE_READY);
	assert_int_equal(used, 5);
	assert_int_equal(l.len, 4);
	assert_memory_equal(l.buf, "NOOP", 4);
	p += used, left -= used;
	assert_int_equal(feed_str(&l, p, left, &used), SMTP_LINE_READY);
	assert_int_equal(l.len, 4);
	assert_memory_equal(l.buf, "QUIT", 4);
	p += used, left -= used;
	assert_int_equal(feed_str(&l, p, left, &used), SMTP_LINE_READY);
	assert_int_equal(l.len, 0);
	p += used, left -= used;
	assert_int_equal(feed_str(&l, p, left, &used), SMTP_LINE_READY);
	assert_int_equal(l.len, 5);
	assert_memory_equal(l.buf, "NO\0OP", 5);
	p += used, left -= used;
	assert_int_equal(left, 0);
	assert_int_equal(feed_str(&l, p, 0, &used), SMTP_LINE_MORE);
	assert_int_equal(used, 0);
}

static void test_line_split(void **state)
{
	const char in[] = "MAIL FROM:<a@b.c>\r\n";
	const size_t n = sizeof(in) - 1;

	for (size_t cut = 0; cut <= n; cut++) {
		struct smtp_line l;
		size_t used;
		smtp_line_init(&l);
		if (cut < n) {
			assert_int_equal(smtp_line_feed(&l, in, cut, &used), SMTP_LINE_MORE);
			assert_int_equal(used, cut);
			assert_int_equal(smtp_line_feed(&l, in + cut, n - cut, &used), SMTP_LINE_READY);
			assert_int_equal(used, n - cut);
		} else {
			assert_int_equal(smtp_line_feed(&l, in, n, &used), SMTP_LINE_READY);
		}
		assert_int_equal(l.len, n - 2);
		assert_memory_equal(l.buf, in, n - 2);
	}
	/* byte by byte */
	struct smtp_line l;
	size_t used;
	smtp_line_init(&l);
	for (size_t i = 0; i < n - 1; i++)
		assert_int_equal(smtp_line_feed(&l, in + i, 1, &used), SMTP_LINE_MORE);
	assert_int_equal(smtp_line_feed(&l, in + n - 1, 1, &used), SMTP_LINE_READY);
	assert_int_equal(l.len, n - 2);
	/* a bare CR inside the line stays; only the CR before LF goes */
	smtp_line_init(&l);
	assert_int_equal(smtp_line_feed(&l, "A\rB\r\r\n", 6, &used), SMTP_LINE_READY);
	assert_int_equal(l.len, 4);
	assert_memory_equal(l.buf, "A\rB\r", 4);
}

/* Feed a line of `len` 'A's followed by `end`, in chunks of `chunk`.
 * Returns the statuses seen other than MORE, as a string of R/L. */
static void feed_long(size_t len, const char *end, size_t chunk, char *seen, size_t *line_len)
{
	size_t total = len + strlen(end);
	char *in = malloc(total + 1);
	struct smtp_line l;
	size_t pos = 0, used;
	int k = 0;

	memset(in, 'A', len);
	memcpy(in + len, end, strlen(end));
	smtp_line_init(&l);
	*line_len = 0;
	while (pos < total) {
		size_t n = total - pos < chunk ? total - pos : chunk;
		enum smtp_line_status st = smtp_line_feed(&l, in + pos, n, &used);
		assert_true(used <= n);
		assert_true(used > 0);
		assert_true(l.len <= sizeof(l.buf) - 1);
		pos += used;
		if (st == SMTP_LINE_READY) {
			seen[k++] = 'R';
			*line_len = l.len;
		} else if (st == SMTP_LINE_TOO_LONG) {
			seen[k++] = 'L';
		}
	}
	seen[k] = '\0';
	free(in);
}

static void test_line_limits(void **state)
{
	static const size_t chunks[] = { 1, 7, 100, 4096, 4097, 4098, 65536 };
	char seen[16];
	size_t len;

	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		size_t ch = chunks[c];
		feed_long(SMTP_LINE_MAX, "\r\n", ch, seen, &len);
		assert_string_equal(seen, "R");
		assert_int_equal(len, SMTP_LINE_MAX);
		feed_long(SMTP_LINE_MAX, "\n", ch, seen, &len);
		assert_string_equal(seen, "R");
		assert_int_equal(len, SMTP_LINE_MAX);
		feed_long(SMTP_LINE_MAX + 1, "\r\n", ch, seen, &len);
		assert_string_equal(seen, "L");
		feed_long(SMTP_LINE_MAX + 1, "\n", ch, seen, &len);
		assert_string_equal(seen, "L");
		feed_long(SMTP_LINE_MAX - 1, "\r\r\n", ch, seen, &len);
		assert_string_equal(seen, "R");
		assert_int_equal(len, SMTP_LINE_MAX);
		feed_long(SMTP_LINE_MAX, "\r\r\n", ch, seen, &len);
		assert_string_equal(seen, "L");
		/* a long line is reported once, then the next line is fine */
		feed_long(100000, "\r\nNOOP\r\n", ch, seen, &len);
		assert_string_equal(seen, "LR");
		assert_int_equal(len, 4);
		/* without any line end: one report, nothing more, all consumed */
		feed_long(100000, "", ch, seen, &len);
		assert_string_equal(seen, "L");
	}
}

static void test_line_after_long(void **state)
{
	struct smtp_line l;
	size_t used;
	char *in = malloc(10000);

	memset(in, 'x', 10000);
	smtp_line_init(&l);
	assert_int_equal(smtp_line_feed(&l, in, 10000, &used), SMTP_LINE_TOO_LONG);
	assert_int_equal(used, 10000);
	assert_int_equal(smtp_line_feed(&l, in, 10000, &used), SMTP_LINE_MORE);
	assert_int_equal(used, 10000);
	/* the LF ends the discarded line; what follows is a new line */
	assert_int_equal(smtp_line_feed(&l, "yy\nQUIT\r\n", 9, &used), SMTP_LINE_MORE);
	assert_int_equal(used, 3);
	assert_int_equal(smtp_line_feed(&l, "QUIT\r\n", 6, &used), SMTP_LINE_READY);
	assert_memory_equal(l.buf, "QUIT", 4);
	assert_int_equal(l.len, 4);
	/* a complete long line inside one chunk: reported, the rest kept */
	memcpy(in + 5000, "\r\nRSET\r\n", 8);
	smtp_line_init(&l);
	assert_int_equal(smtp_line_feed(&l, in, 5008, &used), SMTP_LINE_TOO_LONG);
	assert_int_equal(used, 5002);
	assert_int_equal(smtp_line_feed(&l, in + used, 6, &used), SMTP_LINE_READY);
	assert_memory_equal(l.buf, "RSET", 4);
	free(in);
}

/* ------------------------------------------------------------ DATA */

struct data_result {
	char out[4096];
	size_t outlen;
	size_t consumed;
	int done;
};

/* Feed in[0..n) to a fresh state machine cut at the given positions. */
static void data_run(const char *in, size_t n, const size_t *cuts, size_t ncuts,
    struct data_result *r)
{
	struct smtp_data d;
	size_t pos = 0;

	smtp_data_init(&d);
	memset(r, 0, sizeof(*r));
	for (size_t c = 0; c <= ncuts && !r->done; c++) {
		size_t next = c < ncuts ? cuts[c] : n;
		if (next < pos)
			next = pos;
		char out[SMTP_DATA_OUT_MAX(4096)];
		size_t outlen;
		int done;
		size_t used = smtp_data_feed(&d, in + pos, next - pos, out, &outlen, &done);
		assert_true(used <= next - pos);
		assert_true(outlen <= SMTP_DATA_OUT_MAX(next - pos));
		if (!done)
			assert_int_equal(used, next - pos);
		assert_true(r->outlen + outlen <= sizeof(r->out));
		memcpy(r->out + r->outlen, out, outlen);
		r->outlen += outlen;
		pos += used;
		r->done = done;
	}
	r->consumed = pos;
}

/* The same rules written the simple way, on a whole buffer: the data ends
 * at the first ".\r\n" that is at the start or after "\r\n"; lines are
 * split at "\r\n", a leading dot is removed, lines are joined with "\n".
 * Returns 0 when there is no end. */
static int data_oracle(const char *in, size_t n, struct data_result *r)
{
	size_t end = 0;
	int found = 0;

	memset(r, 0, sizeof(*r));
	for (size_t k = 0; k + 3 <= n; k++) {
		if (memcmp(in + k, ".\r\n", 3) == 0 &&
		    (k == 0 || (k >= 2 && in[k - 2] == '\r' && in[k - 1] == '\n'))) {
			end = k;
			found = 1;
			break;
		}
	}
	if (!found)
		return 0;
	size_t pos = 0;
	while (pos < end) {
		const char *crlf = NULL;
		for (size_t k = pos; k + 1 < end; k++)
			if (in[k] == '\r' && in[k + 1] == '\n') {
				crlf = in + k;
				break;
			}
		assert_non_null(crlf);          /* the body ends with CRLF */
		size_t line_end = (size_t)(crlf - in);
		size_t start = pos;
		if (start < line_end && in[start] == '.')
			start++;
		memcpy(r->out + r->outlen, in + start, line_end - start);
		r->outlen += line_end - start;
		r->out[r->outlen++] = '\n';
		pos = line_end + 2;
	}
	r->consumed = end + 3;
	r->done = 1;
	return 1;
}

struct data_case {
	const char *in;
	size_t inlen;
	const char *out;
	size_t outlen;
	int done;
	size_t consumed;        /* when done */
};

#define DC(i, o, d, c) { i, sizeof(i) - 1, o, sizeof(o) - 1, d, c }

static const struct data_case data_cases[] = {
	/* plain ends */
	DC(".\r\n", "", 1, 3),
	DC("\r\n.\r\n", "\n", 1, 5),
	DC("a\r\n.\r\n", "a\n", 1, 6),
	DC("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", "Subject: x\n\nbody\n", 1, 23),
	DC("a\r\n.\r\nMAIL FROM:<>\r\n", "a\n", 1, 6),
	DC("a\r\n.\r\n.\r\n", "a\n", 1, 6),
	/* dot stuffing */
	DC("..\r\n.\r\n", ".\n", 1, 7),
	DC("...\r\n.\r\n", "..\n", 1, 8),
	DC("a\r\n..\r\n.\r\n", "a\n.\n", 1, 10),
	DC("a\r\n.x\r\n.\r\n", "a\nx\n", 1, 10),
	DC("a\r\n..x\r\n.\r\n", "a\n.x\n", 1, 11),
	DC("a.\r\n.\r\n", "a.\n", 1, 7),
	DC("a\r\nb.c\r\n.\r\n", "a\nb.c\n", 1, 11),
	DC(". \r\n.\r\n", " \n", 1, 7),
	/* smuggling attempts: none of these ends the data */
	DC("a\n.\nb", "a\n.\nb", 0, 0),
	DC("a\n.\r\nb", "a\n.\nb", 0, 0),
	DC("a\r\n.\nb", "a\n\nb", 0, 0),
	DC("a\r.\r\nb", "a\r.\nb", 0, 0),
	DC("a\r\n.\rb", "a\n\rb", 0, 0),
	DC("a\r\n.\r\rb", "a\n\r\rb", 0, 0),
	DC("\n.\n", "\n.\n", 0, 0),
	DC("\n.\r\n", "\n.\n", 0, 0),
	DC(".\n", "\n", 0, 0),
	DC("a\n.\nb\r\n.\r\n", "a\n.\nb\n", 1, 10),
	DC("a\r\n.\nb\r\n.\r\n", "a\n\nb\n", 1, 11),
	DC("a\n.\r\nb\r\n.\r\n", "a\n.\nb\n", 1, 11),
	DC("a\r\r\n.\r\n", "a\r\n", 1, 7),
	DC("a\r\n\r.\r\n.\r\n", "a\n\r.\n", 1, 10),
	DC("a\r\n.\r\r\n.\r\n", "a\n\r\n", 1, 10),
	DC("a\r\n \r\n.\r\n", "a\n \n", 1, 9),
	/* bare CR and LF are data */
	DC("a\rb\nc\r\n.\r\n", "a\rb\nc\n", 1, 10),
	DC("\r\r\r\n.\r\n", "\r\r\n", 1, 7),
	DC("\n\n\r\n.\r\n", "\n\n\n", 1, 7),
	/* NUL is data */
	DC("a\0b\r\n.\r\n", "a\0b\n", 1, 8),
	DC(".\0\r\n.\r\n", "\0\n", 1, 7),
	DC("\0\r\n.\r\n", "\0\n", 1, 6),
	/* unfinished */
	DC("a\r\n.\r", "a\n", 0, 0),
	DC("a\r\n.", "a\n", 0, 0),
	DC("a\r\n", "a\n", 0, 0),
	DC("a\r", "a", 0, 0),
	DC("", "", 0, 0),
};

static void check_data_case(const struct data_case *c, const size_t *cuts, size_t ncuts)
{
	struct data_result r;
	data_run(c->in, c->inlen, cuts, ncuts, &r);
	if (r.done != c->done || r.outlen != c->outlen ||
	    memcmp(r.out, c->out, c->outlen) != 0 ||
	    (c->done && r.consumed != c->consumed)) {
		char cutdesc[64] = "";
		for (size_t i = 0; i < ncuts && i < 4; i++)
			snprintf(cutdesc + strlen(cutdesc), sizeof(cutdesc) - strlen(cutdesc),
			    " %zu", cuts[i]);
		fail_msg("case %zu bytes (cuts%s): done %d/%d outlen %zu/%zu consumed %zu/%zu",
		    c->inlen, cutdesc, r.done, c->done, r.outlen, c->outlen,
		    r.consumed, c->consumed);
	}
	if (!c->done)
		assert_int_equal(r.consumed, c->inlen);
}

static void test_data_cases(void **state)
{
	for (size_t i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
		const struct data_case *c = &data_cases[i];
		struct data_result want;
		check_data_case(c, NULL, 0);
		/* the table and the oracle agree */
		assert_int_equal(data_oracle(c->in, c->inlen, &want), c->done);
		if (c->done) {
			assert_int_equal(want.consumed, c->consumed);
			assert_int_equal(want.outlen, c->outlen);
			assert_memory_equal(want.out, c->out, c->outlen);
		}
	}
}

/* Every way to cut each case into two and three chunks, and byte by byte. */
static void test_data_splits(void **state)
{
	for (size_t i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
		const struct data_case *c = &data_cases[i];
		for (size_t a = 0; a <= c->inlen; a++) {
			size_t cut1[1] = { a };
			check_data_case(c, cut1, 1);
			for (size_t b = a; b <= c->inlen; b++) {
				size_t cut2[2] = { a, b };
				check_data_case(c, cut2, 2);
			}
		}
		size_t bytes[64];
		assert_true(c->inlen <= 64);
		for (size_t k = 0; k < c->inlen; k++)
			bytes[k] = k + 1;
		check_data_case(c, bytes, c->inlen);
	}
}

/* The end sequence split across chunks at every position, inside a longer
 * message with stuffed lines, and what follows it left alone. */
static void test_data_end_split_everywhere(void **state)
{
	const char msg[] = "From: a\r\nSubject: b\r\n\r\n..dot\r\nline\r\n.\r\nQUIT\r\n";
	const char want[] = "From: a\nSubject: b\n\n.dot\nline\n";
	const size_t n = sizeof(msg) - 1;
	const size_t end = sizeof(msg) - 1 - strlen("QUIT\r\n");

	for (size_t a = 0; a <= n; a++) {
		for (size_t b = a; b <= n; b++) {
			size_t cuts[2] = { a, b };
			struct data_result r;
			data_run(msg, n, cuts, 2, &r);
			assert_true(r.done);
			assert_int_equal(r.consumed, end);
			assert_int_equal(r.outlen, sizeof(want) - 1);
			assert_memory_equal(r.out, want, r.outlen);
		}
	}
}

/* Random data over the interesting alphabet, with random chunking,
 * compared against the oracle. */
static void test_data_random(void **state)
{
	static const char alphabet[] = { '\r', '\n', '.', 'a', '\0', '\r', '\n', '.' };
	unsigned seed = 12345;

	for (int iter = 0; iter < 20000; iter++) {
		char in[200];
		size_t n = 0, len;
		seed = seed * 1103515245 + 12345;
		len = (seed >> 16) % 40;
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245 + 12345;
			in[n++] = alphabet[(seed >> 16) % sizeof(alphabet)];
		}
		memcpy(in + n, "\r\n.\r\nZZ", 7);
		n += 7;

		struct data_result want, got;
		assert_true(data_oracle(in, n, &want));

		size_t cuts[8];
		size_t ncuts = (seed >> 8) % 8;
		for (size_t c = 0; c < ncuts; c++) {
			seed = seed * 1103515245 + 12345;
			cuts[c] = (seed >> 16) % (n + 1);
		}
		/* sorted cuts */
		for (size_t x = 0; x < ncuts; x++)
			for (size_t y = x + 1; y < ncuts; y++)
				if (cuts[y] < cuts[x]) {
					size_t t = cuts[x];
					cuts[x] = cuts[y];
					cuts[y] = t;
				}
		data_run(in, n, cuts, ncuts, &got);
		assert_true(got.done);
		assert_int_equal(got.consumed, want.consumed);
		assert_int_equal(got.outlen, want.outlen);
		assert_memory_equal(got.out, want.out, want.outlen);
	}
}

/* After the end, further feeding consumes nothing. */
static void test_data_after_end(void **state)
{
	struct smtp_data d;
	char out[16];
	size_t outlen, used;
	int done;

	smtp_data_init(&d);
	used = smtp_data_feed(&d, ".\r\nNOOP\r\n", 9, out, &outlen, &done);
	assert_int_equal(used, 3);
	assert_true(done);
	assert_int_equal(outlen, 0);
	used = smtp_data_feed(&d, "NOOP\r\n", 6, out, &outlen, &done);
	assert_int_equal(used, 0);
	assert_true(done);
	assert_int_equal(outlen, 0);
}

/* A large message streamed in odd-sized chunks keeps every byte. */
static void test_data_stream_large(void **state)
{
	const size_t lines = 5000;
	struct buf in = BUF_INIT, want = BUF_INIT, got = BUF_INIT;

	for (size_t i = 0; i < lines; i++) {
		if (i % 7 == 0) {
			buf_printf(&in, "..line %zu\r\n", i);
			buf_printf(&want, ".line %zu\n", i);
		} else {
			buf_printf(&in, "line %zu \x01\xff\r\n", i);
			buf_printf(&want, "line %zu \x01\xff\n", i);
		}
	}
	buf_puts(&in, ".\r\n");

	struct smtp_data d;
	size_t pos = 0, chunk = 1;
	int done = 0;
	smtp_data_init(&d);
	while (!done) {
		char out[SMTP_DATA_OUT_MAX(1000)];
		size_t outlen, n = in.len - pos < chunk ? in.len - pos : chunk;
		assert_true(n > 0);
		size_t used = smtp_data_feed(&d, in.data + pos, n, out, &outlen, &done);
		buf_append(&got, out, outlen);
		pos += used;
		chunk = chunk % 997 + 13;
	}
	assert_int_equal(pos, in.len);
	assert_int_equal(got.len, want.len);
	assert_memory_equal(got.data, want.data, want.len);
	buf_free(&in);
	buf_free(&want);
	buf_free(&got);
}

/* ------------------------------------------------------------ replies */

static void test_reply_line(void **state)
{
	char out[SMTP_REPLY_MAX];
	size_t n;

	n = smtp_reply_line(out, 250, 0, "2.1.0", "Ok");
	assert_string_equal(out, "250 2.1.0 Ok\r\n");
	assert_int_equal(n, strlen(out));
	smtp_reply_line(out, 250, 1, NULL, "PIPELINING");
	assert_string_equal(out, "250-PIPELINING\r\n");
	smtp_reply_line(out, 220, 0, NULL, "mx.example.test ESMTP mailprocd");
	assert_string_equal(out, "220 mx.example.test ESMTP mailprocd\r\n");
	smtp_reply_line(out, 550, 0, "5.1.1", "<a\r\nb\x01\xff>: User unknown");
	assert_string_equal(out, "550 5.1.1 <a?" "?b?" "?>: User unknown\r\n");
	smtp_reply_line(out, 250, 0, "2.0.0", "");
	assert_string_equal(out, "250 2.0.0\r\n");
	smtp_reply_line(out, 452, 0, "4.5.3", "Too many recipients");
	assert_string_equal(out, "452 4.5.3 Too many recipients\r\n");

	char big[2000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	n = smtp_reply_line(out, 500, 0, "5.5.2", big);
	assert_int_equal(n, SMTP_REPLY_MAX - 1);
	assert_int_equal(strlen(out), n);
	assert_memory_equal(out + n - 2, "\r\n", 2);
}

/* ------------------------------------------------------------ Received */

static void test_received(void **state)
{
	struct buf b = BUF_INIT;
	char date[40];

	setenv("TZ", "UTC0", 1);
	tzset();
	rfc5322_date(date, 0);
	assert_string_equal(date, "Thu, 1 Jan 1970 00:00:00 +0000");
	rfc5322_date(date, 1700000000);
	assert_string_equal(date, "Tue, 14 Nov 2023 22:13:20 +0000");
	setenv("TZ", "XST-5:30", 1);
	tzset();
	rfc5322_date(date, 1700000000);
	assert_string_equal(date, "Wed, 15 Nov 2023 03:43:20 +0530");
	setenv("TZ", "YST8", 1);
	tzset();
	rfc5322_date(date, 1700000000);
	assert_string_equal(date, "Tue, 14 Nov 2023 14:13:20 -0800");
	setenv("TZ", "UTC0", 1);
	tzset();

	struct smtp_received r = {
		.helo = "client.example", .client = "[192.0.2.1]",
		.hostname = "mx.example.test", .protocol = "ESMTP",
		.qid = "ABC123", .rcpt = "bob@example.test", .when = 1700000000,
	};
	smtp_received_format(&b, &r);
	assert_string_equal(b.data,
	    "Received: from client.example ([192.0.2.1])\n"
	    "\tby mx.example.test (mailprocd) with ESMTP id ABC123\n"
	    "\tfor <bob@example.test>; Tue, 14 Nov 2023 22:13:20 +0000\n");
	buf_reset(&b);
	r.rcpt = NULL;
	r.protocol = "LMTP";
	r.client = "unix";
	smtp_received_format(&b, &r);
	assert_string_equal(b.data,
	    "Received: from client.example (unix)\n"
	    "\tby mx.example.test (mailprocd) with LMTP id ABC123;\n"
	    "\tTue, 14 Nov 2023 22:13:20 +0000\n");
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verbs),
		cmocka_unit_test(test_long_command_line),
		cmocka_unit_test(test_helo),
		cmocka_unit_test(test_mail_paths),
		cmocka_unit_test(test_rcpt_paths),
		cmocka_unit_test(test_mail_params),
		cmocka_unit_test(test_path_length),
		cmocka_unit_test(test_dot_string),
		cmocka_unit_test(test_line_basic),
		cmocka_unit_test(test_line_split),
		cmocka_unit_test(test_line_limits),
		cmocka_unit_test(test_line_after_long),
		cmocka_unit_test(test_data_cases),
		cmocka_unit_test(test_data_splits),
		cmocka_unit_test(test_data_end_split_everywhere),
		cmocka_unit_test(test_data_random),
		cmocka_unit_test(test_data_after_end),
		cmocka_unit_test(test_data_stream_large),
		cmocka_unit_test(test_reply_line),
		cmocka_unit_test(test_received),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
