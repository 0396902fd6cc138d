/*
 * fuzz_message_id.c - libFuzzer target for the relay's scan of a stored
 * message's header section for a Message-ID field (message_id_prepare in
 * src/relay/message_id.c), which decides whether a list manager's copy
 * gets one.  The message comes from outside.  message_id_prepare needs no
 * more of a relay job than the queue file's fd, the message's offset and
 * size in it and the queue id, so the job is made here as the unit test
 * makes it; the file is a memfd holding a prefix (as a queue file's
 * record before the message), the message, and after it text with a
 * Message-ID that must not be seen.  Property checks:
 *   - it returns 0 (the file is whole) and adds a header exactly when a
 *     simple model finds no line starting with "Message-ID:" (any case)
 *     before the first empty line, whatever the chunks the scan reads
 *     (messages up to -max_len cross SCAN_CHUNK = 8192);
 *   - what it adds is "Message-ID: <QID.mailprocd@HOST>\r\n" with QID and
 *     HOST the ones given when they are 1-255 letters, digits, '.', '-'
 *     or '_', else "unknown" and "localhost": one line, whatever the input;
 *   - no read beyond the message, no leak.
 *
 * Not part of the meson build.  Build and run by hand:
 *   clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Isrc \
 *     tests/fuzz/fuzz_message_id.c src/relay/message_id.c src/lib/xalloc.c \
 *     src/lib/log.c -o /tmp/fuzz_message_id
 *   mkdir -p /tmp/corpus_message_id
 *   /tmp/fuzz_message_id -max_len=20000 -max_total_time=60 \
 *     /tmp/corpus_message_id tests/fuzz/seeds/message_id
 * Input: byte 0 the prefix length (0-255), byte 1 the queue id's length
 * (0x80 set: no queue id), byte 2 the host name's length (0x80 set: none),
 * then the queue id, the host name and the message.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "relay/relay_private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s\n", #c); abort(); } } while (0)

static const char after[] = "Message-ID: <after@the.message>\n\n";

/* A line of the header section starts with "message-id:" (any case). */
static int model_has_message_id(const char *m, size_t n)
{
	static const char name[] = "message-id:";
	size_t i = 0;
	while (i < n && m[i] != '\n') {
		size_t k = 0;
		while (k < sizeof(name) - 1 && i + k < n &&
		    tolower((unsigned char)m[i + k]) == name[k])
			k++;
		if (k == sizeof(name) - 1)
			return 1;
		const char *nl = memchr(m + i, '\n', n - i);
		if (nl == NULL)
			return 0;
		i = (size_t)(nl - m) + 1;
	}
	return 0;
}

static int model_word_ok(const char *s)
{
	if (s == NULL)
		return 0;
	size_t n = strlen(s);
	if (n == 0 || n > 255)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '.' || c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

static void write_all(int fd, const void *p, size_t len)
{
	CHECK(write(fd, p, len) == (ssize_t)len);
}

/* A NUL-terminated copy of len bytes, or NULL when absent. */
static char *take(const uint8_t **p, size_t *left, uint8_t spec)
{
	if (spec & 0x80)
		return NULL;
	size_t len = spec < *left ? spec : *left;
	char *s = malloc(len + 1);
	CHECK(s != NULL);
	memcpy(s, *p, len);
	s[len] = '\0';
	*p += len;
	*left -= len;
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char prefix[256];

	if (size < 3)
		return 0;
	size_t plen = data[0];
	const uint8_t *p = data + 3;
	size_t left = size - 3;
	char *qid = take(&p, &left, data[1]);
	char *host = take(&p, &left, data[2]);
	const char *msg = (const char *)p;
	size_t len = left;

	memset(prefix, 'P', sizeof(prefix));
	int fd = memfd_create("fuzz_message_id", MFD_CLOEXEC);
	CHECK(fd >= 0);
	write_all(fd, prefix, plen);
	write_all(fd, msg, len);
	write_all(fd, after, sizeof(after) - 1);

	struct relay_job job;
	memset(&job, 0, sizeof(job));
	job.fd = fd;
	job.msg_offset = plen;
	job.msg_size = len;
	job.qid = qid;
	CHECK(message_id_prepare(&job, host) == 0);
	close(fd);

	if (model_has_message_id(msg, len)) {
		CHECK(job.add_header == NULL);
	} else {
		CHECK(job.add_header != NULL);
		char *want;
		CHECK(asprintf(&want, "Message-ID: <%s.mailprocd@%s>\r\n",
		    model_word_ok(qid) ? qid : "unknown",
		    model_word_ok(host) ? host : "localhost") > 0);
		if (strcmp(job.add_header, want) != 0) {
			fprintf(stderr, "added \"%s\", expected \"%s\"\n", job.add_header, want);
			abort();
		}
		size_t n = strlen(job.add_header);
		CHECK(memchr(job.add_header, '\n', n - 1) == NULL);
		CHECK(memchr(job.add_header, '\r', n - 2) == NULL);
		free(want);
		free(job.add_header);
	}
	free(qid);
	free(host);
	return 0;
}
