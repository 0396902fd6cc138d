/*
 * fuzz_qfile_read.c - libFuzzer target for the queue file reader
 * (src/queue/qfile.c): arbitrary bytes as a queue file must be refused or
 * parsed without a crash, and a parsed file must be consistent (message
 * inside the file, recipients with addresses, states in range, the delay
 * warning and finished times not negative, done lists normalized).  The
 * repair of a torn tail is run on a copy when the file parses.
 *
 * Not part of the meson build.  Build and run by hand:
 *   clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Isrc \
 *     tests/fuzz/fuzz_qfile_read.c src/queue/qfile.c src/queue/qid.c \
 *     src/lib/log.c src/lib/buf.c src/lib/xalloc.c src/lib/fsutil.c \
 *     -o /tmp/fuzz_qfile_read
 *   /tmp/fuzz_qfile_read -max_len=65536 -max_total_time=300
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "queue/qfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s\n", #c); abort(); } } while (0)

static int memfd_with(const uint8_t *data, size_t size)
{
	int fd = memfd_create("qfile", MFD_CLOEXEC);
	CHECK(fd >= 0);
	CHECK(size == 0 || write(fd, data, size) == (ssize_t)size);
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_with(data, size);
	struct qfile q;

	if (qfile_read(fd, &q) == 0) {
		CHECK(qid_valid(q.qid));
		CHECK(q.sender != NULL);
		CHECK(q.msg_offset >= 0 && (uint64_t)q.msg_offset + q.msg_size <= size);
		CHECK(q.end_offset > 0 && (uint64_t)q.end_offset <= size);
		CHECK(q.warned >= 0);
		CHECK(q.finished >= 0);
		for (size_t i = 0; i < q.nrcpt; i++) {
			CHECK(q.rcpt[i].address != NULL && q.rcpt[i].address[0] != '\0');
			CHECK(q.rcpt[i].state >= RCPT_PENDING && q.rcpt[i].state <= RCPT_REFUSED);
			CHECK(q.rcpt[i].attempts >= 0);
			/* a done list is normalized: adding itself changes nothing */
			char *d = q.rcpt[i].done ? strdup(q.rcpt[i].done) : NULL;
			CHECK(d == NULL || qfile_done_union(&d, q.rcpt[i].done) == 0);
			free(d);
		}
		/* cutting a torn tail must leave a file that reads the same */
		CHECK(qfile_repair_tail(fd, &q) == 0);
		struct qfile again;
		CHECK(qfile_read(fd, &again) == 0);
		CHECK(again.nrcpt == q.nrcpt && again.end_offset == q.end_offset);
		CHECK(again.warned == q.warned);
		CHECK(again.finished == q.finished);
		for (size_t i = 0; i < q.nrcpt; i++)
			CHECK(again.rcpt[i].state == q.rcpt[i].state &&
			    (again.rcpt[i].done == NULL) == (q.rcpt[i].done == NULL) &&
			    (q.rcpt[i].done == NULL || strcmp(again.rcpt[i].done, q.rcpt[i].done) == 0));
		qfile_free(&again);
		qfile_free(&q);
	}
	close(fd);
	return 0;
}
