/*
 * msgcopy.c - copy a queued message into a mailbox file descriptor, plain
 * (maildir) or as an mboxrd entry.  See msgcopy.h.
 */
#include "deliver/msgcopy.h"
#include "lib/fsutil.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COPY_CHUNK (128 * 1024)
#define OUT_CHUNK (64 * 1024)
#define CFR_MAX ((size_t)1 << 30)

/* Header values come from the envelope: keep a stray CR or LF from
 * starting a header of its own. */
static void put_header_value(struct buf *b, const char *s)
{
	for (; *s; s++)
		buf_putc(b, ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s);
}

void msgcopy_prefix(const struct delivery_msg *m, struct buf *b)
{
	buf_puts(b, "Return-Path: <");
	put_header_value(b, m->sender ? m->sender : "");
	buf_puts(b, ">\nDelivered-To: ");
	put_header_value(b, m->recipient ? m->recipient : "");
	buf_putc(b, '\n');
	/* our own header lines: only CR and NUL are kept out */
	for (const char *h = m->extra_headers; h && *h; h++)
		if (*h != '\r')
			buf_putc(b, *h);
	if (m->extra_headers && *m->extra_headers && b->data[b->len - 1] != '\n')
		buf_putc(b, '\n');
}

void msgcopy_fail_result(struct delivery_result *r, enum msgcopy_side side, int err,
    const char *path)
{
	if (side == MSGCOPY_READ)
		deliver_result_set(r, DELIVERY_TEMPFAIL, "4.3.0", "read queue file: %s",
		    strerror(err));
	else
		deliver_errno_result(r, err, "write", path);
}

static int fail(enum msgcopy_side *side, enum msgcopy_side which, int err)
{
	*side = which;
	errno = err;
	return -1;
}

/* Copy the message body with copy_file_range; 1 if the file systems do
 * not support it (nothing was written then, or the copy can go on with
 * read/write from *off and *left), 0 when done, -1 on error. */
static int copy_body_cfr(const struct delivery_msg *m, int fd, loff_t *off, uint64_t *left,
    enum msgcopy_side *side)
{
	while (*left > 0) {
		size_t want = *left > CFR_MAX ? CFR_MAX : (size_t)*left;
		ssize_t n = copy_file_range(m->qfd, off, fd, NULL, want, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
			    errno == EOPNOTSUPP)
				return 1;
			return fail(side, MSGCOPY_WRITE, errno);
		}
		if (n == 0)     /* the queue file is shorter than it says */
			return fail(side, MSGCOPY_READ, EIO);
		*left -= (uint64_t)n;
	}
	return 0;
}

static int copy_body_rw(const struct delivery_msg *m, int fd, off_t off, uint64_t left,
    enum msgcopy_side *side)
{
	char *chunk = xmalloc(COPY_CHUNK);
	int rc = 0;

	while (left > 0 && rc == 0) {
		size_t n = left > COPY_CHUNK ? COPY_CHUNK : (size_t)left;
		if (pread_all(m->qfd, chunk, n, off) < 0)
			rc = fail(side, MSGCOPY_READ, errno);
		else if (write_all(fd, chunk, n) < 0)
			rc = fail(side, MSGCOPY_WRITE, errno);
		off += (off_t)n;
		left -= n;
	}
	free(chunk);
	return rc;
}

int msgcopy_plain(const struct delivery_msg *m, int fd, enum msgcopy_side *side)
{
	struct buf prefix = BUF_INIT;
	loff_t off = m->msg_offset;
	uint64_t left = m->msg_size;

	*side = MSGCOPY_OK;
	msgcopy_prefix(m, &prefix);
	int rc = write_all(fd, prefix.data, prefix.len);
	buf_free(&prefix);
	if (rc < 0)
		return fail(side, MSGCOPY_WRITE, errno);
	rc = copy_body_cfr(m, fd, &off, &left, side);
	if (rc <= 0)
		return rc;
	return copy_body_rw(m, fd, off, left, side);
}

/* Buffered output for the mbox entry, remembering the last byte written. */
struct outbuf {
	int fd;
	char *data;
	size_t len;
	char last;
};

static int out_flush(struct outbuf *o)
{
	if (o->len > 0 && write_all(o->fd, o->data, o->len) < 0)
		return -1;
	o->len = 0;
	return 0;
}

static int out_put(struct outbuf *o, const char *p, size_t n)
{
	if (n == 0)
		return 0;
	o->last = p[n - 1];
	if (n > OUT_CHUNK - o->len) {
		if (out_flush(o) < 0)
			return -1;
		if (n >= OUT_CHUNK)
			return write_all(o->fd, p, n);
	}
	memcpy(o->data + o->len, p, n);
	o->len += n;
	return 0;
}

/* mboxrd quoting state: at a line start, '>'s pass through and up to four
 * bytes of "From " are held back until the line is known. */
struct quoter {
	int in_line;            /* past the line start: copy up to '\n' */
	size_t matched;         /* bytes of "From " held back */
};

static const char from_[] = "From ";

static int quote_chunk(struct quoter *q, struct outbuf *o, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (q->in_line) {
			const char *nl = memchr(p + i, '\n', n - i);
			size_t end = nl ? (size_t)(nl - p) + 1 : n;
			if (out_put(o, p + i, end - i) < 0)
				return -1;
			i = end;
			q->in_line = nl == NULL;
		} else if (q->matched == 0 && p[i] == '>') {
			if (out_put(o, p + i++, 1) < 0)
				return -1;
		} else if (p[i] == from_[q->matched]) {
			i++;
			if (++q->matched == sizeof(from_) - 1) {
				if (out_put(o, ">From ", 6) < 0)
					return -1;
				q->matched = 0;
				q->in_line = 1;
			}
		} else {
			/* not a From_ line: release what was held, go on from p[i] */
			if (out_put(o, from_, q->matched) < 0)
				return -1;
			q->matched = 0;
			q->in_line = 1;
		}
	}
	return 0;
}

static void format_from_line(const struct delivery_msg *m, time_t now, struct buf *b)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;
	const char *s = m->sender && m->sender[0] ? m->sender : "MAILER-DAEMON";

	if (gmtime_r(&now, &tm) == NULL) {
		time_t epoch = 0;
		gmtime_r(&epoch, &tm);
	}
	buf_puts(b, "From ");
	for (; *s; s++)
		buf_putc(b, ((unsigned char)*s <= 0x20 || *s == 0x7f) ? '_' : *s);
	buf_printf(b, " %s %s %2d %02d:%02d:%02d %d\n", days[tm.tm_wday % 7],
	    months[tm.tm_mon % 12], tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    tm.tm_year + 1900);
}

static int mbox_head(const struct delivery_msg *m, struct outbuf *o, time_t now)
{
	struct buf head = BUF_INIT;
	format_from_line(m, now, &head);
	msgcopy_prefix(m, &head);
	int rc = out_put(o, head.data, head.len);
	buf_free(&head);
	return rc;
}

static int mbox_body(const struct delivery_msg *m, struct outbuf *o, enum msgcopy_side *side)
{
	struct quoter q = { 0, 0 };
	char *chunk = xmalloc(COPY_CHUNK);
	off_t off = m->msg_offset;
	uint64_t left = m->msg_size;
	int rc = 0;

	while (left > 0 && rc == 0) {
		size_t n = left > COPY_CHUNK ? COPY_CHUNK : (size_t)left;
		if (pread_all(m->qfd, chunk, n, off) < 0)
			rc = fail(side, MSGCOPY_READ, errno);
		else if (quote_chunk(&q, o, chunk, n) < 0)
			rc = fail(side, MSGCOPY_WRITE, errno);
		off += (off_t)n;
		left -= n;
	}
	free(chunk);
	if (rc == 0 && out_put(o, from_, q.matched) < 0)
		rc = fail(side, MSGCOPY_WRITE, errno);
	return rc;
}

int msgcopy_mbox(const struct delivery_msg *m, int fd, time_t now, enum msgcopy_side *side)
{
	struct outbuf o = { fd, xmalloc(OUT_CHUNK), 0, '\n' };
	int rc;

	*side = MSGCOPY_OK;
	if (mbox_head(m, &o, now) < 0)
		rc = fail(side, MSGCOPY_WRITE, errno);
	else
		rc = mbox_body(m, &o, side);
	if (rc == 0 && o.last != '\n' && out_put(&o, "\n", 1) < 0)
		rc = fail(side, MSGCOPY_WRITE, errno);
	if (rc == 0 && (out_put(&o, "\n", 1) < 0 || out_flush(&o) < 0))
		rc = fail(side, MSGCOPY_WRITE, errno);
	int saved = errno;
	free(o.data);
	errno = saved;
	return rc;
}
