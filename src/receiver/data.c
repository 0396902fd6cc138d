/*
 * data.c - DATA: the message goes into a queue file as it arrives.
 *
 * At DATA the queue file is created with the envelope and the Received:
 * header; the bytes that follow run through the DATA state machine
 * (end of data, dot-unstuffing, CRLF -> LF) and are appended at once, so a
 * message is never held in memory.  A message over max_message_size, or one
 * whose queue file could not be written, is read to its end and discarded,
 * then refused.  While mail comes fast the queue file is a spare made
 * ahead (queue/qspares.c), whose name is most often durable already, so
 * that the commit waits for the file's fsync alone.  A message is
 * acknowledged only after qwriter_commit() made it durable.  The commit
 * runs on the commit pool; meanwhile the session reads no further
 * commands (the replies must come in order), and if the client goes away
 * the commit still finishes and the qmgr still hears of the message.
 * LMTP answers once per recipient, SMTP once.
 * A committed message is counted in the receiver's figures then, whether
 * or not its client is still there for the reply.
 */
#include "receiver/receiver_private.h"
#include "receiver/commit_pool.h"
#include "proto/smtp_received.h"
#include "queue/qfile.h"
#include "lib/buf.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Input bytes handled per step (the output buffer lives on the stack). */
#define DATA_CHUNK 16384

/* A refusal of the message: SMTP one reply, LMTP one per accepted
 * recipient (each counted). */
static void refuse_to_all(struct session *s, enum fig_rejection reason, int code,
    const char *text)
{
	if (!s->lmtp) {
		session_refuse(s, reason, code, "%s", text);
		return;
	}
	for (size_t i = 0; i < s->tx.nrcpts; i++)
		session_refuse(s, reason, code, "<%s> %s", s->tx.rcpts[i], text);
}

/* A queue failure: 452 4.3.1 when the disk or quota is full, else 451. */
static void reply_queue_error(struct session *s, int err, int to_all)
{
	int full = err == ENOSPC || err == EDQUOT;
	int code = full ? 452 : 451;
	enum fig_rejection reason = full ? FR_QUEUE_FULL : FR_QUEUE_ERROR;
	const char *text = full ? "Insufficient system storage" :
	    "Error: queue file write error";

	if (to_all)
		refuse_to_all(s, reason, code, text);
	else
		session_refuse(s, reason, code, "%s", text);
}

static int write_received(struct session *s, struct qwriter *w)
{
	struct buf b = BUF_INIT;
	struct smtp_received rec = {
		.helo = s->helo,
		.client = s->client,
		.hostname = s->r->hostname,
		.protocol = s->protocol,
		.qid = qwriter_qid(w),
		.rcpt = s->tx.nrcpts == 1 ? s->tx.rcpts[0] : NULL,
		.when = time(NULL),
	};
	smtp_received_format(&b, &rec);
	int rc = qwriter_write(w, b.data, b.len);
	buf_free(&b);
	return rc;
}

/* The recipients for the queue file: each address once (compared without
 * regard to case, as lookups are), so a client that names a recipient
 * twice does not get two copies delivered.  LMTP still answers every RCPT;
 * qindex maps each transaction recipient to its queue index.  Quadratic,
 * but nrcpts is bounded by max_recipients. */
static const char **unique_rcpts(const struct transaction *tx, size_t *n, size_t *qindex)
{
	const char **out = xcalloc(tx->nrcpts ? tx->nrcpts : 1, sizeof(*out));

	*n = 0;
	for (size_t i = 0; i < tx->nrcpts; i++) {
		size_t k = 0;
		while (k < *n && strcasecmp(out[k], tx->rcpts[i]) != 0)
			k++;
		if (k == *n)
			out[(*n)++] = tx->rcpts[i];
		qindex[i] = k;
	}
	return out;
}

void data_begin(struct session *s)
{
	const char *dir = s->r->cfg->queue_dir;
	struct transaction *tx = &s->tx;
	size_t nunique;
	size_t *qindex = xcalloc(tx->nrcpts ? tx->nrcpts : 1, sizeof(*qindex));
	const char **rcpts = unique_rcpts(tx, &nunique, qindex);
	char spare_qid[QID_MAX];
	uint64_t ticket;
	int spare = receiver_take_spare(s->r, spare_qid, &ticket);
	int flags = tx->eightbit ? QW_8BITMIME : 0;
	struct qwriter *w = spare >= 0 ?
	    qwriter_open_spare(dir, spare_qid, spare, &s->r->incoming_sync, ticket, s->helo,
	    s->client, s->protocol, tx->sender, rcpts, nunique, flags) :
	    qwriter_open(dir, s->helo, s->client, s->protocol, tx->sender, rcpts, nunique, flags);

	free(rcpts);

	if (w == NULL) {
		int err = errno;
		log_warn("cannot create a queue file in %s: %s", dir, strerror(err));
		reply_queue_error(s, err, 0);
		free(qindex);
		return;
	}
	if (spare < 0) {
		receiver_no_spare_taken(s->r, qwriter_qid(w));
		if (s->r->incoming_sync_open)
			qwriter_share_dir_sync(w, &s->r->incoming_sync);
	}
	if (write_received(s, w) < 0) {
		int err = errno;
		log_warn("%s: cannot write to the queue file: %s", qwriter_qid(w),
		    strerror(err));
		qwriter_abort(w);
		reply_queue_error(s, err, 0);
		free(qindex);
		return;
	}
	memset(&s->data, 0, sizeof(s->data));
	s->data.active = 1;
	s->data.qw = w;
	s->data.qindex = qindex;
	s->data.over = xcalloc(tx->nrcpts ? tx->nrcpts : 1, 1);
	smtp_data_init(&s->data.machine);
	session_reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
}

static void drop_writer(struct data_stream *d)
{
	if (d->qw != NULL)
		qwriter_abort(d->qw);
	d->qw = NULL;
}

static void data_free_tables(struct data_stream *d)
{
	free(d->qindex);
	free(d->over);
	d->qindex = NULL;
	d->over = NULL;
}

/* Recipients whose entry's maxsize= the message exceeds.  Returns how many
 * transaction recipients remain; those over the limit are recorded in the
 * queue file as refused (LMTP: they get 552 now) or bounced (SMTP: one
 * reply for all, so they get a bounce). */
static size_t apply_maxsize(struct session *s)
{
	struct data_stream *d = &s->data;
	struct transaction *tx = &s->tx;
	size_t left = 0;
	char detail[160];

	for (size_t i = 0; i < tx->nrcpts; i++) {
		d->over[i] = tx->maxsize[i] > 0 && d->size > tx->maxsize[i];
		left += !d->over[i];
	}
	if (left == 0 || left == tx->nrcpts)
		return left;
	for (size_t i = 0; i < tx->nrcpts; i++) {
		if (!d->over[i])
			continue;
		snprintf(detail, sizeof(detail), "5.3.4 message of %llu bytes exceeds the "
		    "recipient's limit of %llu bytes", (unsigned long long)d->size,
		    (unsigned long long)tx->maxsize[i]);
		log_info("%s: to=<%s> %s", qwriter_qid(d->qw), tx->rcpts[i], detail);
		if (qwriter_mark_done(d->qw, d->qindex[i], s->lmtp ? RCPT_REFUSED : RCPT_BOUNCED,
		    detail) < 0)
			panic("qwriter_mark_done: %s", strerror(errno));
	}
	return left;
}

/* Message bytes after unstuffing and line end conversion. */
static void data_store(struct session *s, const char *p, size_t n)
{
	struct data_stream *d = &s->data;

	d->size += n;
	if (!d->too_big && d->size > s->r->cfg->max_message_size) {
		d->too_big = 1;
		drop_writer(d);
	}
	if (d->qw == NULL || n == 0)
		return;
	if (qwriter_write(d->qw, p, n) < 0) {
		d->error = errno;
		log_warn("%s: cannot write to the queue file: %s", qwriter_qid(d->qw),
		    strerror(d->error));
		drop_writer(d);
	}
}

/* A commit on its way through the pool. */
struct pending_commit {
	struct commit_req req;
	struct receiver *r;
	struct session *s;              /* NULL once the session is gone */
	char qid[QID_MAX];
	unsigned long long size;
	enum fig_protocol proto;        /* for the figures, which count */
	size_t nrcpts;                  /* the recipients not over their maxsize= */
};

/* The message is durable (or not): answer, if anyone is still there. */
static void commit_finished(struct pending_commit *pc)
{
	struct session *s = pc->s;
	int err = pc->req.error;

	if (err == 0) {
		receiver_notify_qmgr(pc->r, pc->qid);
		metrics_inc(&metrics_receiver->messages[pc->proto], 1);
		metrics_inc(&metrics_receiver->bytes[pc->proto], pc->size);
		metrics_inc(&metrics_receiver->recipients[pc->proto], pc->nrcpts);
	}
	if (s == NULL) {
		if (err == 0)
			log_info("%s: queued; the client left before the reply", pc->qid);
		return;
	}
	struct transaction *tx = &s->tx;
	s->data.commit = NULL;
	if (err != 0) {
		log_warn("%s: cannot commit to the queue: %s", pc->qid, strerror(err));
		reply_queue_error(s, err, 1);
	} else {
		s->nmessages++;
		log_info("%s: from=<%s> size=%llu nrcpt=%zu proto=%s client=%s", pc->qid,
		    tx->sender, pc->size, tx->nrcpts, s->protocol, s->client);
		if (s->lmtp) {
			for (size_t i = 0; i < tx->nrcpts; i++) {
				if (s->data.over[i])
					session_refuse(s, FR_MESSAGE_TOO_LARGE, 552, "<%s> Message "
					    "size exceeds the recipient's limit", tx->rcpts[i]);
				else
					session_reply(s, 250, "2.1.5", "<%s> Ok: queued as %s",
					    tx->rcpts[i], pc->qid);
			}
		} else {
			session_reply(s, 250, "2.0.0", "Ok: queued as %s", pc->qid);
		}
	}
	data_free_tables(&s->data);
	s->data.active = 0;
	session_reset_transaction(s);
}

/* Pool callback, on the loop thread. */
static void commit_done(struct commit_req *req)
{
	struct pending_commit *pc = req->arg;
	struct session *s = pc->s;

	commit_finished(pc);
	free(pc);
	if (s != NULL)
		session_resume(s);      /* commands that came after the dot */
}

/* Hand the message to the commit pool (inline when there is none); nrcpts
 * of its recipients are not over their limit. */
static void commit_message(struct session *s, size_t nrcpts)
{
	struct pending_commit *pc = xcalloc(1, sizeof(*pc));

	pc->r = s->r;
	pc->proto = s->proto;
	pc->nrcpts = nrcpts;
	pc->s = s;
	snprintf(pc->qid, sizeof(pc->qid), "%s", qwriter_qid(s->data.qw));
	pc->size = (unsigned long long)qwriter_size(s->data.qw);
	pc->req.w = s->data.qw;
	pc->req.done = commit_done;
	pc->req.arg = pc;
	s->data.qw = NULL;
	s->data.commit = pc;
	if (s->r->commits != NULL) {
		commit_pool_submit(s->r->commits, &pc->req);
		return;
	}
	pc->req.error = qwriter_commit(pc->req.w) == 0 ? 0 : errno;
	commit_finished(pc);
	free(pc);
}

static void data_end(struct session *s)
{
	struct data_stream *d = &s->data;
	size_t left;

	if (!d->too_big && d->error == 0 && d->qw != NULL && (left = apply_maxsize(s)) > 0) {
		commit_message(s, left);        /* the transaction ends when it is done */
		return;
	}
	if (!d->too_big && d->error == 0 && d->qw != NULL) {
		log_info("%s: message from=<%s> refused: over every recipient's limit",
		    s->client, s->tx.sender);
		refuse_to_all(s, FR_MESSAGE_TOO_LARGE, 552,
		    "Message size exceeds the recipient's limit");
	} else if (d->too_big) {
		log_info("%s: message from=<%s> refused: over %llu bytes", s->client,
		    s->tx.sender, (unsigned long long)s->r->cfg->max_message_size);
		refuse_to_all(s, FR_MESSAGE_TOO_LARGE, 552, "Message size exceeds fixed limit");
	} else {
		reply_queue_error(s, d->error ? d->error : EIO, 1);
	}
	drop_writer(d);
	data_free_tables(d);
	d->active = 0;
	session_reset_transaction(s);
}

size_t data_consume(struct session *s, const char *p, size_t n)
{
	char out[SMTP_DATA_OUT_MAX(DATA_CHUNK)];
	size_t outlen;
	int done;
	size_t used = smtp_data_feed(&s->data.machine, p, n < DATA_CHUNK ? n : DATA_CHUNK,
	    out, &outlen, &done);

	data_store(s, out, outlen);
	if (done)
		data_end(s);
	return used;
}

int data_committing(const struct session *s)
{
	return s->data.commit != NULL;
}

void data_abort(struct session *s)
{
	struct data_stream *d = &s->data;

	if (d->commit != NULL) {
		/* the commit goes on without us; it tells the qmgr */
		d->commit->s = NULL;
		d->commit = NULL;
	}
	if (d->active && d->qw != NULL)
		log_debug("%s: %s: unfinished message dropped", s->client, qwriter_qid(d->qw));
	drop_writer(d);
	data_free_tables(d);
	d->active = 0;
}
