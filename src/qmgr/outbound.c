/*
 * outbound.c - queue files the qmgr writes itself: forwards, bounces and
 * delay warnings.
 *
 * A forward is a copy of the message with the original envelope sender and
 * "Delivered-To: <recipient>" on top (so that a loop through this host is
 * seen and broken), addressed to the forward targets.  A bounce is one
 * RFC 3464 DSN from <> to the original sender, listing every recipient that
 * failed for good; a delay warning is one to the same sender listing every
 * recipient still pending (Action: delayed), while the retries go on.
 * All are ordinary queue files marked outbound ('X'):
 * written and committed in incoming/ like the receiver's, then loaded, and
 * their recipients go to the relay.  Only once the new file is durable is
 * the original recipient recorded as done, so a crash may repeat a forward
 * or a bounce but never loses one; a forward's queue id is the original's,
 * 'F' and the recipient's index, created with O_EXCL, so that a forward
 * queued again finds the first one while it is still queued.  Likewise the scheduler records a delay
 * warning ('W') only once it is queued: a crash in between sends it twice.
 */
#include "qmgr/qmgr_private.h"
#include "dsn/dsn.h"
#include "lib/buf.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define COPY_CHUNK (64 * 1024)
/* How much of the original's header section a DSN quotes. */
#define DSN_HEADERS_MAX (64 * 1024)

static int open_original(const struct qmsg *m)
{
	int fd = openat(Q.queue_dirfd[m->dir], m->qid, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		log_warn("qid=%s: cannot open: %s", m->qid, strerror(errno));
	return fd;
}

/* Commit w and hand the new message to the scheduler. */
static int commit_and_load(struct qwriter *w, const char *what, const struct qmsg *m)
{
	char qid[QID_MAX];

	snprintf(qid, sizeof(qid), "%s", qwriter_qid(w));
	if (qwriter_commit(w) < 0) {
		log_warn("qid=%s: cannot queue the %s: %s", m->qid, what, strerror(errno));
		return -1;
	}
	log_info("qid=%s: %s queued as %s", m->qid, what, qid);
	sched_load(qid, QDIR_INCOMING);
	return 0;
}

/* Whether the forward fid is queued already (committed in incoming/, or
 * in active/ or deferred/).  A file of that name in incoming/ without the
 * committed mark was cut short by a crash of the qmgr: removed. */
static int forward_queued(const struct qmsg *m, const char *fid)
{
	struct stat st;

	if (fstatat(Q.queue_dirfd[QDIR_ACTIVE], fid, &st, AT_SYMLINK_NOFOLLOW) == 0 ||
	    fstatat(Q.queue_dirfd[QDIR_DEFERRED], fid, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return 1;
	if (fstatat(Q.queue_dirfd[QDIR_INCOMING], fid, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	if (qfile_mode_committed(st.st_mode))
		return 1;
	log_info("qid=%s: removing the forward %s cut short", m->qid, fid);
	if (unlinkat(Q.queue_dirfd[QDIR_INCOMING], fid, 0) < 0 && errno != ENOENT)
		log_warn("qid=%s: cannot remove %s: %s", m->qid, fid, strerror(errno));
	return 0;
}

int outbound_forward(const struct qmsg *m, size_t index, const char *const *addrs, size_t n)
{
	const char *host = Q.cfg->hostname ? Q.cfg->hostname : "localhost";
	const char *rcpt = m->qf.rcpt[index].address;
	int flags = QW_OUTBOUND | (m->qf.eightbit ? QW_8BITMIME : 0);
	struct buf top = BUF_INIT;
	char *chunk = NULL;
	char fid[QID_MAX];

	/* one queue id per original and recipient: queued again (the
	 * recipient delivered again after a crash before its result was
	 * recorded), it finds the first copy if that is still queued */
	if (snprintf(fid, sizeof(fid), "%sF%zu", m->qid, index) >= (int)sizeof(fid) ||
	    !qid_valid(fid))
		fid[0] = '\0';         /* too long: a fresh id */
	if (fid[0] != '\0' && forward_queued(m, fid)) {
		log_info("qid=%s: forward queued already as %s", m->qid, fid);
		return 0;
	}
	int fd = open_original(m);
	if (fd < 0)
		return -1;
	struct qwriter *w = fid[0] != '\0' ?
	    qwriter_open_id(Q.cfg->queue_dir, fid, host, "local", "forward", m->qf.sender, addrs,
	    n, flags) :
	    qwriter_open(Q.cfg->queue_dir, host, "local", "forward", m->qf.sender, addrs, n, flags);
	if (w == NULL) {
		log_warn("qid=%s: cannot create the forward: %s", m->qid, strerror(errno));
		close(fd);
		return -1;
	}
	buf_printf(&top, "Delivered-To: %s\n", rcpt);
	int rc = qwriter_write(w, top.data, top.len);
	chunk = xmalloc(COPY_CHUNK);
	for (uint64_t done = 0; rc == 0 && done < m->qf.msg_size;) {
		uint64_t left = m->qf.msg_size - done;
		size_t want = left < COPY_CHUNK ? (size_t)left : COPY_CHUNK;
		if (pread_all(fd, chunk, want, m->qf.msg_offset + (off_t)done) < 0)
			rc = -1;
		else
			rc = qwriter_write(w, chunk, want);
		done += want;
	}
	free(chunk);
	buf_free(&top);
	close(fd);
	if (rc < 0) {
		log_warn("qid=%s: cannot write the forward: %s", m->qid, strerror(errno));
		qwriter_abort(w);
		return -1;
	}
	return commit_and_load(w, "forward", m);
}

/* "4.2.2 mailbox full" -> status "4.2.2", diagnostic "mailbox full".  A
 * transient report (an expired or delayed recipient) gets a 4.x.x status:
 * fallback when the error has none, or has another class. */
static void split_status(const char *last_error, int transient, const char *fallback,
    char status[16], const char **diagnostic)
{
	const char *e = last_error ? last_error : "";
	size_t n = strspn(e, "0123456789.");

	if (n >= 5 && n < 16 && (e[0] == '4' || e[0] == '5') && (e[n] == ' ' || e[n] == '\0')) {
		memcpy(status, e, n);
		status[n] = '\0';
		*diagnostic = e[n] == ' ' ? e + n + 1 : e + n;
	} else {
		snprintf(status, 16, "%s", fallback);
		*diagnostic = e;
	}
	if (transient && status[0] != '4')
		snprintf(status, 16, "%s", fallback);
}

/* Which recipients a DSN reports, and how. */
struct dsn_kind {
	const char *what;               /* for the log */
	const char *protocol;           /* of the new queue file's 'C' record */
	const char *not_to_null;        /* logged for a message from <> */
	const char *listed;             /* what the listed recipients did */
	enum dsn_action action;
};

static const struct dsn_kind BOUNCE = {
	"bounce", "bounce", "not bouncing", "failed", DSN_FAILED };
static const struct dsn_kind DELAY_WARNING = {
	"delay warning", "delay", "no delay warning for", "pending", DSN_DELAYED };

/* Whether recipient rc goes into a DSN of this kind: a bounce lists the
 * recipients that failed for good, a delay warning those still pending. */
static int dsn_lists(const struct dsn_kind *k, const struct qrcpt *rc)
{
	if (k->action == DSN_DELAYED)
		return rc->state == RCPT_PENDING;
	return rc->state == RCPT_BOUNCED || rc->state == RCPT_EXPIRED;
}

/* Queue one DSN of kind k about m to m's sender.  0 when done or not
 * needed (null sender, no recipient to list), -1 (logged) when it could
 * not be made durable. */
static int outbound_dsn(const struct qmsg *m, const struct dsn_kind *k)
{
	const struct qfile *qf = &m->qf;
	size_t nlisted = 0;

	for (size_t i = 0; i < qf->nrcpt; i++)
		nlisted += dsn_lists(k, &qf->rcpt[i]);
	if (nlisted == 0)
		return 0;
	if (qf->sender[0] == '\0') {
		log_info("qid=%s: %s a message from <> (%zu recipient%s %s)", m->qid,
		    k->not_to_null, nlisted, nlisted == 1 ? "" : "s", k->listed);
		return 0;
	}

	struct dsn_rcpt *rcpts = xcalloc(nlisted, sizeof(*rcpts));
	char (*status)[16] = xcalloc(nlisted, sizeof(*status));
	size_t n = 0;
	for (size_t i = 0; i < qf->nrcpt; i++) {
		const struct qrcpt *rc = &qf->rcpt[i];
		if (!dsn_lists(k, rc))
			continue;
		int expired = rc->state == RCPT_EXPIRED;
		rcpts[n].address = rc->address;
		rcpts[n].action = k->action;
		split_status(rc->last_error, expired || k->action == DSN_DELAYED,
		    expired ? "4.4.7" : k->action == DSN_DELAYED ? "4.0.0" : "5.0.0",
		    status[n], &rcpts[n].diagnostic);
		rcpts[n].status = status[n];
		n++;
	}

	int rc = -1;
	char *headers = xmalloc(DSN_HEADERS_MAX);
	size_t want = qf->msg_size < DSN_HEADERS_MAX ? (size_t)qf->msg_size : DSN_HEADERS_MAX;
	struct buf out = BUF_INIT;
	int fd = open_original(m);
	if (fd >= 0 && pread_all(fd, headers, want, qf->msg_offset) == 0) {
		struct dsn_report r = {
			.reporting_host = Q.cfg->hostname ? Q.cfg->hostname : "localhost",
			.qid = m->qid,
			.arrival = qf->arrival_sec,
			.orig_sender = qf->sender,
			.rcpts = rcpts,
			.nrcpts = nlisted,
			.orig_headers = headers,
			.orig_headers_len = dsn_header_section_len(headers, want, want),
			.now = time(NULL),
			.retry_until = k->action == DSN_DELAYED ?
			    qf->arrival_sec + (int64_t)Q.cfg->max_queue_lifetime : 0,
		};
		const char *to[1] = { qf->sender };
		struct qwriter *w = NULL;
		if (dsn_compose(&r, &out) == 0)
			w = qwriter_open(Q.cfg->queue_dir, r.reporting_host, "local", k->protocol, "",
			    to, 1, QW_OUTBOUND | QW_8BITMIME);
		if (w != NULL && qwriter_write(w, out.data, out.len) == 0)
			rc = commit_and_load(w, k->what, m);
		else if (w != NULL)
			qwriter_abort(w);
		if (rc == 0 && k == &BOUNCE)
			figures_bounce();
		if (rc < 0 && w == NULL)
			log_warn("qid=%s: cannot create the %s: %s", m->qid, k->what, strerror(errno));
	} else if (fd >= 0) {
		log_warn("qid=%s: cannot read the message for its %s: %s", m->qid, k->what,
		    strerror(errno));
	}
	if (fd >= 0)
		close(fd);
	buf_free(&out);
	free(headers);
	free(status);
	free(rcpts);
	return rc;
}

int outbound_bounce(const struct qmsg *m)
{
	return outbound_dsn(m, &BOUNCE);
}

int outbound_delay_warning(const struct qmsg *m)
{
	return outbound_dsn(m, &DELAY_WARNING);
}
