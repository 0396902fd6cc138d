/*
 * ctl_queue_show.c - `mailprocctl queue show ID`: the envelope, the state
 * of each recipient, an empty line, then the message as queued.
 *
 *   id: QID
 *   queue: active|deferred|corrupt
 *   arrival: YYYY-MM-DD HH:MM:SS +ZZZZ
 *   age: AGE
 *   client: helo=HELO address=ADDR protocol=PROTO
 *   sender: <SENDER>
 *   body: 7BIT|8BITMIME
 *   size: BYTES
 *   delay warning: YYYY-MM-DD HH:MM:SS +ZZZZ    (only once one was sent)
 *   recipient: <RCPT> state=STATE attempts=N [error="TEXT"]
 *
 *   (message)
 */
#include "conf/config.h"
#include "ctl/ctl.h"
#include "lib/fsutil.h"
#include "lib/xalloc.h"
#include "queue/qfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define COPY_CHUNK 65536

/* Find and open the message; its queue in *dir.  -1 (reported) if none. */
static int find_message(const char *queue_dir, const char *qid, const char **dir)
{
	for (int i = 0; i < CTL_QUEUE_NDIRS; i++) {
		int fd = ctl_queue_open(queue_dir, ctl_queue_dirs[i], qid);
		if (fd >= 0) {
			*dir = ctl_queue_dirs[i];
			return fd;
		}
		if (errno != ENOENT) {
			ctl_error("queue show: %s/%s/%s: %s", queue_dir, ctl_queue_dirs[i], qid,
			    strerror(errno));
			return -1;
		}
	}
	ctl_error("queue show: %s: no such message", qid);
	return -1;
}

/* A unix time as local date and time (the number if it cannot be). */
static void format_time(int64_t when, char *out, size_t outlen)
{
	time_t t = (time_t)when;
	struct tm tm;
	if (localtime_r(&t, &tm) == NULL || strftime(out, outlen, "%Y-%m-%d %H:%M:%S %z", &tm) == 0)
		snprintf(out, outlen, "%lld", (long long)when);
}

static void print_envelope(const struct qfile *q, const char *dir)
{
	char when[64], age[32];
	format_time(q->arrival_sec, when, sizeof(when));
	ctl_format_age((int64_t)time(NULL) - q->arrival_sec, age, sizeof(age));

	printf("id: %s\nqueue: %s\narrival: %s\nage: %s\n", q->qid, dir, when, age);
	printf("client: helo=%s address=%s protocol=%s\n", q->helo, q->client_addr,
	    q->protocol);
	printf("sender: <%s>\nbody: %s\nsize: %llu\n", q->sender,
	    q->eightbit ? "8BITMIME" : "7BIT", (unsigned long long)q->msg_size);
	if (q->warned) {
		format_time(q->warned, when, sizeof(when));
		printf("delay warning: %s\n", when);
	}
	for (size_t i = 0; i < q->nrcpt; i++)
		ctl_print_recipient("recipient: ", &q->rcpt[i]);
	putchar('\n');
}

static int copy_message(int fd, const struct qfile *q)
{
	char *chunk = xmalloc(COPY_CHUNK);
	uint64_t left = q->msg_size;
	off_t off = q->msg_offset;
	int r = 0;

	fflush(stdout);
	while (left > 0 && r == 0) {
		size_t n = left < COPY_CHUNK ? (size_t)left : COPY_CHUNK;
		if (pread_all(fd, chunk, n, off) < 0) {
			ctl_error("queue show: read: %s", strerror(errno));
			r = -1;
		} else if (write_all(STDOUT_FILENO, chunk, n) < 0) {
			ctl_error("queue show: write: %s", strerror(errno));
			r = -1;
		}
		left -= n;
		off += (off_t)n;
	}
	free(chunk);
	return r;
}

int ctl_queue_show(const struct config *cfg, char **args, int nargs)
{
	const char *qid = args[0];
	const char *dir;
	struct qfile q;

	if (!qid_valid(qid) || strlen(qid) >= QID_MAX) {
		ctl_error("queue show: bad queue id \"%s\"", qid);
		return CTL_ERROR;
	}
	int fd = find_message(cfg->queue_dir, qid, &dir);
	if (fd < 0)
		return CTL_ERROR;
	if (qfile_read(fd, &q) < 0) {
		ctl_error("queue show: %s/%s/%s: %s", cfg->queue_dir, dir, qid,
		    errno == EBADMSG ? "malformed or uncommitted" : strerror(errno));
		close(fd);
		return CTL_ERROR;
	}
	print_envelope(&q, dir);
	int r = copy_message(fd, &q);
	qfile_free(&q);
	close(fd);
	return r < 0 ? CTL_ERROR : CTL_OK;
}
