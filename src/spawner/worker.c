/*
 * worker.c - the per-user delivery worker.
 *
 * Runs as the recipient's uid/gid.  Waits for jobs from the qmgr; each job
 * names a queue file (an open read-only descriptor: the worker cannot open
 * the queue directory itself) and the recipients of this user with their
 * compiled rules.  For each recipient it runs the instructions top to
 * bottom, delivers a copy for each one that applies, and reports one result.
 */
#include "spawner/worker.h"
#include "db/rules_entry.h"
#include "deliver/deliver.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/msgtypes.h"
#include "lib/buf.h"
#include "queue/qfile.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct ipc_msg job, out;
static struct rule_instruction default_instr;

struct job_rcpt {
	uint32_t index;
	const char *address;
	const char *extension;
	const char *account;
	const char *home;
	const void *rules;
	size_t rules_len;
};

/* Fold one copy's result into the recipient's: the worst status wins and
 * its reason is the one reported. */
static void merge_result(struct delivery_result *total, const struct delivery_result *one)
{
	if (one->status > total->status || (one->status == total->status && total->text[0] == '\0')) {
		*total = *one;
	}
}

static void run_instruction(const struct rule_instruction *ins, const struct job_rcpt *rc,
    const struct delivery_msg *dm, struct delivery_result *r, struct buf *where)
{
	char path[PATH_MAX], err[256];

	memset(r, 0, sizeof(*r));
	if ((ins->has_uid && ins->uid != getuid()) || (ins->has_gid && ins->gid != getgid())) {
		/* per-instruction accounts arrive with the full rules engine */
		r->status = DELIVERY_TEMPFAIL;
		snprintf(r->dsn, sizeof(r->dsn), "4.3.0");
		snprintf(r->text, sizeof(r->text), "uid=/gid= overrides are not supported yet (line %d)", ins->line);
		return;
	}
	if (deliver_expand_path(ins->arg, rc->home, path, sizeof(path), err, sizeof(err)) < 0) {
		r->status = DELIVERY_PERMFAIL;
		snprintf(r->dsn, sizeof(r->dsn), "5.3.5");
		snprintf(r->text, sizeof(r->text), "bad destination %s: %s", ins->arg, err);
		return;
	}
	if (where->len)
		buf_putc(where, ',');
	buf_printf(where, "%s:%s", rule_action_name(ins->action), path);
	if (ins->action == ACT_MAILDIR)
		deliver_maildir(dm, path, r);
	else
		deliver_mbox(dm, path, r);
}

static void deliver_recipient(const struct qfile *qf, int qfd, const struct job_rcpt *rc,
    struct delivery_result *total, struct buf *where)
{
	struct rules_entry entry = { 0 };
	struct delivery_msg dm = {
		.qfd = qfd, .msg_offset = qf->msg_offset, .msg_size = qf->msg_size,
		.sender = qf->sender, .recipient = qf->rcpt[rc->index].address,
		.home = rc->home,
	};
	struct delivery_result one;
	int delivered = 0;

	memset(total, 0, sizeof(*total));
	if (rc->rules_len > 0 && rules_entry_decode(rc->rules, rc->rules_len, &entry) < 0) {
		total->status = DELIVERY_TEMPFAIL;
		snprintf(total->dsn, sizeof(total->dsn), "4.3.0");
		snprintf(total->text, sizeof(total->text), "malformed rules entry");
		return;
	}
	for (int i = 0; i < entry.ninstr; i++) {
		const struct rule_instruction *ins = &entry.instr[i];
		if (ins->action == ACT_STOP)
			break;
		if (ins->action != ACT_MAILDIR && ins->action != ACT_MBOX) {
			one.status = DELIVERY_TEMPFAIL;
			snprintf(one.dsn, sizeof(one.dsn), "4.3.0");
			snprintf(one.text, sizeof(one.text), "action %s is not supported yet",
			    rule_action_name(ins->action));
		} else {
			run_instruction(ins, rc, &dm, &one, where);
		}
		merge_result(total, &one);
		delivered++;
	}
	if (delivered == 0) {
		run_instruction(&default_instr, rc, &dm, &one, where);
		merge_result(total, &one);
	}
	if (total->status == DELIVERY_OK && total->dsn[0] == '\0')
		snprintf(total->dsn, sizeof(total->dsn), "2.0.0");
	rules_entry_free(&entry);
}

static int send_result(int fd, const char *qid, uint32_t index, const struct delivery_result *r,
    const char *where)
{
	ipc_init(&out, MSG_RESULT);
	ipc_add_str(&out, qid);
	ipc_add_u32(&out, index);
	ipc_add_u32(&out, (uint32_t)r->status);
	ipc_add_str(&out, r->dsn);
	ipc_add_str(&out, r->status == DELIVERY_OK && r->text[0] == '\0' ? "delivered" : r->text);
	ipc_add_str(&out, where);
	return ipc_send(fd, &out);
}

static void handle_job(int fd)
{
	const char *qid;
	uint32_t n;
	struct job_rcpt rc[MSG_JOB_MAX_RCPTS];
	struct qfile qf;
	int qfd = job.fd;

	job.fd = -1;
	if (ipc_get_str(&job, &qid) < 0 || ipc_get_u32(&job, &n) < 0 || n > MSG_JOB_MAX_RCPTS)
		goto malformed;
	for (uint32_t i = 0; i < n; i++) {
		if (ipc_get_u32(&job, &rc[i].index) < 0 || ipc_get_str(&job, &rc[i].address) < 0 ||
		    ipc_get_str(&job, &rc[i].extension) < 0 || ipc_get_str(&job, &rc[i].account) < 0 ||
		    ipc_get_str(&job, &rc[i].home) < 0 ||
		    ipc_get_blob(&job, &rc[i].rules, &rc[i].rules_len) < 0)
			goto malformed;
	}
	if (ipc_end(&job) < 0 || qfd < 0)
		goto malformed;

	int read_ok = qfile_read(qfd, &qf) == 0 && strcmp(qf.qid, qid) == 0;
	int read_errno = errno;
	for (uint32_t i = 0; i < n; i++) {
		struct delivery_result r = { 0 };
		struct buf where = BUF_INIT;
		if (!read_ok) {
			r.status = DELIVERY_TEMPFAIL;
			snprintf(r.dsn, sizeof(r.dsn), "4.3.0");
			snprintf(r.text, sizeof(r.text), "cannot read queue file: %s", strerror(read_errno));
		} else if (rc[i].index >= qf.nrcpt) {
			r.status = DELIVERY_TEMPFAIL;
			snprintf(r.dsn, sizeof(r.dsn), "4.3.0");
			snprintf(r.text, sizeof(r.text), "recipient index out of range");
		} else {
			deliver_recipient(&qf, qfd, &rc[i], &r, &where);
		}
		int sent = send_result(fd, qid, rc[i].index, &r, where.data ? where.data : "");
		buf_free(&where);
		if (sent < 0)
			exit(1);        /* the qmgr is gone; it retries what it missed */
	}
	if (read_ok)
		qfile_free(&qf);
	close(qfd);
	ipc_init(&out, MSG_JOB_DONE);
	ipc_add_str(&out, qid);
	if (ipc_send(fd, &out) < 0)
		exit(1);
	return;
malformed:
	if (qfd >= 0)
		close(qfd);
	fatal("malformed job from qmgr");
}

void worker_main(const struct config *cfg, int fd)
{
	char err[256];
	/* The qmgr retires idle workers by closing the socket; this is only a
	 * safety net should that message never come. */
	int safety_ms = (int)((cfg->worker_idle_timeout * 2 + 60) * 1000);

	if (rules_parse_instruction(cfg->default_delivery, &default_instr, err, sizeof(err)) < 0)
		fatal("default_delivery: %s", err);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, safety_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			exit(0);
		r = ipc_recv(fd, &job);
		if (r == 0)
			exit(0);
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			fatal("reading from qmgr: %s", strerror(errno));
		}
		if (job.type != MSG_JOB) {
			if (job.fd >= 0)
				close(job.fd);
			fatal("unexpected message type %u from qmgr", job.type);
		}
		handle_job(fd);
	}
}
