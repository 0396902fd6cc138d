/*
 * test_rules_entry.c - parsing rules lines (conditions and every action),
 * the compile errors with their messages, and the compiled entry codec
 * (round trip; truncated, flipped and forged blobs fail cleanly).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/rules_entry.h"
#include "rules/cond.h"
#include "rules/eval.h"
#include "rules/regex.h"

static void parse_ok(const char *line, enum rule_action action, const char *arg)
{
	struct rule_instruction in;
	char err[256] = "";
	int r = rules_parse_instruction(line, &in, err, sizeof(err));
	if (r != 0)
		fail_msg("\"%s\": %s", line, err);
	assert_int_equal(in.action, action);
	if (arg == NULL)
		assert_null(in.arg);
	else
		assert_string_equal(in.arg, arg);
	assert_null(in.cond);
	assert_int_equal(in.ncond, 0);
	rule_instruction_free(&in);
}

static void parse_err_flags(const char *line, int flags, const char *msg)
{
	struct rule_instruction in;
	char err[512] = "";
	int r = rules_parse_instruction_flags(line, flags, &in, err, sizeof(err));
	if (r == 0)
		fail_msg("\"%s\" parsed, expected: %s", line, msg);
	if (strstr(err, msg) == NULL)
		fail_msg("\"%s\": got \"%s\", expected \"%s\"", line, err, msg);
	assert_null(in.arg);
}

static void parse_err(const char *line, const char *msg)
{
	parse_err_flags(line, 0, msg);
}

/* A whole line into a fresh entry; fails the test on error. */
static void line_ok(const char *line, struct rules_entry *e)
{
	char err[512] = "";
	memset(e, 0, sizeof(*e));
	e->spam = -1;
	if (rules_parse_line(line, 0, 1, e, err, sizeof(err)) != 0)
		fail_msg("\"%s\": %s", line, err);
}

/* A line must fail with msg in the error, leaving the entry empty. */
static void line_err(const char *line, const char *msg)
{
	struct rules_entry e = { .spam = -1 };
	char err[512] = "";
	if (rules_parse_line(line, 0, 1, &e, err, sizeof(err)) == 0)
		fail_msg("\"%s\" parsed, expected: %s", line, msg);
	if (strstr(err, msg) == NULL)
		fail_msg("\"%s\": got \"%s\", expected \"%s\"", line, err, msg);
	assert_int_equal(e.ninstr, 0);
	assert_null(e.instr);
}

/* The condition of a one-instruction line, printed back. */
static void cond_prints(const char *line, const char *want)
{
	struct rules_entry e;
	struct buf b = BUF_INIT;
	line_ok(line, &e);
	assert_int_equal(e.ninstr, 1);
	rule_condition_format(&e.instr[0], &b);
	if (strcmp(b.data ? b.data : "", want) != 0)
		fail_msg("\"%s\": printed \"%s\", expected \"%s\"", line, b.data, want);
	buf_free(&b);
	rules_entry_free(&e);
}

static void test_parse_actions(void **state)
{
	parse_ok("maildir ~/Maildir/", ACT_MAILDIR, "~/Maildir/");
	parse_ok("  maildir\t~/Maildir/.Junk/  ", ACT_MAILDIR, "~/Maildir/.Junk/");
	parse_ok("mbox /var/mail/bob", ACT_MBOX, "/var/mail/bob");
	parse_ok("maildir \"~/My Mail/\"", ACT_MAILDIR, "~/My Mail/");
	parse_ok("maildir \"/tmp/a\\\"b\"", ACT_MAILDIR, "/tmp/a\"b");
	parse_ok("stop", ACT_STOP, NULL);
	parse_ok("discard", ACT_DISCARD, NULL);
	parse_ok("pipe \"/usr/local/bin/notify --from $SENDER\"", ACT_PIPE,
	    "/usr/local/bin/notify --from $SENDER");
	parse_ok("pipe \"a; b | c \\\"d\\\"\"", ACT_PIPE, "a; b | c \"d\"");
	parse_ok("reject \"No such list here\"", ACT_REJECT, "No such list here");
	parse_ok("forward carol@elsewhere.test", ACT_FORWARD, "carol@elsewhere.test");
	parse_ok("forward a@x.test, b@y.test", ACT_FORWARD, "a@x.test,b@y.test");
	parse_ok("forward a@x.test,b@y.test ,c@z.test , <d@w.test>", ACT_FORWARD,
	    "a@x.test,b@y.test,c@z.test,d@w.test");
	parse_ok("forward First.Last@[192.0.2.1]", ACT_FORWARD, "First.Last@[192.0.2.1]");
	parse_ok("mbox /var/mail/x   #a comment left over", ACT_MBOX, "/var/mail/x");
}

static void test_parse_options(void **state)
{
	struct rule_instruction in;
	char err[256];
	struct passwd *pw = getpwnam("nobody");
	if (pw == NULL)
		skip();
	assert_int_equal(rules_parse_instruction("mbox /var/mail/x uid=nobody gid=12345",
	    &in, err, sizeof(err)), 0);
	assert_true(in.has_uid);
	assert_int_equal(in.uid, pw->pw_uid);
	assert_true(in.has_gid);
	assert_int_equal(in.gid, 12345);
	rule_instruction_free(&in);
	assert_int_equal(rules_parse_instruction("pipe \"/bin/true\" gid=12345",
	    &in, err, sizeof(err)), 0);
	assert_int_equal(in.action, ACT_PIPE);
	assert_true(in.has_gid);
	assert_false(in.has_uid);
	rule_instruction_free(&in);
}

static void test_parse_errors(void **state)
{
	parse_err("", "empty instruction");
	parse_err("deliver ~/x", "unknown instruction \"deliver\"");
	parse_err("if spam maildir ~/Junk/", "a condition is not allowed here");
	parse_err("maildir", "maildir needs a path");
	parse_err("maildir Maildir/", "path must be absolute or start with ~/");
	parse_err("mbox ~bob/mbox", "path must be absolute or start with ~/");
	parse_err("maildir \"~/a\tb\"", "control character in path");
	parse_err("maildir ~/x colour=red", "unknown option \"colour=red\"");
	parse_err("maildir ~/x uid=root", "uid=root: refusing uid 0");
	parse_err("maildir ~/x uid=0", "uid=0: refusing uid 0");
	parse_err("maildir ~/x gid=0", "gid=0: refusing gid 0");
	parse_err("maildir ~/x uid=no_such_user_xyz", "unknown account \"no_such_user_xyz\"");
	parse_err("maildir ~/x gid=no_such_group_xyz", "unknown group \"no_such_group_xyz\"");
	parse_err("maildir ~/x gid=12 gid=13", "gid= given twice");
	parse_err("maildir ~/x uid=", "uid= needs a value: uid=NAME or uid=NUMBER");
	parse_err("mbox ~/x gid=", "gid= needs a value: gid=NAME or gid=NUMBER");
	parse_err("maildir \"~/unterminated", "missing closing quote");
	parse_err("maildir \"~/a\"b", "a quoted word must end at a space");
	parse_err("maildir ~/x ; stop", "one instruction expected here");
	parse_err("stop now", "stop takes no arguments");
	parse_err("discard ~/x", "discard takes no arguments");
	parse_err("discard gid=12", "discard: uid= and gid= apply only to maildir, mbox and pipe");
	parse_err("\"maildir\" ~/x", "not a quoted word");
	parse_err_flags("maildir ~/x uid=nobody", RULES_VIRTUAL, "not available with home_base");
	/* pipe */
	parse_err("pipe", "pipe needs a \"command\" in double quotes");
	parse_err("pipe /bin/true", "pipe needs a \"command\" in double quotes");
	parse_err("pipe \"\"", "pipe: empty command");
	parse_err("pipe \"a\x01b\"", "pipe: control character in command");
	parse_err("pipe \"/bin/true\" now", "unknown option \"now\"");
	parse_err_flags("pipe \"/bin/true\" uid=nobody", RULES_VIRTUAL,
	    "not available with home_base");
	/* reject */
	parse_err("reject", "reject needs a \"text\" in double quotes");
	parse_err("reject go away", "reject needs a \"text\" in double quotes");
	parse_err("reject \"\"", "reject: empty text");
	parse_err("reject \"caf\xc3\xa9\"", "reject: the text must be printable ASCII");
	parse_err("reject \"no\" more", "reject takes no arguments");
	parse_err("reject \"no\" gid=12", "reject: uid= and gid= apply only to maildir, mbox and pipe");
	/* forward */
	parse_err("forward", "forward needs an address");
	parse_err("forward carol", "forward: \"carol\" needs a domain");
	parse_err("forward a@b..test", "forward: bad address \"a@b..test\"");
	parse_err("forward a@x.test b@x.test", "forward: separate addresses with commas");
	parse_err("forward a@x.test,,b@x.test", "forward: empty address");
	parse_err("forward a@x.test,", "forward: empty address");
	parse_err("forward <a@x.test>junk", "forward: bad address");
	parse_err("forward a@x.test uid=nobody", "forward: uid= and gid= apply only");
	parse_err("forward \"a b\"@x.test", "a quoted word must end at a space");
	parse_err("forward \"a@x.test\"", "forward: write addresses without quotes");
	char many[2048] = "forward a0@x.test";
	for (int i = 1; i <= RULES_FORWARD_MAX; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), ",a%d@x.test", i);
	parse_err(many, "forward: more than 32 addresses");
	char longaddr[400];
	memset(longaddr, 'a', sizeof(longaddr));
	memcpy(longaddr, "forward ", 8);
	strcpy(longaddr + 300, "@x.test");
	parse_err(longaddr, "forward: address longer than 254 bytes");
}

static void test_parse_line(void **state)
{
	struct rules_entry e = { 0 };
	char err[256];

	assert_int_equal(rules_parse_line("maildir ~/Maildir/.Junk/ ; stop", 0, 7, &e,
	    err, sizeof(err)), 0);
	assert_int_equal(e.ninstr, 2);
	assert_int_equal(e.instr[0].action, ACT_MAILDIR);
	assert_int_equal(e.instr[0].line, 7);
	assert_int_equal(e.instr[1].action, ACT_STOP);
	assert_int_equal(e.instr[1].line, 7);
	assert_int_equal(rules_parse_line("mbox /var/mail/x;stop", 0, 8, &e, err, sizeof(err)), 0);
	assert_int_equal(e.ninstr, 4);
	assert_string_equal(e.instr[2].arg, "/var/mail/x");
	/* a failing line leaves the entry as it was */
	assert_int_equal(rules_parse_line("maildir ~/a ; bogus", 0, 9, &e, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unknown instruction \"bogus\""));
	assert_int_equal(rules_parse_line("maildir ~/a ;", 0, 9, &e, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "empty instruction"));
	assert_int_equal(rules_parse_line("if spam maildir ~/a ; frob", 0, 9, &e, err,
	    sizeof(err)), -1);
	assert_int_equal(e.ninstr, 4);
	assert_int_equal(rules_parse_line("maildir \"~/a ; b\"", 0, 10, &e, err, sizeof(err)), 0);
	assert_int_equal(e.ninstr, 5);
	assert_string_equal(e.instr[4].arg, "~/a ; b");
	rules_entry_free(&e);
	assert_int_equal(e.ninstr, 0);
}

/* Every test kind, operator and flag, printed back the way it is written. */
static void test_parse_conditions(void **state)
{
	cond_prints("if spam maildir ~/Maildir/.Junk/", "spam");
	cond_prints("if not spam maildir ~/x", "not spam");
	cond_prints("if score >= 5 maildir ~/x", "score >= 5");
	cond_prints("if score > -1.5 maildir ~/x", "score > -1.5");
	cond_prints("if score < 0.25 maildir ~/x", "score < 0.25");
	cond_prints("if score <= 1000000 maildir ~/x", "score <= 1000000");
}

static void test_parse_conditions_more(void **state)
{
	cond_prints("if score <= -0 maildir ~/x", "score <= 0");
	cond_prints("if score > 0.000001 maildir ~/x", "score > 0.000001");
	cond_prints("if size > 100K maildir ~/x", "size > 100K");
	cond_prints("if size < 2M maildir ~/x", "size < 2M");
	cond_prints("if size >= 1536 maildir ~/x", "size >= 1536");
	cond_prints("if size <= 3g maildir ~/x", "size <= 3G");
	cond_prints("if header List-Id ~ /<dev\\.lists\\.example\\.test>/ maildir ~/x",
	    "header List-Id ~ /<dev\\.lists\\.example\\.test>/");
	cond_prints("if header X-Spam-Flag contains \"YES\" maildir ~/x",
	    "header X-Spam-Flag contains \"YES\"");
	cond_prints("if header X contains \"say \\\"hi\\\" \\\\ bye\" maildir ~/x",
	    "header X contains \"say \\\"hi\\\" \\\\ bye\"");
	cond_prints("if sender ~ /@boss\\.example\\.test$/ maildir ~/x",
	    "sender ~ /@boss\\.example\\.test$/");
	cond_prints("if rcpt ~ /^bob@/I maildir ~/x", "rcpt ~ /^bob@/I");
	cond_prints("if subject ~ /a b; c \"d\"/ maildir ~/x", "subject ~ /a b; c \"d\"/");
	cond_prints("if body ~ /http:\\/\\/x\\// maildir ~/x", "body ~ /http:\\/\\/x\\//");
	cond_prints("if body ~ /\\\\/ maildir ~/x", "body ~ /\\\\/");
	cond_prints("if extension ~ /^lists$/ maildir ~/x", "extension ~ /^lists$/");
	cond_prints("if sender contains \"@Example\" maildir ~/x",
	    "sender contains \"@Example\"");
	cond_prints("if sender ~/x/ maildir ~/x", "sender ~ /x/");
	cond_prints("if header List-Id ~ /x/ and not spam maildir ~/x",
	    "header List-Id ~ /x/ and not spam");
	cond_prints("if\tsender ~ /@boss/\tand\tsize < 100K\tpipe \"/bin/notify\"",
	    "sender ~ /@boss/ and size < 100K");
	cond_prints("if not header X ~ /y/ and not body ~ /z/I and score > 2 discard",
	    "not header X ~ /y/ and not body ~ /z/I and score > 2");

	/* what each test holds */
	struct rules_entry e;
	line_ok("if not header List-Id ~ /x/I and size < 1K forward a@x.test", &e);
	const struct rule_cond *c = e.instr[0].cond;
	assert_int_equal(e.instr[0].ncond, 2);
	assert_int_equal(c[0].kind, COND_HEADER);
	assert_int_equal(c[0].op, COND_OP_MATCH);
	assert_true(c[0].negate);
	assert_true(c[0].caseful);
	assert_string_equal(c[0].name, "List-Id");
	assert_string_equal(c[0].text, "x");
	assert_int_equal(c[1].kind, COND_SIZE);
	assert_int_equal(c[1].op, COND_OP_LT);
	assert_false(c[1].negate);
	assert_int_equal(c[1].size, 1024);
	assert_null(c[1].name);
	assert_null(c[1].text);
	assert_int_equal(e.instr[0].action, ACT_FORWARD);
	rules_entry_free(&e);
}

/* `if X A ; B`: the condition belongs to both. */
static void test_condition_covers_line(void **state)
{
	struct rules_entry e;
	line_ok("if spam maildir ~/Maildir/.Junk/ ; stop", &e);
	assert_int_equal(e.ninstr, 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(e.instr[i].ncond, 1);
		assert_int_equal(e.instr[i].cond[0].kind, COND_SPAM);
	}
	assert_ptr_not_equal(e.instr[0].cond, e.instr[1].cond);      /* own copies */
	assert_int_equal(e.instr[1].action, ACT_STOP);
	rules_entry_free(&e);

	line_ok("if body ~ /a;b/ and header X contains \"c;d\" maildir ~/x;discard ; stop", &e);
	assert_int_equal(e.ninstr, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(e.instr[i].ncond, 2);
		assert_string_equal(e.instr[i].cond[0].text, "a;b");
		assert_string_equal(e.instr[i].cond[1].text, "c;d");
	}
	rules_entry_free(&e);
}

/* Each kind of mistake, with the message a user sees. */
static void test_condition_errors(void **state)
{
	line_err("if", "missing condition after \"if\"");
	line_err("if maildir ~/x", "unknown condition \"maildir\" (spam, score, size, "
	    "header, subject, body, sender, rcpt or extension)");
	line_err("if spam", "missing action after the condition");
	line_err("if spam ; stop", "missing action after the condition");
	line_err("if spam and", "missing condition after \"and\"");
	line_err("if spam and maildir ~/x", "unknown condition \"maildir\"");
	line_err("if not", "missing condition after \"not\"");
	line_err("if not not spam stop", "\"not\" twice");
	line_err("if spam or score > 5 stop", "\"or\" is not supported: write one line "
	    "for each alternative");
	line_err("if spam score > 5 stop", "expected \"and\" or an action before \"score\"");
	line_err("if spam not size > 5 stop", "expected \"and\" or an action before \"not\"");
	line_err("if frob stop", "unknown condition \"frob\"");
	line_err("if Spam stop", "unknown condition \"Spam\"");
	line_err("if score>=5 stop", "unknown condition \"score>=5\" (put spaces around "
	    "the operator)");
	line_err("if spam frob", "unknown instruction \"frob\"");
	line_err("if spam stop ; if spam stop", "a condition must start the line");
	line_err("maildir ~/x ; if spam stop", "a condition must start the line");
	/* score and size */
	line_err("if score stop", "score: expected >, >=, < or <= (with spaces around it), "
	    "not \"stop\"");
	line_err("if score", "score: missing >, >=, < or <=");
	line_err("if score == 5 stop", "score: expected >, >=, < or <=");
	line_err("if score >=", "score >=: missing number");
	line_err("if score >= abc stop", "score: bad number \"abc\" (like 5, -1.5 or 0.25; "
	    "at most 1000000)");
	line_err("if score >= 1e3 stop", "score: bad number \"1e3\"");
	line_err("if score >= 5. stop", "score: bad number \"5.\"");
	line_err("if score >= .5 stop", "score: bad number \".5\"");
	line_err("if score >= 1,5 stop", "score: bad number \"1,5\"");
	line_err("if score >= 0.1234567 stop", "score: bad number");
	line_err("if score >= 12345678 stop", "score: bad number");
	line_err("if score >= 1000001 stop", "score: bad number");
	line_err("if score >= 99999999999999999999999 stop", "score: bad number");
	line_err("if score >= nan stop", "score: bad number \"nan\"");
	line_err("if size > 10Q stop", "size: bad size \"10Q\" (a number with K, M or G)");
	line_err("if size > -1 stop", "size: bad size \"-1\"");
	line_err("if size > 99999999999999999999G stop", "size: bad size");
	line_err("if size ~ /x/ stop", "size: expected >, >=, < or <=");
	line_err("if size <", "size <: missing size");
	/* header */
	line_err("if header", "header: missing the header name");
	line_err("if header ~ /x/ stop", "header: missing the header name");
	line_err("if header List-Id: ~ /x/ stop", "header List-Id: write the name "
	    "without the colon");
	line_err("if header a:b ~ /x/ stop", "header: bad header name \"a:b\"");
	line_err("if header caf\xc3\xa9 ~ /x/ stop", "header: bad header name");
	line_err("if header X stop", "header X: expected ~ /REGEX/ or contains \"TEXT\", "
	    "not \"stop\"");
	line_err("if header X", "header X: missing ~ /REGEX/ or contains \"TEXT\"");
	/* regexes */
	line_err("if sender ~", "sender ~: missing /REGEX/");
	line_err("if sender ~ boss stop", "sender ~: expected a /REGEX/, not \"boss\"");
	line_err("if sender ~ /boss stop", "sender: missing closing / of the regex");
	line_err("if sender ~ /boss\\/ stop", "sender: missing closing / of the regex");
	line_err("if sender ~ /boss\\", "sender: missing closing / of the regex");
	line_err("if sender ~ // stop", "sender: empty regex");
	line_err("if sender ~ /x/i stop", "sender: unknown regex flag 'i' (regexes are "
	    "case-insensitive already; /.../I makes one case-sensitive)");
	line_err("if sender ~ /x/g stop", "sender: unexpected \"g\" after the regex "
	    "(the only flag is I, for case-sensitive)");
	line_err("if sender ~ /x/II stop", "sender: unexpected \"I\" after the regex");
	line_err("if sender ~ /x/stop", "unexpected \"stop\" after the regex");
	line_err("if subject ~ /a(b/ stop", "subject: bad regex /a(b/: missing closing "
	    "parenthesis at offset 3");
	line_err("if body ~ /x{2,1}/ stop", "body: bad regex /x{2,1}/: numbers out of "
	    "order in {} quantifier at offset 5");
	line_err("if body ~ /[z-a]/ stop", "range out of order in character class at offset 3");
	line_err("if body ~ /\\C/ stop", "using \\C is disabled by the application at offset 2");
	line_err("if body ~ /\xff/ stop", "UTF-8 error");
	line_err("if rcpt ~ /a\tb(/ stop", "rcpt: bad regex");
	line_err("if extension ~ /(?<n>a)(?<n>b)/ stop", "two named subpatterns have the "
	    "same name");
	/* contains */
	line_err("if sender contains", "sender contains: missing \"TEXT\"");
	line_err("if sender contains boss stop", "sender contains: expected a \"quoted "
	    "text\", not \"boss\"");
	line_err("if sender contains \"boss stop", "sender: missing closing quote");
	line_err("if sender contains \"\" stop", "sender: empty text");
	line_err("if sender contains \"a\"b stop", "sender: a quoted text must end at a space");
	line_err("if header X contains \"a\x01\" stop", "header X: control character in text");
	line_err("if sender = /x/ stop", "sender: expected ~ /REGEX/ or contains \"TEXT\", "
	    "not \"=\"");
	/* actions after a condition keep their own errors */
	line_err("if spam maildir", "maildir needs a path");
	line_err("if spam forward nobody", "forward: \"nobody\" needs a domain");
}

/* Bounds: tests per condition, regex and text length, names, the line. */
static void test_condition_limits(void **state)
{
	struct buf b = BUF_INIT;
	struct rules_entry e;

	buf_puts(&b, "if spam");
	for (int i = 1; i < RULE_COND_MAX; i++)
		buf_puts(&b, " and not spam");
	buf_puts(&b, " stop");
	line_ok(b.data, &e);
	assert_int_equal(e.instr[0].ncond, RULE_COND_MAX);
	rules_entry_free(&e);
	buf_reset(&b);
	buf_puts(&b, "if spam");
	for (int i = 0; i < RULE_COND_MAX; i++)
		buf_puts(&b, " and spam");
	buf_puts(&b, " stop");
	line_err(b.data, "more than 64 tests in one condition");

	buf_reset(&b);
	buf_puts(&b, "if body ~ /");
	for (int i = 0; i < RULE_PATTERN_MAX; i++)
		buf_putc(&b, 'a');
	buf_puts(&b, "/ stop");
	line_ok(b.data, &e);
	assert_int_equal(strlen(e.instr[0].cond[0].text), RULE_PATTERN_MAX);
	rules_entry_free(&e);
	buf_reset(&b);
	buf_puts(&b, "if body ~ /");
	for (int i = 0; i <= RULE_PATTERN_MAX; i++)
		buf_putc(&b, 'a');
	buf_puts(&b, "/ stop");
	line_err(b.data, "body: regex longer than 4096 bytes");

	buf_reset(&b);
	buf_puts(&b, "if body contains \"");
	for (int i = 0; i <= RULE_TEXT_MAX; i++)
		buf_putc(&b, 'a');
	buf_puts(&b, "\" stop");
	line_err(b.data, "body: text longer than 1024 bytes");

	buf_reset(&b);
	buf_puts(&b, "if header ");
	for (int i = 0; i <= RULE_HEADER_NAME_MAX; i++)
		buf_putc(&b, 'h');
	buf_puts(&b, " ~ /x/ stop");
	line_err(b.data, "header: name longer than 128 bytes");

	/* deep nesting is PCRE2's to refuse, with its own message */
	buf_reset(&b);
	buf_puts(&b, "if body ~ /");
	for (int i = 0; i < 1000; i++)
		buf_putc(&b, '(');
	for (int i = 0; i < 1000; i++)
		buf_putc(&b, ')');
	buf_puts(&b, "/ stop");
	line_err(b.data, "parentheses are too deeply nested");

	buf_reset(&b);
	buf_puts(&b, "maildir ~/");
	for (int i = 0; i < RULES_LINE_MAX; i++)
		buf_putc(&b, 'a');
	line_err(b.data, "line longer than 65536 bytes");
	buf_free(&b);
}

/* An entry using every field, every action and every test kind. */
static void sample_entry(struct rules_entry *e)
{
	static const char *const lines[] = {
		"if spam maildir ~/Maildir/.Junk/ ; stop",
		"if header List-Id ~ /<dev\\.lists>/I and not score < -2.5 mbox /var/mail/dev",
		"if sender ~ /@boss/ and size < 100K pipe \"/bin/notify $SENDER\"",
		("if not rcpt contains \"x\" and subject ~ /hi/ and body ~ /\\/x/ forward "
		    "a@x.test, b@y.test"),
		"if extension ~ /^spam$/ and size >= 3 discard",
		"if header X-Bad contains \"yes\" and score > 1000000 reject \"Go away\"",
		"maildir ~/Maildir/",
	};
	char err[512];
	memset(e, 0, sizeof(*e));
	e->maxsize = 20ULL << 20;
	e->spam = 0;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		if (rules_parse_line(lines[i], 0, (int)i + 3, e, err, sizeof(err)) != 0)
			fail_msg("%s: %s", lines[i], err);
	}
	e->instr[2].has_uid = 1;
	e->instr[2].uid = 1001;
	e->instr[2].has_gid = 1;
	e->instr[2].gid = 8;
}

static void assert_same_entry(const struct rules_entry *a, const struct rules_entry *b)
{
	struct buf fa = BUF_INIT, fb = BUF_INIT;

	assert_int_equal(a->maxsize, b->maxsize);
	assert_int_equal(a->spam, b->spam);
	assert_int_equal(a->ninstr, b->ninstr);
	for (int i = 0; i < a->ninstr; i++) {
		const struct rule_instruction *x = &a->instr[i], *y = &b->instr[i];
		assert_int_equal(x->action, y->action);
		assert_int_equal(x->line, y->line);
		assert_int_equal(x->has_uid, y->has_uid);
		assert_int_equal(x->uid, y->uid);
		assert_int_equal(x->has_gid, y->has_gid);
		assert_int_equal(x->gid, y->gid);
		if (x->arg)
			assert_string_equal(x->arg, y->arg);
		else
			assert_null(y->arg);
		assert_int_equal(x->ncond, y->ncond);
		for (int j = 0; j < x->ncond; j++) {
			const struct rule_cond *c = &x->cond[j], *d = &y->cond[j];
			assert_int_equal(c->kind, d->kind);
			assert_int_equal(c->op, d->op);
			assert_int_equal(c->negate, d->negate);
			assert_int_equal(c->caseful, d->caseful);
			assert_true(c->score == d->score);
			assert_int_equal(c->size, d->size);
			if (c->name)
				assert_string_equal(c->name, d->name);
			else
				assert_null(d->name);
			if (c->text)
				assert_string_equal(c->text, d->text);
			else
				assert_null(d->text);
		}
		buf_reset(&fa);
		buf_reset(&fb);
		rule_condition_format(x, &fa);
		rule_condition_format(y, &fb);
		assert_string_equal(fa.data ? fa.data : "", fb.data ? fb.data : "");
	}
	buf_free(&fa);
	buf_free(&fb);
}

static void test_round_trip(void **state)
{
	struct rules_entry e, d;
	struct buf b = BUF_INIT;

	sample_entry(&e);
	assert_int_equal(e.ninstr, 8);
	rules_entry_encode(&e, &b);
	assert_int_equal(b.data[1], 2);         /* the version with conditions */
	assert_int_equal(rules_entry_decode(b.data, b.len, &d), 0);
	assert_same_entry(&e, &d);
	assert_true(d.instr[3].cond[1].size == 100 * 1024);
	assert_true(d.instr[2].cond[1].score == -2.5);
	assert_int_equal(rules_entry_needs(&d), RULES_NEED_HEADERS | RULES_NEED_BODY);
	rules_entry_free(&d);

	/* spam default and on, and an empty entry */
	struct rules_entry empty = { .spam = -1 };
	buf_reset(&b);
	rules_entry_encode(&empty, &b);
	assert_int_equal(rules_entry_decode(b.data, b.len, &d), 0);
	assert_int_equal(d.spam, -1);
	assert_int_equal(d.ninstr, 0);
	assert_null(d.instr);
	rules_entry_free(&d);
	empty.spam = 1;
	buf_reset(&b);
	rules_entry_encode(&empty, &b);
	assert_int_equal(rules_entry_decode(b.data, b.len, &d), 0);
	assert_int_equal(d.spam, 1);
	rules_entry_free(&d);

	rules_entry_free(&e);
	buf_free(&b);
}

/* A version 1 blob (before conditions) is still read, unless it carries
 * condition bytes. */
static void test_decode_version1(void **state)
{
	struct rules_entry e, d;
	struct buf b = BUF_INIT;
	char err[256];

	memset(&e, 0, sizeof(e));
	e.spam = -1;
	assert_int_equal(rules_parse_line("maildir ~/x ; stop", 0, 2, &e, err, sizeof(err)), 0);
	rules_entry_encode(&e, &b);
	b.data[1] = 1;
	assert_int_equal(rules_entry_decode(b.data, b.len, &d), 0);
	assert_same_entry(&e, &d);
	rules_entry_free(&d);
	b.data[1] = 3;
	assert_int_equal(rules_entry_decode(b.data, b.len, &d), -1);
	rules_entry_free(&e);

	line_ok("if spam stop", &e);
	buf_reset(&b);
	rules_entry_encode(&e, &b);
	b.data[1] = 1;
	assert_int_equal(rules_entry_decode(b.data, b.len, &d), -1);
	rules_entry_free(&e);
	buf_free(&b);
}

/* Every proper prefix is refused; so is any trailing byte. */
static void test_decode_truncated(void **state)
{
	struct rules_entry e, d;
	struct buf b = BUF_INIT;

	sample_entry(&e);
	rules_entry_encode(&e, &b);
	for (size_t len = 0; len < b.len; len++) {
		char *copy = malloc(len ? len : 1);     /* exact size: ASan sees overreads */
		memcpy(copy, b.data, len);
		assert_int_equal(rules_entry_decode(copy, len, &d), -1);
		assert_int_equal(d.ninstr, 0);
		assert_null(d.instr);
		free(copy);
	}
	buf_putc(&b, 0);
	assert_int_equal(rules_entry_decode(b.data, b.len, &d), -1);
	assert_int_equal(rules_entry_decode(NULL, 0, &d), -1);
	rules_entry_free(&e);
	buf_free(&b);
}

/* Flipped bytes and random blobs never crash; what decodes is sane. */
static void test_decode_garbage(void **state)
{
	struct rules_entry e, d;
	struct buf b = BUF_INIT, f = BUF_INIT;

	sample_entry(&e);
	rules_entry_encode(&e, &b);
	for (size_t i = 0; i < b.len; i++) {
		for (unsigned v = 1; v < 256; v += 7) {
			char *copy = malloc(b.len);
			memcpy(copy, b.data, b.len);
			copy[i] = (char)(copy[i] ^ (char)v);
			if (rules_entry_decode(copy, b.len, &d) == 0) {
				for (int k = 0; k < d.ninstr; k++) {
					assert_true(d.instr[k].action >= ACT_MAILDIR);
					assert_true(d.instr[k].action <= ACT_REJECT);
					assert_true(d.instr[k].ncond <= RULE_COND_MAX);
					rule_condition_format(&d.instr[k], &f);
				}
				rules_entry_free(&d);
			}
			free(copy);
		}
	}
	srandom(42);
	for (int round = 0; round < 20000; round++) {
		size_t len = (size_t)(random() % 80);
		unsigned char *blob = malloc(len ? len : 1);
		for (size_t i = 0; i < len; i++)
			blob[i] = (unsigned char)random();
		if (len >= 2 && round % 2 == 0) {
			blob[0] = 'R';
			blob[1] = 2;
		}
		if (rules_entry_decode(blob, len, &d) == 0)
			rules_entry_free(&d);
		free(blob);
	}
	rules_entry_free(&e);
	buf_free(&b);
	buf_free(&f);
}

/* Condition blobs forged by hand: each breaks one rule. */
static int cond_decodes(const void *p, size_t len)
{
	struct rule_cond *c;
	int n;
	char *copy = malloc(len ? len : 1);
	memcpy(copy, p, len);
	int r = rule_cond_decode(copy, len, &c, &n);
	if (r == 0)
		rule_cond_free(c, n);
	else
		assert_null(c);
	free(copy);
	return r;
}

#define DECODES(lit) cond_decodes(lit, sizeof(lit) - 1)

static void test_decode_forged_conditions(void **state)
{
	/* well-formed, for contrast */
	assert_int_equal(DECODES("\x01\x01\x00\x01"), 0);                   /* not spam */
	assert_int_equal(DECODES("\x01\x07\x01\x02\x00\x01x"), 0);         /* sender ~ /x/I */
	assert_int_equal(DECODES("\x01\x04\x02\x00\x01X\x00\x01y"), 0);    /* header X contains */
	assert_int_equal(DECODES("\x01\x03\x03\x00" "\0\0\0\0\0\0\0\5"), 0); /* size > 5 */

	assert_int_equal(cond_decodes("", 0), -1);
	assert_int_equal(DECODES("\x00"), -1);                        /* no tests */
	assert_int_equal(DECODES("\x41\x01\x00\x00"), -1);            /* 65 tests */
	assert_int_equal(DECODES("\x01\x00\x00\x00"), -1);            /* kind 0 */
	assert_int_equal(DECODES("\x01\x0a\x01\x00\x00\x01x"), -1);   /* kind 10 */
	assert_int_equal(DECODES("\x01\x01\x01\x00"), -1);            /* spam with ~ */
	assert_int_equal(DECODES("\x01\x01\x00\x04"), -1);            /* unknown flag */
	assert_int_equal(DECODES("\x01\x01\x00\x00\x00"), -1);        /* trailing byte */
	assert_int_equal(DECODES("\x01\x07\x03\x00\x00\x01x"), -1);   /* sender > */
	assert_int_equal(DECODES("\x01\x07\x02\x02\x00\x01x"), -1);   /* contains + I */
	assert_int_equal(DECODES("\x01\x07\x01\x00\x00\x00"), -1);    /* empty regex */
	assert_int_equal(DECODES("\x01\x07\x01\x00\x00\x02x"), -1);   /* short text */
	assert_int_equal(DECODES("\x01\x07\x01\x00\x00\x03x/y"), -1); /* unescaped / */
	assert_int_equal(DECODES("\x01\x07\x01\x00\x00\x02x\\"), -1); /* lone \ at end */
	assert_int_equal(DECODES("\x01\x07\x01\x00\x00\x03x\\/"), 0); /* escaped / */
	assert_int_equal(DECODES("\x01\x07\x01\x00\x00\x03x\0y"), -1); /* NUL */
	assert_int_equal(DECODES("\x01\x07\x01\x00\x00\x03x\ny"), -1); /* control */
	assert_int_equal(DECODES("\x01\x07\x01\x00\x10\x01x"), -1);   /* 4097-byte regex */
	assert_int_equal(DECODES("\x01\x04\x01\x00\x00\x00\x01x"), -1);  /* no header name */
	assert_int_equal(DECODES("\x01\x04\x01\x00\x02X:\x00\x01x"), -1); /* ':' in name */
	assert_int_equal(DECODES("\x01\x04\x01\x00\x02X \x00\x01x"), -1); /* ' ' in name */
	assert_int_equal(DECODES("\x01\x04\x01\x00\x81"), -1);        /* name too long */
	assert_int_equal(DECODES("\x01\x02\x00\x00" "\0\0\0\0\0\0\0\0"), -1);  /* score, no op */
	assert_int_equal(DECODES("\x01\x02\x04\x00" "\x7f\xf8\0\0\0\0\0\0"), -1); /* NaN */
	assert_int_equal(DECODES("\x01\x02\x04\x00" "\x7f\xf0\0\0\0\0\0\0"), -1); /* inf */
	assert_int_equal(DECODES("\x01\x02\x04\x00" "\x41\x30\0\0\0\0\0\0"), -1); /* 1048576 */
	assert_int_equal(DECODES("\x01\x02\x04\x00" "\x40\x14\0\0\0\0\0\0"), 0);  /* 5.0 */
	assert_int_equal(DECODES("\x01\x03\x03\x00" "\0\0\0\0"), -1);  /* short u64 */
	assert_int_equal(DECODES("\x02\x01\x00\x00"), -1);            /* one test of two */

	/* inside an entry: a uid= on an action that runs as nobody */
	struct rules_entry e, d;
	struct buf b = BUF_INIT;
	line_ok("discard", &e);
	e.instr[0].has_uid = 1;
	e.instr[0].uid = 1000;
	rules_entry_encode(&e, &b);
	assert_int_equal(rules_entry_decode(b.data, b.len, &d), -1);
	rules_entry_free(&e);
	buf_free(&b);
}

static void test_action_names(void **state)
{
	static const char *const names[] = { NULL, "maildir", "mbox", "stop", "pipe",
		"forward", "discard", "reject" };
	for (int a = ACT_MAILDIR; a <= ACT_REJECT; a++)
		assert_string_equal(rule_action_name((enum rule_action)a), names[a]);
	assert_string_equal(rule_action_name((enum rule_action)99), "unknown");
	assert_true(rule_action_writes_as_user(ACT_MAILDIR));
	assert_true(rule_action_writes_as_user(ACT_MBOX));
	assert_true(rule_action_writes_as_user(ACT_PIPE));
	assert_false(rule_action_writes_as_user(ACT_STOP));
	assert_false(rule_action_writes_as_user(ACT_FORWARD));
	assert_false(rule_action_writes_as_user(ACT_DISCARD));
	assert_false(rule_action_writes_as_user(ACT_REJECT));
}

static int teardown_group(void **state)
{
	rule_regex_cache_clear();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_actions),
		cmocka_unit_test(test_parse_options),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_parse_line),
		cmocka_unit_test(test_parse_conditions),
		cmocka_unit_test(test_parse_conditions_more),
		cmocka_unit_test(test_condition_covers_line),
		cmocka_unit_test(test_condition_errors),
		cmocka_unit_test(test_condition_limits),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_decode_version1),
		cmocka_unit_test(test_decode_truncated),
		cmocka_unit_test(test_decode_garbage),
		cmocka_unit_test(test_decode_forged_conditions),
		cmocka_unit_test(test_action_names),
	};
	return cmocka_run_group_tests(tests, NULL, teardown_group);
}
