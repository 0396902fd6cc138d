/*
 * fuzz_smtp_parse.c - libFuzzer target for the SMTP/LMTP parser in
 * src/proto: line assembly, command and path parsing, the DATA state
 * machine and reply formatting, with property checks (canonical addresses
 * parse back to themselves, chunking never changes the DATA result,
 * outputs stay within their documented bounds).
 *
 * Not part of the meson build.  Build and run by hand:
 *   clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Isrc \
 *     tests/fuzz/fuzz_smtp_parse.c src/proto/smtp_*.c \
 *     src/lib/log.c src/lib/buf.c src/lib/xalloc.c -o /tmp/fuzz_smtp_parse
 *   /tmp/fuzz_smtp_parse -max_len=8192 -max_total_time=300
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_data.h"
#include "proto/smtp_line.h"
#include "proto/smtp_parse.h"
#include "proto/smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s\n", #c); abort(); } } while (0)

/* A canonical address must parse back to itself. */
static void check_canonical(const struct smtp_path *p, int mail)
{
	char arg[SMTP_PATH_MAX + 16];
	struct smtp_path again;

	CHECK(strlen(p->addr) <= SMTP_PATH_MAX);
	snprintf(arg, sizeof(arg), "%s<%s>", mail ? "FROM:" : "TO:", p->addr);
	enum smtp_path_status st = mail ? smtp_parse_mail(arg, &again) :
	    smtp_parse_rcpt(arg, &again);
	CHECK(st == SMTP_PATH_OK);
	CHECK(strcmp(again.addr, p->addr) == 0);
}

static void parse_line(char *line, size_t len)
{
	struct smtp_cmd cmd;
	struct smtp_path p;

	if (smtp_parse_command(line, len, &cmd) != SMTP_CMD_OK)
		return;
	switch (cmd.verb) {
	case SMTP_VERB_MAIL:
		if (smtp_parse_mail(cmd.arg, &p) == SMTP_PATH_OK)
			check_canonical(&p, 1);
		break;
	case SMTP_VERB_RCPT:
		if (smtp_parse_rcpt(cmd.arg, &p) == SMTP_PATH_OK) {
			CHECK(p.addr[0] != '\0');
			check_canonical(&p, 0);
		}
		break;
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
	case SMTP_VERB_LHLO:
		(void)smtp_helo_valid(cmd.arg);
		break;
	default:
		break;
	}
}

static void fuzz_lines(const char *in, size_t n, size_t chunk)
{
	static struct smtp_line l;
	size_t pos = 0, used;

	smtp_line_init(&l);
	while (pos < n) {
		size_t k = n - pos < chunk ? n - pos : chunk;
		enum smtp_line_status st = smtp_line_feed(&l, in + pos, k, &used);
		CHECK(used <= k && used > 0);
		CHECK(l.len <= SMTP_LINE_MAX + 1);
		if (st == SMTP_LINE_READY) {
			CHECK(l.len <= SMTP_LINE_MAX);
			parse_line(l.buf, l.len);
		}
		pos += used;
	}
}

struct data_out {
	char buf[SMTP_DATA_OUT_MAX(8192) + 8192];
	size_t len, consumed;
	int done;
};

static void data_run(const char *in, size_t n, size_t chunk, struct data_out *r)
{
	struct smtp_data d;
	char out[SMTP_DATA_OUT_MAX(8192)];

	smtp_data_init(&d);
	r->len = r->consumed = 0;
	r->done = 0;
	while (r->consumed < n && !r->done) {
		size_t k = n - r->consumed < chunk ? n - r->consumed : chunk;
		if (k > 8192)
			k = 8192;
		size_t outlen;
		size_t used = smtp_data_feed(&d, in + r->consumed, k, out, &outlen, &r->done);
		CHECK(used <= k);
		CHECK(r->done || used == k);
		CHECK(outlen <= SMTP_DATA_OUT_MAX(k));
		CHECK(outlen <= used + 1);
		memcpy(r->buf + r->len, out, outlen);
		r->len += outlen;
		r->consumed += used;
	}
}

static void fuzz_data(const char *in, size_t n, size_t chunk)
{
	static struct data_out whole, pieces;

	if (n > 8192)
		n = 8192;
	data_run(in, n, n ? n : 1, &whole);
	data_run(in, n, chunk, &pieces);
	CHECK(whole.done == pieces.done);
	CHECK(whole.consumed == pieces.consumed);
	CHECK(whole.len == pieces.len);
	CHECK(memcmp(whole.buf, pieces.buf, whole.len) == 0);
	CHECK(whole.len <= whole.consumed + 1);
	if (whole.done)
		CHECK(whole.consumed >= 3 && memcmp(in + whole.consumed - 3, ".\r\n", 3) == 0);
}

static void fuzz_reply(const char *in, size_t n)
{
	char text[1024], out[SMTP_REPLY_MAX];
	size_t k = n < sizeof(text) - 1 ? n : sizeof(text) - 1;

	memcpy(text, in, k);
	text[k] = '\0';
	size_t len = smtp_reply_line(out, 550, 0, "5.1.1", text);
	CHECK(len < SMTP_REPLY_MAX && len == strlen(out));
	CHECK(len >= 2 && out[len - 2] == '\r' && out[len - 1] == '\n');
	for (size_t i = 0; i + 2 < len; i++)
		CHECK(out[i] >= 0x20 && out[i] < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t chunk = (size_t)data[0] % 17 + 1;
	const char *in = (const char *)data + 1;
	size_t n = size - 1;

	fuzz_lines(in, n, chunk);
	fuzz_data(in, n, chunk);
	fuzz_reply(in, n);
	return 0;
}
