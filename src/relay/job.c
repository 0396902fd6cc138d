/*
 * job.c - relay jobs: decoding MSG_RELAY_JOB strictly, checking the
 * addresses before they go into SMTP commands, keeping one result per
 * recipient and reporting them to the qmgr.  A job for a list manager
 * (dest "lmtp:...") gets its Message-ID here when it has none.
 */
#include "relay/relay_private.h"
#include "lib/lmtp_dest.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* An address that can go between <> in MAIL FROM / RCPT TO: bounded,
 * printable ASCII without spaces or angle brackets (nothing that could end
 * the command or smuggle another one).  Quoted local parts with spaces and
 * non-ASCII addresses (no SMTPUTF8 here) are refused. */
static int address_ok(const char *a, int may_be_empty)
{
	size_t n = strlen(a);

	if (n == 0)
		return may_be_empty;
	if (n > RELAY_ADDR_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)a[i];
		if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>')
			return 0;
	}
	return 1;
}

void job_free(struct relay_job *job)
{
	if (job == NULL)
		return;
	for (uint32_t i = 0; i < job->nrcpt; i++) {
		free(job->rcpt[i].address);
		free(job->rcpt[i].text);
	}
	free(job->rcpt);
	free(job->sender);
	free(job->dest);
	free(job->qid);
	free(job->add_header);
	if (job->fd >= 0)
		close(job->fd);
	free(job);
}

void job_result(struct relay_job *job, uint32_t index, enum relay_status status,
    const char *dsn, const char *text)
{
	struct relay_rcpt *rc;

	if (index >= job->nrcpt)
		panic("relay: recipient index %u out of range", index);
	rc = &job->rcpt[index];
	if (rc->done)
		return;
	rc->done = 1;
	rc->status = status;
	snprintf(rc->dsn, sizeof(rc->dsn), "%s", dsn);
	rc->text = xstrndup(text, RELAY_TEXT_MAX);
}

uint32_t job_pending(const struct relay_job *job)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < job->nrcpt; i++)
		if (!job->rcpt[i].done)
			n++;
	return n;
}

static const char *status_name(enum relay_status s)
{
	return s == RELAY_SENT ? "sent" : s == RELAY_TEMPFAIL ? "deferred" : "bounced";
}

void job_finish(struct relay *r, struct relay_job *job, enum relay_status status,
    const char *dsn, const char *text)
{
	for (uint32_t i = 0; i < job->nrcpt; i++) {
		struct relay_rcpt *rc = &job->rcpt[i];
		job_result(job, i, status, dsn, text);
		log_debug("relay job=%" PRIu64 " to=<%s> relay=%s status=%s dsn=%s (%s)",
		    job->id, rc->address, job->dest ? job->dest : r->cfg->relay_host,
		    status_name(rc->status),
		    rc->dsn, rc->text);
		relay_send_result(r, job->id, i, rc->status, rc->dsn, rc->text);
	}
	relay_send_done(r, job->id);
	job_free(job);
}

struct relay_job *job_decode(struct relay *r, struct ipc_msg *m)
{
	struct relay_job *job = xcalloc(1, sizeof(*job));
	const char *sender, *dest, *qid, *why = "truncated";
	char err[300];
	uint32_t eightbit, n;
	int have_id;

	job->fd = m->fd;
	m->fd = -1;
	have_id = ipc_get_u64(m, &job->id) == 0;
	if (!have_id || ipc_get_str(m, &sender) < 0 ||
	    ipc_get_u64(m, &job->msg_offset) < 0 || ipc_get_u64(m, &job->msg_size) < 0 ||
	    ipc_get_u32(m, &eightbit) < 0 || ipc_get_u32(m, &n) < 0)
		goto bad;
	if (n == 0 || n > MSG_RELAY_MAX_RCPTS) {
		why = "bad recipient count";
		goto bad;
	}
	job->rcpt = xcalloc(n, sizeof(*job->rcpt));
	for (uint32_t i = 0; i < n; i++) {
		const char *a;
		if (ipc_get_str(m, &a) < 0)
			goto bad;
		job->rcpt[i].address = xstrdup(a);
		job->nrcpt = i + 1;
	}
	if (ipc_get_str(m, &dest) < 0 || ipc_get_str(m, &qid) < 0)
		goto bad;
	if (ipc_end(m) < 0) {
		why = "trailing bytes";
		goto bad;
	}
	if (job->fd < 0) {
		why = "no queue file";
		goto bad;
	}
	/* the whole message must be addressable with off_t */
	if (job->msg_offset > INT64_MAX || job->msg_size > INT64_MAX - job->msg_offset) {
		why = "bad message offset or size";
		goto bad;
	}
	job->sender = xstrdup(sender);
	job->eightbit = eightbit != 0;
	job->qid = xstrdup(qid);
	if (dest[0] != '\0') {
		struct lmtp_dest d;
		job->dest = xstrdup(dest);
		if (lmtp_dest_parse(dest, &d, err, sizeof(err)) < 0) {
			job_finish(r, job, RELAY_TEMPFAIL, "4.3.5", err);
			return NULL;
		}
		if (message_id_prepare(job, r->cfg->hostname) < 0) {
			snprintf(err, sizeof(err), "cannot read the queue file: %s", strerror(errno));
			job_finish(r, job, RELAY_TEMPFAIL, "4.3.0", err);
			return NULL;
		}
	}

	if (!address_ok(job->sender, 1)) {
		job_finish(r, job, RELAY_PERMFAIL, "5.1.7",
		    "bad sender address syntax for SMTP relaying");
		return NULL;
	}
	for (uint32_t i = 0; i < job->nrcpt; i++)
		if (!address_ok(job->rcpt[i].address, 0))
			job_result(job, i, RELAY_PERMFAIL, "5.1.3",
			    "bad recipient address syntax for SMTP relaying");
	if (job_pending(job) == 0) {
		job_finish(r, job, RELAY_PERMFAIL, "5.1.3", "no valid recipient");
		return NULL;
	}
	return job;
bad:
	log_warn("malformed relay job from the qmgr: %s", why);
	if (have_id)
		relay_send_done(r, job->id);
	job_free(job);
	return NULL;
}
