/*
 * fuzz_mime.c - libFuzzer target for the MIME analyser in src/mime: any
 * bytes as a message, with property checks (the call succeeds, the body
 * text stays within the limit and its reported length, everything is
 * valid UTF-8, header values hold no control bytes but TAB and are
 * trimmed, a headers-only parse gives the same headers).
 *
 * Not part of the meson build.  Build and run by hand:
 *   clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Isrc \
 *     tests/fuzz/fuzz_mime.c src/mime/[a-z]*.c \
 *     src/lib/log.c src/lib/buf.c src/lib/xalloc.c -o /tmp/fuzz_mime
 *   /tmp/fuzz_mime -max_len=65536 -max_total_time=300
 * The first input byte picks the body limit; the rest is the message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime/mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s\n", #c); abort(); } } while (0)

static int valid_utf8(const unsigned char *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char c = p[i];
		size_t k;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			k = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 4;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (i + k > n)
			return 0;
		for (size_t j = 1; j < k; j++) {
			if ((p[i + j] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + j] & 0x3f);
		}
		if ((k == 3 && cp < 0x800) || (k == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += k;
	}
	return 1;
}

static void check_headers(const struct mime_message *m)
{
	CHECK(m->nheaders <= MIME_MAX_HEADERS);
	CHECK((m->nheaders == 0) == (m->headers == NULL));
	for (size_t i = 0; i < m->nheaders; i++) {
		const char *name = m->headers[i].name;
		const char *v = m->headers[i].value;
		size_t n = strlen(v);
		CHECK(name[0] != '\0' && strchr(name, ':') == NULL);
		for (const char *q = name; *q; q++)
			CHECK((unsigned char)*q > 0x20 && (unsigned char)*q < 0x7f);
		CHECK(valid_utf8((const unsigned char *)v, n));
		for (size_t j = 0; j < n; j++) {
			unsigned char c = (unsigned char)v[j];
			CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
		}
		if (n > 0)
			CHECK(v[0] != ' ' && v[0] != '\t' && v[n - 1] != ' ' && v[n - 1] != '\t');
		if (i < 64)     /* each lookup is linear */
			CHECK(mime_header_first(m, name) != NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t limits[] = { 0, 1, 2, 3, 7, 16, 100, 1000, 65536, (size_t)-1 };
	struct mime_message m, h;

	if (size < 1)
		return 0;
	size_t limit = limits[data[0] % (sizeof(limits) / sizeof(limits[0]))];
	const char *msg = (const char *)data + 1;
	size_t len = size - 1;

	CHECK(mime_parse(msg, len, limit, 0, &m) == 0);
	CHECK(m.body_text != NULL);
	CHECK(m.body_text_len <= limit);
	CHECK(strlen(m.body_text) == m.body_text_len);
	CHECK(valid_utf8((const unsigned char *)m.body_text, m.body_text_len));
	CHECK(m.body_truncated == 0 || m.body_truncated == 1);
	if (limit == (size_t)-1)
		CHECK(!m.body_truncated);
	check_headers(&m);

	CHECK(mime_parse(msg, len, limit, MIME_HEADERS_ONLY, &h) == 0);
	CHECK(h.body_text_len == 0 && h.body_text[0] == '\0' && !h.body_truncated);
	CHECK(h.nheaders == m.nheaders);
	for (size_t i = 0; i < m.nheaders; i++) {
		CHECK(strcmp(h.headers[i].name, m.headers[i].name) == 0);
		CHECK(strcmp(h.headers[i].value, m.headers[i].value) == 0);
	}
	mime_message_free(&h);
	mime_message_free(&m);
	return 0;
}
