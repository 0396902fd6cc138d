/*
 * fuzz_policy_request.c - libFuzzer target for the Postfix policy request
 * parser (src/policy/policy_request.c), with property checks:
 *   - feeding the input whole and in chunks (sizes picked by the first
 *     byte) gives the same requests, the same values and the same error;
 *   - the parser never consumes more than it was given, and an error says
 *     why;
 *   - every request it completes had request=smtpd_access_policy, at most
 *     POLICY_MAX_ATTRS attributes, and values of at most POLICY_LINE_MAX
 *     bytes without control characters.
 *
 * Not part of the meson build.  Build and run by hand:
 *   clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Isrc \
 *     tests/fuzz/fuzz_policy_request.c src/policy/policy_request.c \
 *     src/lib/buf.c src/lib/xalloc.c src/lib/log.c -o /tmp/fuzz_policy_request
 *   /tmp/fuzz_policy_request -max_len=16384 -max_total_time=300
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "policy/policy_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s\n", #c); abort(); } } while (0)

static void check_request(const struct policy_request *r)
{
	CHECK(strcmp(policy_request_get(r, PA_REQUEST), "smtpd_access_policy") == 0);
	CHECK(r->nattrs >= 1 && r->nattrs <= POLICY_MAX_ATTRS);
	for (int a = 0; a < PA_COUNT; a++) {
		const char *v = policy_request_get(r, (enum policy_attr)a);
		size_t len = strlen(v);
		CHECK(len <= POLICY_LINE_MAX);
		for (size_t i = 0; i < len; i++)
			CHECK((unsigned char)v[i] >= 0x20 && (unsigned char)v[i] != 0x7f);
	}
	(void)policy_request_number(r, PA_SIZE);
}

/* Parse all of data in chunks of `chunk`; the requests' values go to
 * out (one line per value, a blank line after each request), the error
 * (or "ok") at the end. */
static void parse(const uint8_t *data, size_t size, size_t chunk, struct buf *out)
{
	struct policy_parser p;
	size_t off = 0;
	const char *error = NULL;

	policy_parser_init(&p);
	while (off < size && error == NULL) {
		size_t n = size - off < chunk ? size - off : chunk, used;
		enum policy_parse_status st = policy_parser_feed(&p, (const char *)data + off, n,
		    &used);
		if (st == POLICY_PARSE_ERROR) {
			CHECK(p.error != NULL);
			error = p.error;
			break;
		}
		CHECK(used <= n);
		CHECK(st == POLICY_PARSE_DONE || used == n);
		off += used;
		if (st == POLICY_PARSE_DONE) {
			struct policy_request r;
			policy_parser_take(&p, &r);
			check_request(&r);
			for (int a = 0; a < PA_COUNT; a++)
				buf_printf(out, "%d=%s\n", a, policy_request_get(&r, (enum policy_attr)a));
			buf_printf(out, "n=%d\n\n", r.nattrs);
			policy_request_free(&r);
		}
	}
	buf_printf(out, "end=%s pending=%d\n", error ? error : "ok",
	    error ? 0 : policy_parser_pending(&p));
	policy_parser_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf whole = BUF_INIT, chunked = BUF_INIT;
	size_t chunk;

	if (size == 0)
		return 0;
	chunk = (size_t)data[0] % 64 + 1;
	data++;
	size--;
	parse(data, size, size ? size : 1, &whole);
	parse(data, size, chunk, &chunked);
	CHECK(whole.len == chunked.len && memcmp(whole.data, chunked.data, whole.len) == 0);
	buf_free(&whole);
	buf_free(&chunked);
	return 0;
}
