/*
 * conn_tx.c - one mail transaction on a ready connection.
 *
 * MAIL FROM, one RCPT TO per recipient still without a result, DATA: all
 * three in one write when the server offers PIPELINING (RFC 2920), one at
 * a time otherwise.  Replies are taken in order either way, so the two
 * modes share one state machine: a failed MAIL fails every recipient, a
 * failed RCPT its recipient, a failed DATA or end of data every accepted
 * one.  After 354 the message is streamed from the queue file as the
 * socket drains.  A transaction that ends before its end of data is
 * followed by RSET; a 421, a lost connection or a timeout fail the
 * remaining recipients temporarily and close the connection.
 * Over LMTP (RFC 2033) the end of data gets one reply per accepted
 * recipient, in the order of their RCPT TO, each its own result.
 */
#include "relay/relay_private.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

const char *tx_stage_doing(const struct relay_conn *c)
{
	switch (c->tx.stage) {
	case TX_MAIL:
		return "sending MAIL FROM";
	case TX_RCPT:
		return "sending RCPT TO";
	case TX_DATA:
		return "sending DATA command";
	case TX_BODY:
		return "sending message body";
	case TX_DOT:
	default:
		return "sending end of data -- message may be sent more than once";
	}
}

/* The command a reply in this stage answers. */
static const char *stage_command(const struct relay_conn *c)
{
	switch (c->tx.stage) {
	case TX_MAIL:
		return "MAIL FROM command";
	case TX_RCPT:
		return "RCPT TO command";
	case TX_DATA:
		return "DATA command";
	default:
		return "end of DATA command";
	}
}

void tx_abort(struct relay_conn *c, const char *dsn, const char *text)
{
	struct relay_job *job = c->job;

	c->job = NULL;
	log_info("relay: %s", text);
	conn_close(c);
	if (job != NULL)
		job_finish(c->r, job, RELAY_TEMPFAIL, dsn, text);
}

/* The transaction is over; complete: its end of data was answered. */
static void tx_end(struct relay_conn *c, int complete)
{
	struct relay_job *job = c->job;

	c->job = NULL;
	/* every recipient has its result by now; this is a safety net */
	job_finish(c->r, job, RELAY_TEMPFAIL, "4.5.0", "no reply for this recipient");
	if (complete)
		conn_ready(c);
	else
		smtp_rset(c);
}

int tx_start(struct relay_conn *c, struct relay_job *job)
{
	struct relay_tx *tx = &c->tx;
	char text[RELAY_TEXT_BUF], size[40] = "";

	if (c->size_max > 0 && job->msg_size > c->size_max) {
		snprintf(text, sizeof(text), "message size %" PRIu64 " exceeds size limit %"
		    PRIu64 " of host %s", job->msg_size, c->size_max, c->peer);
		job_finish(c->r, job, RELAY_PERMFAIL, "5.3.4", text);
		return 0;
	}
	memset(tx, 0, sizeof(*tx));
	for (uint32_t i = 0; i < job->nrcpt; i++)
		if (!job->rcpt[i].done)
			tx->sent[tx->nsent++] = i;
	if (tx->nsent == 0) {
		job_finish(c->r, job, RELAY_TEMPFAIL, "4.5.0", "nothing to send");
		return 0;
	}
	c->job = job;
	c->state = CONN_TX;
	c->nmsgs++;
	tx->stage = TX_MAIL;
	if (c->size_offered)
		snprintf(size, sizeof(size), " SIZE=%" PRIu64, job->msg_size +
		    (job->add_header ? strlen(job->add_header) : 0));
	conn_cmd(c, "MAIL FROM:<%s>%s%s", job->sender,
	    job->eightbit && c->eightbitmime ? " BODY=8BITMIME" : "", size);
	if (c->pipelining) {
		for (uint32_t i = 0; i < tx->nsent; i++)
			conn_cmd(c, "RCPT TO:<%s>", job->rcpt[tx->sent[i]].address);
		conn_cmd(c, "DATA");
	}
	conn_arm(c, RELAY_REPLY_TIMEOUT);
	return 1;
}

/* Send as much of the message as the socket buffer should hold. */
static void tx_fill(struct relay_conn *c)
{
	static char out[SEND_BODY_OUT_MAX];
	struct relay_tx *tx = &c->tx;

	while (!tx->body.done && conn_output_pending(c) < RELAY_OUT_HIGH) {
		ssize_t n = send_body_next(&tx->body, out);
		if (n < 0) {
			char text[200];
			snprintf(text, sizeof(text), "cannot read the queue file: %s", strerror(errno));
			/* closing before the end of data: the server drops it */
			tx_abort(c, "4.3.0", text);
			return;
		}
		conn_output(c, out, (size_t)n);
	}
	if (tx->body.done) {
		tx->stage = TX_DOT;
		conn_arm(c, RELAY_DOT_TIMEOUT);
	} else {
		conn_arm(c, RELAY_SEND_TIMEOUT);
	}
}

void tx_on_drained(struct relay_conn *c)
{
	if (c->tx.stage == TX_BODY)
		tx_fill(c);
}

/* The reply applies to recipient index (status from its class). */
static void result_from_reply(struct relay_conn *c, uint32_t index)
{
	char dsn[12], text[RELAY_TEXT_BUF];
	enum relay_status st = conn_reply_status(c, 1, dsn, sizeof(dsn));

	conn_said(c, stage_command(c), text, sizeof(text));
	job_result(c->job, index, st, dsn, text);
}

/* A reply that must not be a success (an early reply while the message
 * is being sent, a 2xx to DATA) applies to the accepted recipients. */
static void fail_accepted(struct relay_conn *c, const char *what)
{
	struct relay_tx *tx = &c->tx;
	char dsn[12], text[RELAY_TEXT_BUF];
	enum relay_status st = conn_reply_status(c, 1, dsn, sizeof(dsn));

	if (st == RELAY_SENT) {
		st = RELAY_TEMPFAIL;
		snprintf(dsn, sizeof(dsn), "4.5.0");
	}
	conn_said(c, what, text, sizeof(text));
	for (uint32_t i = 0; i < tx->nsent; i++)
		if (tx->accepted[tx->sent[i]])
			job_result(c->job, tx->sent[i], st, dsn, text);
}

static void on_mail_reply(struct relay_conn *c)
{
	struct relay_tx *tx = &c->tx;

	if (c->reply.code / 100 == 2) {
		tx->mail_ok = 1;
	} else {
		for (uint32_t i = 0; i < tx->nsent; i++)
			result_from_reply(c, tx->sent[i]);
	}
	tx->stage = TX_RCPT;
	if (!c->pipelining) {
		if (!tx->mail_ok) {
			tx_end(c, 0);
			return;
		}
		conn_cmd(c, "RCPT TO:<%s>", c->job->rcpt[tx->sent[0]].address);
	}
	conn_arm(c, RELAY_REPLY_TIMEOUT);
}

static void on_rcpt_reply(struct relay_conn *c)
{
	struct relay_tx *tx = &c->tx;
	uint32_t index = tx->sent[tx->pos++];

	if (tx->mail_ok) {
		if (c->reply.code / 100 == 2) {
			tx->accepted[index] = 1;
			tx->naccepted++;
		} else {
			result_from_reply(c, index);
		}
	}
	if (tx->pos < tx->nsent) {
		if (!c->pipelining)
			conn_cmd(c, "RCPT TO:<%s>", c->job->rcpt[tx->sent[tx->pos]].address);
		conn_arm(c, RELAY_REPLY_TIMEOUT);
		return;
	}
	tx->stage = TX_DATA;
	if (!c->pipelining) {
		if (tx->naccepted == 0) {
			tx_end(c, 0);
			return;
		}
		conn_cmd(c, "DATA");
	}
	conn_arm(c, RELAY_REPLY_TIMEOUT);
}

static void on_data_reply(struct relay_conn *c)
{
	struct relay_tx *tx = &c->tx;
	struct relay_job *job = c->job;

	if (c->reply.code == 354) {
		if (tx->mail_ok && tx->naccepted > 0) {
			send_body_init(&tx->body, job->fd, job->msg_offset, job->msg_size);
			if (job->add_header != NULL)
				conn_output(c, job->add_header, strlen(job->add_header));
			tx->stage = TX_BODY;
			tx_fill(c);
			return;
		}
		/* a server that takes DATA without recipients: end it empty */
		tx->discard = 1;
		conn_output(c, ".\r\n", 3);
		tx->stage = TX_DOT;
		conn_arm(c, RELAY_REPLY_TIMEOUT);
		return;
	}
	if (tx->mail_ok && tx->naccepted > 0)
		fail_accepted(c, "DATA command");
	tx_end(c, 0);
}

/* LMTP: this reply is the next accepted recipient's; the transaction
 * ends with the last one. */
static void on_lmtp_dot_reply(struct relay_conn *c)
{
	struct relay_tx *tx = &c->tx;

	while (tx->dot_pos < tx->nsent && !tx->accepted[tx->sent[tx->dot_pos]])
		tx->dot_pos++;
	if (tx->dot_pos < tx->nsent)
		result_from_reply(c, tx->sent[tx->dot_pos++]);
	while (tx->dot_pos < tx->nsent && !tx->accepted[tx->sent[tx->dot_pos]])
		tx->dot_pos++;
	if (tx->dot_pos < tx->nsent)
		conn_arm(c, RELAY_DOT_TIMEOUT);
	else
		tx_end(c, 1);
}

static void on_dot_reply(struct relay_conn *c)
{
	struct relay_tx *tx = &c->tx;

	if (tx->discard) {
		tx_end(c, 0);
		return;
	}
	if (c->lmtp) {
		on_lmtp_dot_reply(c);
		return;
	}
	for (uint32_t i = 0; i < tx->nsent; i++)
		if (tx->accepted[tx->sent[i]])
			result_from_reply(c, tx->sent[i]);
	tx_end(c, 1);
}

void tx_on_reply(struct relay_conn *c)
{
	if (c->reply.code == 421) {
		/* the server is closing the connection */
		char dsn[12], text[RELAY_TEXT_BUF];
		conn_reply_status(c, 0, dsn, sizeof(dsn));
		conn_said(c, stage_command(c), text, sizeof(text));
		tx_abort(c, dsn, text);
		return;
	}
	switch (c->tx.stage) {
	case TX_MAIL:
		on_mail_reply(c);
		break;
	case TX_RCPT:
		on_rcpt_reply(c);
		break;
	case TX_DATA:
		on_data_reply(c);
		break;
	case TX_BODY:
		/* a reply before the end of data: the server gave up on it */
		fail_accepted(c, "message body");
		tx_abort(c, "4.4.2", "reply before the end of data");
		break;
	case TX_DOT:
		on_dot_reply(c);
		break;
	}
}
