/*
 * test_rules_entry.c - rules instruction parsing and the compiled entry
 * codec (round trip; truncated and garbage blobs fail cleanly).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#include "db/rules_entry.h"

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
	rule_instruction_free(&in);
}

static void parse_err_flags(const char *line, int flags, const char *msg)
{
	struct rule_instruction in;
	char err[256] = "";
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

static void test_parse_actions(void **state)
{
	parse_ok("maildir ~/Maildir/", ACT_MAILDIR, "~/Maildir/");
	parse_ok("  maildir\t~/Maildir/.Junk/  ", ACT_MAILDIR, "~/Maildir/.Junk/");
	parse_ok("mbox /var/mail/bob", ACT_MBOX, "/var/mail/bob");
	parse_ok("maildir \"~/My Mail/\"", ACT_MAILDIR, "~/My Mail/");
	parse_ok("maildir \"/tmp/a\\\"b\"", ACT_MAILDIR, "/tmp/a\"b");
	parse_ok("stop", ACT_STOP, NULL);
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
}

static void test_parse_errors(void **state)
{
	parse_err("", "empty instruction");
	parse_err("deliver ~/x", "unknown instruction \"deliver\"");
	parse_err("if spam maildir ~/Junk/", "conditions are not supported yet");
	parse_err("pipe \"/bin/true\"", "\"pipe\" is not supported yet");
	parse_err("forward a@b", "\"forward\" is not supported yet");
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
	parse_err("maildir \"~/unterminated", "missing closing quote");
	parse_err("maildir \"~/a\"b", "a quoted word must end at a space");
	parse_err("maildir ~/x ; stop", "one instruction expected here");
	parse_err("stop now", "stop takes no arguments");
	parse_err("\"maildir\" ~/x", "not a quoted word");
	parse_err_flags("maildir ~/x uid=nobody", RULES_VIRTUAL, "not available with home_base");
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
	assert_int_equal(rules_parse_line("maildir \"~/a ; b\"", 0, 10, &e, err, sizeof(err)), 0);
	assert_int_equal(e.ninstr, 5);
	assert_string_equal(e.instr[4].arg, "~/a ; b");
	rules_entry_free(&e);
	assert_int_equal(e.ninstr, 0);
}

/* An entry using every field. */
static void sample_entry(struct rules_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->maxsize = 20ULL << 20;
	e->spam = 0;
	e->ninstr = 3;
	e->instr = calloc(3, sizeof(*e->instr));
	e->instr[0] = (struct rule_instruction){ .action = ACT_MAILDIR,
		.arg = strdup("~/Maildir/.Junk/"), .line = 3 };
	e->instr[1] = (struct rule_instruction){ .action = ACT_MBOX,
		.arg = strdup("/var/mail/bob"), .has_uid = 1, .uid = 1001,
		.has_gid = 1, .gid = 8, .line = 4 };
	e->instr[1].cond = malloc(5);
	memcpy(e->instr[1].cond, "c\0o\1d", 5);
	e->instr[1].cond_len = 5;
	e->instr[2] = (struct rule_instruction){ .action = ACT_STOP, .line = 4 };
}

static void test_round_trip(void **state)
{
	struct rules_entry e, d;
	struct buf b = BUF_INIT;

	sample_entry(&e);
	rules_entry_encode(&e, &b);
	assert_int_equal(rules_entry_decode(b.data, b.len, &d), 0);
	assert_int_equal(d.maxsize, e.maxsize);
	assert_int_equal(d.spam, 0);
	assert_int_equal(d.ninstr, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(d.instr[i].action, e.instr[i].action);
		assert_int_equal(d.instr[i].line, e.instr[i].line);
		assert_int_equal(d.instr[i].has_uid, e.instr[i].has_uid);
		assert_int_equal(d.instr[i].uid, e.instr[i].uid);
		assert_int_equal(d.instr[i].has_gid, e.instr[i].has_gid);
		assert_int_equal(d.instr[i].gid, e.instr[i].gid);
		if (e.instr[i].arg)
			assert_string_equal(d.instr[i].arg, e.instr[i].arg);
		else
			assert_null(d.instr[i].arg);
		assert_int_equal(d.instr[i].cond_len, e.instr[i].cond_len);
	}
	assert_memory_equal(d.instr[1].cond, "c\0o\1d", 5);
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

/* Flipped bytes and random blobs never crash; what decodes can be freed. */
static void test_decode_garbage(void **state)
{
	struct rules_entry e, d;
	struct buf b = BUF_INIT;

	sample_entry(&e);
	rules_entry_encode(&e, &b);
	for (size_t i = 0; i < b.len; i++) {
		for (unsigned v = 0; v < 256; v += 17) {
			char *copy = malloc(b.len);
			memcpy(copy, b.data, b.len);
			copy[i] = (char)(copy[i] ^ (char)v);
			if (rules_entry_decode(copy, b.len, &d) == 0) {
				for (int k = 0; k < d.ninstr; k++) {
					assert_true(d.instr[k].action >= ACT_MAILDIR);
					assert_true(d.instr[k].action <= ACT_REJECT);
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
			blob[1] = 1;
		}
		if (rules_entry_decode(blob, len, &d) == 0)
			rules_entry_free(&d);
		free(blob);
	}
	rules_entry_free(&e);
	buf_free(&b);
}

static void test_action_names(void **state)
{
	assert_string_equal(rule_action_name(ACT_MAILDIR), "maildir");
	assert_string_equal(rule_action_name(ACT_MBOX), "mbox");
	assert_string_equal(rule_action_name(ACT_STOP), "stop");
	assert_string_equal(rule_action_name((enum rule_action)99), "unknown");
	assert_true(rule_action_writes_as_user(ACT_MAILDIR));
	assert_true(rule_action_writes_as_user(ACT_MBOX));
	assert_false(rule_action_writes_as_user(ACT_STOP));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_actions),
		cmocka_unit_test(test_parse_options),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_parse_line),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_decode_truncated),
		cmocka_unit_test(test_decode_garbage),
		cmocka_unit_test(test_action_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
