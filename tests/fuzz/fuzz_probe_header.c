/*
 * fuzz_probe_header.c - libFuzzer target for mailmond's probe header
 * parser (probe_msg_parse in src/mailmond/probe_msg.c), which reads the
 * start of every file that lands in a probe maildir: anybody who can send
 * mail there chooses the bytes.  Property checks:
 *   - the parser reads only the len bytes it is given (the input is copied
 *     to a buffer of exactly that size) and always says PROBE_FOUND,
 *     PROBE_NONE or PROBE_BAD, with a reason for PROBE_BAD;
 *   - what it finds is a valid probe: a name mm_probe_name_ok accepts and
 *     a run of 16 lower-case hex digits; the message probe_msg_build makes
 *     from it parses back to the same probe;
 *   - only the header section counts: the input followed by an empty line
 *     and another probe header gives the same result.
 *
 * Not part of the meson build.  Build and run by hand:
 *   clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Isrc \
 *     tests/fuzz/fuzz_probe_header.c src/mailmond/probe_msg.c \
 *     src/mailmond/mm_config.c src/lib/lmtp_dest.c src/lib/fsutil.c \
 *     src/lib/buf.c src/lib/xalloc.c src/lib/log.c -o /tmp/fuzz_probe_header
 *   mkdir -p /tmp/corpus_probe_header
 *   /tmp/fuzz_probe_header -max_len=4096 -max_total_time=60 \
 *     /tmp/corpus_probe_header tests/fuzz/seeds/probe_header
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "mailmond/probe_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s\n", #c); abort(); } } while (0)

static const char other[] = "\n\nX-Mailmond-Probe: name=zz; seq=1; sent=1; run=0000000000000000\n";

static int same_id(const struct probe_id *a, const struct probe_id *b)
{
	return strcmp(a->name, b->name) == 0 && a->seq == b->seq &&
	    a->sent_usec == b->sent_usec && strcmp(a->run, b->run) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size ? size : 1);
	struct probe_id id, again;
	const char *why = NULL;

	memcpy(text, data, size);
	enum probe_parse_result r = probe_msg_parse(text, size, &id, &why);
	CHECK(r == PROBE_FOUND || r == PROBE_NONE || r == PROBE_BAD);
	if (r == PROBE_BAD)
		CHECK(why != NULL && *why != '\0');

	if (r == PROBE_FOUND) {
		CHECK(mm_probe_name_ok(id.name, strlen(id.name)));
		CHECK(strlen(id.run) == PROBE_RUN_LEN);
		for (size_t i = 0; i < PROBE_RUN_LEN; i++)
			CHECK(isxdigit((unsigned char)id.run[i]) && !isupper((unsigned char)id.run[i]));
		struct buf b = BUF_INIT;
		probe_msg_build(&b, &id, "mailmond@example.test", "mon@example.test", "example.test");
		CHECK(probe_msg_parse(b.data, b.len, &again, &why) == PROBE_FOUND);
		CHECK(same_id(&id, &again));
		buf_free(&b);
	}

	/* what follows the header section does not matter */
	char *longer = malloc(size + sizeof(other) - 1);
	memcpy(longer, data, size);
	memcpy(longer + size, other, sizeof(other) - 1);
	enum probe_parse_result r2 = probe_msg_parse(longer, size + sizeof(other) - 1, &again, &why);
	CHECK(r2 == r);
	if (r == PROBE_FOUND)
		CHECK(same_id(&id, &again));
	free(longer);
	free(text);
	return 0;
}
