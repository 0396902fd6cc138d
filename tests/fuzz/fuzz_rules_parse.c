/*
 * fuzz_rules_parse.c - libFuzzer target for the rules language: an
 * instruction line through the parser (conditions and actions), and raw
 * bytes through the compiled-entry decoder, with property checks:
 *   - a parsed line encodes, decodes and encodes again to the same bytes;
 *   - every printed condition parses back and prints the same;
 *   - evaluation returns 0 or 1 and a NUL-terminated warning;
 *   - whatever the decoder accepts can be printed, evaluated and freed.
 *
 * Not part of the meson build.  Build and run by hand:
 *   clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Isrc \
 *     tests/fuzz/fuzz_rules_parse.c src/rules/cond.c src/rules/cond_parse.c \
 *     src/rules/cond_codec.c src/rules/cond_format.c src/rules/action_args.c \
 *     src/rules/regex.c src/rules/eval.c src/db/rules_entry.c \
 *     src/db/rules_parse.c src/proto/smtp_addr.c src/lib/buf.c \
 *     src/lib/xalloc.c src/lib/log.c src/lib/privsep.c src/lib/parse_util.c \
 *     -lpcre2-8 -o /tmp/fuzz_rules_parse
 *   /tmp/fuzz_rules_parse -max_len=4096 -max_total_time=120
 * The first byte picks the mode: even = a line, odd = a blob.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/rules_entry.h"
#include "rules/cond.h"
#include "rules/eval.h"
#include "mime/mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s\n", #c); abort(); } } while (0)

static struct mime_header hdrs[] = {
	{ "Subject", "hello aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!" },
	{ "List-Id", "<dev.lists.example.test>" },
	{ "X", "caf\xc3\xa9 \xff" },
};
static char body[] = "body text\nwith lines aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\n";
static struct mime_message msg = { hdrs, 3, body, sizeof(body) - 1, 0 };
static const struct rule_context ctx = {
	.sender = "boss@example.test", .rcpt = "bob+x@example.test", .extension = "x",
	.size = 12345, .spam = 1, .score = 2.5, .msg = &msg,
};

static void evaluate(const struct rules_entry *e)
{
	char warn[300];
	struct buf b = BUF_INIT;
	(void)rules_entry_needs(e);
	for (int i = 0; i < e->ninstr; i++) {
		int r = rule_condition_holds(&e->instr[i], &ctx, warn, sizeof(warn));
		CHECK(r == 0 || r == 1);
		CHECK(memchr(warn, '\0', sizeof(warn)) != NULL);
		rule_condition_format(&e->instr[i], &b);
	}
	buf_free(&b);
}

/* The printed condition parses back to the same printed form. */
static void check_reprint(const struct rule_instruction *in)
{
	struct buf printed = BUF_INIT, line = BUF_INIT, again = BUF_INIT;
	struct rules_entry e = { .spam = -1 };
	char err[512];

	if (in->ncond == 0)
		return;
	rule_condition_format(in, &printed);
	buf_printf(&line, "if %s stop", printed.data);
	if (rules_parse_line(line.data, RULES_VIRTUAL, 1, &e, err, sizeof(err)) != 0) {
		fprintf(stderr, "reprint \"%s\" failed: %s\n", line.data, err);
		abort();
	}
	CHECK(e.ninstr == 1);
	rule_condition_format(&e.instr[0], &again);
	CHECK(strcmp(printed.data, again.data) == 0);
	rules_entry_free(&e);
	buf_free(&printed);
	buf_free(&line);
	buf_free(&again);
}

static void fuzz_line(const uint8_t *data, size_t size)
{
	struct rules_entry e = { .spam = -1 }, d;
	struct buf b1 = BUF_INIT, b2 = BUF_INIT;
	char err[512];
	char *line = malloc(size + 1);

	memcpy(line, data, size);
	line[size] = '\0';
	err[0] = '\0';
	if (rules_parse_line(line, RULES_VIRTUAL, 7, &e, err, sizeof(err)) != 0) {
		CHECK(e.ninstr == 0 && e.instr == NULL);
		CHECK(err[0] != '\0');
		free(line);
		return;
	}
	rules_entry_encode(&e, &b1);
	CHECK(rules_entry_decode(b1.data, b1.len, &d) == 0);
	rules_entry_encode(&d, &b2);
	CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
	for (int i = 0; i < e.ninstr; i++)
		check_reprint(&e.instr[i]);
	evaluate(&d);
	rules_entry_free(&d);
	rules_entry_free(&e);
	buf_free(&b1);
	buf_free(&b2);
	free(line);
}

static void fuzz_blob(const uint8_t *data, size_t size)
{
	struct rules_entry d;
	unsigned char *copy = malloc(size ? size : 1);     /* exact size for ASan */
	memcpy(copy, data, size);
	if (rules_entry_decode(copy, size, &d) == 0) {
		evaluate(&d);
		rules_entry_free(&d);
	} else {
		CHECK(d.ninstr == 0 && d.instr == NULL);
	}
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 1)
		fuzz_blob(data + 1, size - 1);
	else
		fuzz_line(data + 1, size - 1);
	return 0;
}
