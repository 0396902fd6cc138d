/*
 * worker_rules.c - one recipient in the worker: loop checks, the rules
 * entry run top to bottom, each instruction whose condition holds
 * delivered, the results folded into one.
 *
 * The message is mapped read-only from the queue file and parsed (headers,
 * decoded body) only when the entry's conditions need it.  A recipient
 * whose rules run instructions as other accounts (uid=, gid=) is split by
 * the qmgr into parts, one per identity; every part evaluates the whole
 * entry (so `stop` and conditions mean the same everywhere) and runs only
 * its own instructions (worker_rcpt.run).  The primary part also runs the
 * actions that write nothing (forward, discard, reject) and the default
 * delivery when no instruction held, and is the only one to check the
 * message for spam: the other parts run with its verdict, which the qmgr
 * hands them (qmgr/verdicts.c).  In root mode each writer is checked to
 * run as this worker's own uid/gid before it runs (spawner/trust.c).
 */
#include "spawner/worker_private.h"
#include "db/rules_entry.h"
#include "deliver/deliver.h"
#include "lib/log.h"
#include "lib/msgtypes.h"
#include "mime/mime.h"
#include "queue/qfile.h"
#include "rules/eval.h"
#include "rules/walk.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

/* The worst status wins and its reason is the one reported. */
static void merge_result(struct delivery_result *total, const struct delivery_result *one)
{
	if (one->status > total->status ||
	    (one->status == total->status && total->text[0] == '\0'))
		*total = *one;
}

/* The message bytes, mapped read-only (NULL for an empty message). */
struct msg_map {
	void *base;
	size_t maplen;
	const char *data;
	size_t len;
};

static int map_message(const struct qfile *qf, int qfd, struct msg_map *mm)
{
	long page = sysconf(_SC_PAGESIZE);
	off_t start = qf->msg_offset - qf->msg_offset % page;

	memset(mm, 0, sizeof(*mm));
	if (qf->msg_size == 0)
		return 0;
	mm->maplen = (size_t)(qf->msg_offset - start) + (size_t)qf->msg_size;
	mm->base = mmap(NULL, mm->maplen, PROT_READ, MAP_PRIVATE, qfd, start);
	if (mm->base == MAP_FAILED) {
		mm->base = NULL;
		return -1;
	}
	mm->data = (const char *)mm->base + (qf->msg_offset - start);
	mm->len = (size_t)qf->msg_size;
	return 0;
}

static void unmap_message(struct msg_map *mm)
{
	if (mm->base != NULL)
		munmap(mm->base, mm->maplen);
	mm->base = NULL;
}

/* Whether this part runs instruction i.  run is "all" (single-user mode),
 * "primary" (root mode, the entry's account), "all:except:N,..." or
 * "primary:except:N,..." (the same, leaving the instructions other
 * accounts' parts run and those an earlier attempt delivered), or
 * "only:N,..." (a part for a uid=/gid= account).  An instruction left out
 * still counts as held in the walk (no default delivery, `stop` stops). */
static int part_runs(const struct worker_rcpt *rc, const struct rule_instruction *in, int i)
{
	const char *except = strstr(rc->run, ":except:");

	if (strcmp(rc->run, "all") == 0 || strcmp(rc->run, "primary") == 0)
		return 1;
	if (strncmp(rc->run, "only:", 5) == 0)
		return rule_action_writes_as_user(in->action) && qfile_list_has(rc->run + 5, (unsigned long)i);
	if (except != NULL)
		return !qfile_list_has(except + 8, (unsigned long)i);
	return 0;
}

static int is_primary(const struct worker_rcpt *rc)
{
	return strncmp(rc->run, "all", 3) == 0 || strncmp(rc->run, "primary", 7) == 0;
}

/* The kind of instruction a result is of (MSG_RESULT's action). */
static unsigned result_action_of(enum rule_action a)
{
	switch (a) {
	case ACT_MAILDIR: return RESULT_ACTION_MAILDIR;
	case ACT_MBOX: return RESULT_ACTION_MBOX;
	case ACT_PIPE: return RESULT_ACTION_PIPE;
	case ACT_FORWARD: return RESULT_ACTION_FORWARD;
	case ACT_DISCARD: return RESULT_ACTION_DISCARD;
	default: return RESULT_ACTION_NONE;
	}
}

/* maildir, mbox or pipe: writes as this worker's user. */
static void run_writer(const struct rule_instruction *in, const struct worker_rcpt *rc,
    const struct delivery_msg *dm, struct delivery_result *r, struct buf *where)
{
	char path[PATH_MAX], err[256];

	memset(r, 0, sizeof(*r));
	r->action = result_action_of(in->action);
	if (!worker_self.root_mode &&
	    ((in->has_uid && in->uid != getuid()) || (in->has_gid && in->gid != getgid()))) {
		/* only a root-mode daemon can switch accounts */
		snprintf(r->dsn, sizeof(r->dsn), "4.3.0");
		r->status = DELIVERY_TEMPFAIL;
		snprintf(r->text, sizeof(r->text),
		    "uid=/gid= at line %d needs the daemon started as root", in->line);
		return;
	}
	if (worker_self.root_mode && in != worker_default &&
	    !trust_instruction_runs_as(in, rc->res.uid, rc->res.gid, &worker_self)) {
		/* the qmgr asked for an instruction of another account */
		log_warn("to=<%s>: REFUSED instruction at line %d: it does not run as %s",
		    dm->recipient, in->line, worker_self.account);
		deliver_result_set(r, DELIVERY_TEMPFAIL, "4.3.0",
		    "worker refused line %d: it runs as another account", in->line);
		return;
	}
	if (where->len)
		buf_putc(where, ',');
	if (in->action == ACT_PIPE) {
		buf_puts(where, "pipe");
		deliver_pipe(dm, in->arg, r);
		return;
	}
	if (deliver_expand_path(in->arg, rc->home, path, sizeof(path), err, sizeof(err)) < 0) {
		r->status = DELIVERY_PERMFAIL;
		snprintf(r->dsn, sizeof(r->dsn), "5.3.5");
		snprintf(r->text, sizeof(r->text), "bad destination %s: %s", in->arg, err);
		return;
	}
	buf_printf(where, "%s:%s", rule_action_name(in->action), path);
	if (in->action == ACT_MAILDIR)
		deliver_maildir(dm, path, r);
	else
		deliver_mbox(dm, path, r);
}

static void run_instruction(const struct rule_instruction *in, const struct worker_rcpt *rc,
    const struct delivery_msg *dm, struct delivery_result *r, struct buf *where,
    struct buf *forward)
{
	switch (in->action) {
	case ACT_MAILDIR:
	case ACT_MBOX:
	case ACT_PIPE:
		run_writer(in, rc, dm, r, where);
		return;
	case ACT_FORWARD:
		if (forward->len)
			buf_putc(forward, ',');
		buf_puts(forward, in->arg);
		if (where->len)
			buf_putc(where, ',');
		buf_printf(where, "forward:%s", in->arg);
		deliver_result_set(r, DELIVERY_OK, "2.0.0", "%s", "forwarded");
		r->action = RESULT_ACTION_FORWARD;
		return;
	case ACT_DISCARD:
		if (where->len)
			buf_putc(where, ',');
		buf_puts(where, "discard");
		deliver_result_set(r, DELIVERY_OK, "2.0.0", "%s", "discarded by the rules");
		r->action = RESULT_ACTION_DISCARD;
		return;
	case ACT_REJECT:
		deliver_result_set(r, DELIVERY_PERMFAIL, "5.7.1", "%s", in->arg ? in->arg : "rejected");
		r->action = RESULT_ACTION_NONE;
		return;
	default:
		deliver_result_set(r, DELIVERY_TEMPFAIL, "4.3.0", "unknown action %s",
		    rule_action_name(in->action));
		r->action = RESULT_ACTION_NONE;
		return;
	}
}

/* Parse what the conditions need; NULL when nothing (or on failure, which
 * makes header and body tests see an empty message and say so).  With a
 * spam verdict (ws), the tests see the copy as it is delivered: this host's
 * X-Spam-* fields, not the message's own. */
static struct mime_message *parse_if_needed(const struct rules_entry *e,
    const struct msg_map *mm, struct worker_spam *ws, struct mime_message *store)
{
	int needs = rules_entry_needs(e);
	if (needs == 0)
		return NULL;
	size_t len = mm->len;
	const char *data = ws ? worker_spam_view(ws, mm->data, mm->len, &len) : mm->data;
	int flags = (needs & RULES_NEED_BODY) ? 0 : MIME_HEADERS_ONLY;
	if (mime_parse(data, len, worker_cfg->body_match_limit, flags, store) < 0)
		return NULL;
	return store;
}

/* What a walk of the entry needs to deliver as it goes. */
struct walk_state {
	const struct qfile *qf;
	const struct worker_rcpt *rc;
	const struct delivery_msg *dm;
	struct delivery_result *total;
	struct buf *where, *forward;
	struct buf *done;       /* writers that delivered: "N,M" */
	size_t seq;             /* the held result (worker_held.h) */
};

static void visit(const struct rule_instruction *in, int i, int holds, const char *warn,
    void *arg)
{
	struct walk_state *w = arg;
	struct delivery_result one;

	if (warn[0])
		log_warn("qid=%s to=<%s>: rules: %s", w->qf->qid, w->dm->recipient, warn);
	if (!holds || in->action == ACT_STOP || !part_runs(w->rc, in, i) ||
	    (!rule_action_writes_as_user(in->action) && !is_primary(w->rc)))
		return;
	maildir_batch_tag(w->seq, i);    /* a batched maildir copy's place */
	run_instruction(in, w->rc, w->dm, &one, w->where, w->forward);
	maildir_batch_tag(w->seq, -1);
	merge_result(w->total, &one);
	/* a forward is queued only when the whole recipient succeeds: not
	 * recorded, it runs again on a retry */
	if (rule_action_writes_as_user(in->action) && one.status == DELIVERY_OK) {
		if (w->done->len)
			buf_putc(w->done, ',');
		buf_printf(w->done, "%d", i);
	}
}

void worker_deliver(const struct qfile *qf, int qfd, struct worker_rcpt *rc,
    struct worker_spam *ws, struct delivery_result *total, struct buf *where,
    struct buf *forward, struct buf *done)
{
	const struct rules_entry *entry = &rc->entry;
	const char *account = rc->res.account;
	if (strncmp(rc->run, "only:", 5) == 0)
		account = worker_self.account;
	struct delivery_msg dm = {
		.qfd = qfd, .msg_offset = qf->msg_offset, .msg_size = qf->msg_size,
		.sender = qf->sender, .recipient = qf->rcpt[rc->index].address,
		.home = rc->home, .user = account && account[0] ? account : NULL,
		.extension = rc->res.extension,
	};
	struct msg_map mm;
	struct mime_message parsed, *msg = NULL;
	struct delivery_result one;

	memset(total, 0, sizeof(*total));
	if (map_message(qf, qfd, &mm) < 0) {
		deliver_result_set(total, DELIVERY_TEMPFAIL, "4.3.0", "cannot map the queue file: %s",
		    strerror(errno));
		return;
	}
	const char *loop = deliver_loop_reason(mm.data, mm.len, dm.recipient);
	if (loop != NULL) {
		deliver_result_set(total, DELIVERY_PERMFAIL, "5.4.6", "%s", loop);
		unmap_message(&mm);
		return;
	}
	int spam_on = worker_spam_wanted(entry->spam);
	struct worker_spam given;
	if (spam_on && !is_primary(rc)) {
		/* a uid=/gid= part checks nothing as its own user: it runs with
		 * the primary part's verdict (qmgr/verdicts.c) */
		memset(&given, 0, sizeof(given));
		worker_spam_given(&given, rc, qf, mm.data, mm.len);
		ws = &given;
	}
	if (spam_on) {
		if (is_primary(rc))
			worker_spam_get(ws, qf, mm.data, mm.len);
		rc->spam_used = 1;
		dm.extra_headers = ws->headers;
		if (ws->filtered) {     /* the copy without the message's own X-Spam-* */
			dm.qfd = ws->filtered_fd;
			dm.msg_offset = 0;
			dm.msg_size = ws->filtered_size;
		}
	}
	msg = parse_if_needed(entry, &mm, spam_on ? ws : NULL, &parsed);
	struct rule_context ctx = {
		.sender = qf->sender, .rcpt = dm.recipient,
		.extension = rc->res.extension ? rc->res.extension : "",
		.size = qf->msg_size,
		.spam = spam_on && ws->checked && ws->is_spam,
		.score = spam_on && ws->checked ? ws->score : 0,
		.msg = msg,
	};
	struct walk_state w = { qf, rc, &dm, total, where, forward, done, rc->seq };
	if (rules_walk(entry, &ctx, visit, &w) == 0 && is_primary(rc)) {
		run_writer(worker_default, rc, &dm, &one, where);
		merge_result(total, &one);
	}
	if (total->status == DELIVERY_OK && total->dsn[0] == '\0')
		snprintf(total->dsn, sizeof(total->dsn), "2.0.0");
	if (msg != NULL)
		mime_message_free(msg);
	if (spam_on && !is_primary(rc))
		worker_spam_reset(&given);
	unmap_message(&mm);
}
