/*
 * scheduler.c - messages, recipients and jobs in the qmgr.
 *
 * A message is loaded from its queue file; each recipient not yet done is
 * resolved in the databases and grouped into one job per delivery identity
 * (user).  When a job's results come back they are applied to the
 * recipients and logged, one line per recipient, and made durable by
 * msg_commit, the one gate every result passes: nothing acts on a result
 * (removing the file, queueing the bounce, deferring or forgetting the
 * message) before that call succeeded.  The gate writes them to the queue
 * file as state records (msg_record), except for a message finished with
 * nothing left to do (every recipient delivered, no bounce to queue):
 * that one is removed, and the removal is its record (made durable with
 * the other removals of the event-loop turn, removals.c).  A message whose
 * recipients are all done is removed (durably); one with temporary
 * failures moves to deferred/ and waits for its retry time from
 * retry_schedule.  The messages in memory are the active set, at most
 * max_active_messages; a deferred one waiting for its timer goes back to
 * disk when its retry is a minute away or more, or to make room
 * (evict_one); the index of backlog.c has it until it is due.
 *
 * A deferred message's timer also brings its delay warning: it fires at the
 * earlier of the next retry and arrival + delay_warning_time (while no
 * warning was sent), and when only the warning is due, queues it, records
 * it ('W') and waits again, the file staying in deferred/.
 */
#include "qmgr/qmgr_private.h"
#include "db/address.h"
#include "db/db.h"
#include "db/identity.h"
#include "db/rules_entry.h"
#include "lib/buf.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/msgtypes.h"
#include "lib/strmap.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* Seconds before another try at queueing a bounce or a delay warning, or
 * at recording results, that failed (disk full). */
#define BOUNCE_RETRY_SECONDS 60
#define SETTLE_RETRY_SECONDS BOUNCE_RETRY_SECONDS
/* A deferred message whose next retry is at least this far goes back to
 * disk at once; one retried sooner stays loaded (reading it again would
 * cost more than it holds). */
#define EVICT_WAIT_SECONDS 60

static const char *const qdir_names[QDIR_COUNT] = { "active", "deferred", "incoming" };

static void partial_free(struct rcpt_partial *p)
{
	if (p == NULL)
		return;
	buf_free(&p->where);
	buf_free(&p->done);
	free(p->forward);
	free(p);
}

/* Messages collected from Q.msgs, to act on after the walk (acting may
 * remove entries from the map). */
struct msg_list {
	struct qmsg **items;
	size_t n;
};

static void msg_list_add(struct msg_list *l, struct qmsg *m)
{
	l->items = xreallocarray(l->items, l->n + 1, sizeof(*l->items));
	l->items[l->n++] = m;
}

static int collect_unremovable(const char *key, void *value, void *ctx)
{
	struct qmsg *m = value;
	if (m->unremovable)
		msg_list_add(ctx, m);
	return 0;
}

static void waiting_leave(struct qmsg *m)
{
	if (m->in_waiting) {
		TAILQ_REMOVE(&Q.waiting, m, waiting);
		m->in_waiting = 0;
	}
}

static void msg_free(struct qmsg *m)
{
	figures_msg_out(m);
	waiting_leave(m);
	if (m->retry_ev)
		event_free(m->retry_ev);
	if (m->settle_ev)
		event_free(m->settle_ev);
	if (m->partial != NULL)
		for (size_t i = 0; i < m->qf.nrcpt; i++)
			partial_free(m->partial[i]);
	free(m->partial);
	free(m->spam_stopped);
	verdicts_free(m);
	qfile_free(&m->qf);
	free(m->busy);
	free(m->unrecorded);
	free(m);
}

/* m leaves the active set (its file is gone, or is back on disk only). */
static void msg_forget(struct qmsg *m)
{
	strmap_del(Q.msgs, m->qid);
	msg_free(m);
	if (Q.backlog)
		qmgr_refill_soon();
}

static double delay_since_arrival(const struct qmsg *m)
{
	struct timeval now;
	gettimeofday(&now, NULL);
	return (double)(now.tv_sec - m->qf.arrival_sec) +
	    (double)(now.tv_usec - m->qf.arrival_usec) / 1e6;
}

static const char *status_word(enum delivery_status s)
{
	switch (s) {
	case DELIVERY_OK: return "sent";
	case DELIVERY_TEMPFAIL: return "deferred";
	default: return "bounced";
	}
}

/* Apply one recipient's result to the message in memory, log it and
 * count it (figures.c; started_usec: when the attempt began, 0 for none). */
static void apply_result(struct qmsg *m, size_t idx, const struct delivery_result *r,
    const char *where, uint64_t started_usec)
{
	struct qrcpt *rc = &m->qf.rcpt[idx];

	log_info("qid=%s from=<%s> to=<%s> where=%s delay=%.3f dsn=%s status=%s (%s)",
	    m->qid, m->qf.sender, rc->address, where && *where ? where : "none",
	    delay_since_arrival(m), r->dsn[0] ? r->dsn : "4.3.0", status_word(r->status), r->text);
	free(rc->last_error);
	/* the status code goes with the text: a bounce quotes both */
	rc->last_error = xasprintf("%s %s", r->dsn[0] ? r->dsn : "4.3.0", r->text);
	m->unrecorded[idx] = 1;         /* nothing acts on it before msg_record */
	figures_result(m, r, started_usec);
	switch (r->status) {
	case DELIVERY_OK:
		rc->state = RCPT_SENT;
		break;
	case DELIVERY_PERMFAIL:
		rc->state = RCPT_BOUNCED;       /* the DSN goes when the message is done */
		break;
	default:
		rc->attempts++;
		rc->last_attempt = time(NULL);
		break;
	}
}

static int pending_count(const struct qmsg *m)
{
	int n = 0;
	for (size_t i = 0; i < m->qf.nrcpt; i++)
		n += m->qf.rcpt[i].state == RCPT_PENDING;
	return n;
}

/* Every result applied in memory since the last call (apply_result marks
 * it) is appended to the queue file and fdatasynced, all in one call.
 * Nothing removes the file, queues a bounce or forgets the message while
 * this fails: the results stay in memory (the recipients are not delivered
 * again while the daemon runs) and msg_settle tries again later.  -1 with
 * errno on failure (ENOENT: the file was removed by an administrator).
 * While recipients are still pending this is the gate itself; msg_commit
 * is the gate of a message with no job left. */
static int msg_record(struct qmsg *m)
{
	size_t *idx = xcalloc(m->qf.nrcpt, sizeof(*idx));
	size_t n = 0;
	int r = 0;

	for (size_t i = 0; i < m->qf.nrcpt; i++)
		if (m->unrecorded[i])
			idx[n++] = i;
	if (n > 0) {
		int fd = openat(Q.queue_dirfd[m->dir], m->qid,
		    O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
		r = fd < 0 ? -1 : qfile_append_states(fd, &m->qf, idx, n);
		int saved = errno;
		if (fd >= 0)
			close(fd);
		if (r == 0)
			memset(m->unrecorded, 0, m->qf.nrcpt);
		else if (saved != ENOENT)
			log_warn("qid=%s: cannot record %zu delivery result%s: %s; kept in memory "
			    "and tried again in %ds, nothing delivered again meanwhile",
			    m->qid, n, n == 1 ? "" : "s", strerror(saved), SETTLE_RETRY_SECONDS);
		errno = saved;
	}
	free(idx);
	return r;
}

/* Whether every recipient of m is done and none failed for good: nothing
 * is left to do (no bounce, no deferral; forwards were queued before their
 * results were applied) but removing the file. */
static int msg_nothing_left(const struct qmsg *m)
{
	if (m->qf.finished != 0)
		return 0;
	for (size_t i = 0; i < m->qf.nrcpt; i++) {
		enum rcpt_state st = m->qf.rcpt[i].state;
		if (st != RCPT_SENT && st != RCPT_REFUSED)
			return 0;
	}
	return 1;
}

/* What msg_commit did. */
enum commit { COMMIT_FAILED = -1, COMMIT_RECORDED = 0, COMMIT_REMOVED = 1 };

/* The one gate between the results of a message with no job left and what
 * acts on them, in one of two forms.  A message with nothing left to do
 * (msg_nothing_left) is removed from the queue: its removal is its record,
 * durable at the end of this event-loop turn, and a crash before that
 * delivers it again, as one before its results were recorded would
 * (COMMIT_REMOVED: forget it).  Otherwise, or when its file cannot be
 * removed, the results are recorded by msg_record (COMMIT_RECORDED, or
 * COMMIT_FAILED with errno). */
static enum commit msg_commit(struct qmsg *m)
{
	if (msg_nothing_left(m)) {
		if (removals_remove(m->dir, m->qid) == 0) {
			log_debug("qid=%s: removed", m->qid);
			memset(m->unrecorded, 0, m->qf.nrcpt);
			return COMMIT_REMOVED;
		}
		if (errno == ENOENT)
			return COMMIT_FAILED;   /* msg_settle says who removed it */
		/* kept (a read-only directory?): its results are recorded and
		 * msg_finish marks it finished */
	}
	return msg_record(m) < 0 ? COMMIT_FAILED : COMMIT_RECORDED;
}

static uint64_t retry_delay(int attempts)
{
	int i = attempts < 1 ? 0 : attempts - 1;
	if (i >= Q.cfg->nretry)
		i = Q.cfg->nretry - 1;
	return Q.cfg->retry_schedule[i];
}

static void retry_fire(evutil_socket_t fd, short what, void *arg);
static void schedule_pending(struct qmsg *m);
static void msg_settle(struct qmsg *m);
static int evict_msg(struct qmsg *m, time_t now);

/* Move a queue file between active/ and deferred/.  -1 when the file is
 * gone (deleted by an administrator). */
static int msg_move(struct qmsg *m, enum qdir to)
{
	if (m->dir == to)
		return 0;
	if (renameat(Q.queue_dirfd[m->dir], m->qid, Q.queue_dirfd[to], m->qid) < 0) {
		if (errno == ENOENT) {
			log_info("qid=%s: removed from the queue by an administrator", m->qid);
			return -1;
		}
		log_warn("qid=%s: cannot move to %s/: %s", m->qid, qdir_names[to], strerror(errno));
		return 0;       /* stays where it is; the state is in the file */
	}
	m->dir = to;
	figures_msg_moved(m);
	return 0;
}

/* Whether m has been queued longer than max_queue_lifetime. */
static int msg_expired(const struct qmsg *m, time_t now)
{
	return (uint64_t)(now - m->qf.arrival_sec) >= Q.cfg->max_queue_lifetime;
}

/* When m's delay warning is due, or 0 when it gets none: warnings are off,
 * one was sent, its sender is <> (a bounce is never warned about), or it
 * expires no later than the warning would be due. */
static time_t warning_due(const struct qmsg *m)
{
	uint64_t after = Q.cfg->delay_warning_time;

	if (after == 0 || m->qf.warned != 0 || m->qf.sender[0] == '\0' ||
	    after >= Q.cfg->max_queue_lifetime)
		return 0;
	time_t due = (time_t)m->qf.arrival_sec + (time_t)after;
	return due > m->warn_retry ? due : m->warn_retry;
}

/* Queue m's delay warning, then record it in the queue file (fsynced) so
 * that a restart does not send it again; a crash between the two sends
 * it twice.  One that cannot be queued is tried again later. */
static void send_delay_warning(struct qmsg *m, time_t now)
{
	if (outbound_delay_warning(m) < 0) {
		m->warn_retry = now + BOUNCE_RETRY_SECONDS;
		return;
	}
	m->qf.warned = now;
	int fd = openat(Q.queue_dirfd[m->dir], m->qid, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || qfile_append_warned(fd, now) < 0)
		log_warn("qid=%s: cannot record the delay warning: %s (a restart may warn again)",
		    m->qid, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* Arm m's timer for its next retry, or for its delay warning when that
 * comes first. */
static void arm_retry(struct qmsg *m)
{
	time_t now = time(NULL), next = 0;

	for (size_t i = 0; i < m->qf.nrcpt; i++) {
		const struct qrcpt *rc = &m->qf.rcpt[i];
		if (rc->state != RCPT_PENDING)
			continue;
		time_t t = rc->attempts && !m->retry_now ?
		    rc->last_attempt + (time_t)retry_delay(rc->attempts) : now;
		if (next == 0 || t < next)
			next = t;
	}
	m->next_retry = next;
	m->retry_now = 0;
	time_t warn = warning_due(m);
	if (warn != 0 && warn < next)
		next = warn;
	if (m->retry_ev == NULL)
		m->retry_ev = evtimer_new(Q.base, retry_fire, m);
	struct timeval tv = { .tv_sec = next > now ? next - now : 0 };
	evtimer_add(m->retry_ev, &tv);
	m->due = next;
	if (m->dir == QDIR_DEFERRED && !m->in_waiting) {
		TAILQ_INSERT_TAIL(&Q.waiting, m, waiting);
		m->in_waiting = 1;
		if (Q.backlog)
			qmgr_refill_soon();     /* it can make room */
	}
}

static void settle_fire(evutil_socket_t fd, short what, void *arg)
{
	msg_settle(arg);
}

/* Its results could not be recorded, or its bounce not queued: m stays in
 * memory, and msg_settle tries again later. */
static void settle_later(struct qmsg *m)
{
	struct timeval tv = { .tv_sec = SETTLE_RETRY_SECONDS };
	if (m->settle_ev == NULL)
		m->settle_ev = evtimer_new(Q.base, settle_fire, m);
	evtimer_add(m->settle_ev, &tv);
}

/* m is finished but its file cannot be removed (e.g. a read-only
 * directory): record that it is ('Z'), so that a restart neither delivers
 * nor bounces it again, and keep it in memory, so that the rescans do not
 * load it again; say so once. */
static void keep_unremovable(struct qmsg *m, int err)
{
	time_t now = time(NULL);

	if (m->qf.finished == 0) {
		int fd = openat(Q.queue_dirfd[m->dir], m->qid,
		    O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0 && qfile_append_finished(fd, now) == 0)
			m->qf.finished = now;
		else
			log_warn("qid=%s: cannot record that it is finished: %s (a restart may "
			    "bounce it again)", m->qid, strerror(errno));
		if (fd >= 0)
			close(fd);
	}
	if (!m->unremovable)
		log_warn("qid=%s: cannot remove the finished queue file %s/%s/%s: %s; kept and "
		    "never delivered again, remove it by hand", m->qid, Q.cfg->queue_dir,
		    qdir_names[m->dir], m->qid, strerror(err));
	m->unremovable = 1;
}

/* Every recipient is done and recorded: queue the bounce (if one is due),
 * then remove the file, durably. */
static void msg_finish(struct qmsg *m)
{
	if (!m->bounced && m->qf.finished == 0 && outbound_bounce(m) < 0) {
		settle_later(m);        /* the original stays until its bounce is durable */
		return;
	}
	m->bounced = 1;
	if (removals_remove(m->dir, m->qid) < 0 && errno != ENOENT) {
		keep_unremovable(m, errno);
		return;
	}
	log_debug("qid=%s: removed", m->qid);
	msg_forget(m);
}

void sched_retry_unremovable(void)
{
	struct msg_list l = { NULL, 0 };
	strmap_each(Q.msgs, collect_unremovable, &l);
	for (size_t i = 0; i < l.n; i++) {
		struct qmsg *m = l.items[i];
		if (removals_remove(m->dir, m->qid) == 0 || errno == ENOENT) {
			log_info("qid=%s: finished queue file removed at last", m->qid);
			msg_forget(m);
		}
	}
	free(l.items);
}

/* Called when a message has no job left: first its results go to disk
 * (msg_commit), then it is removed when every recipient is done, else
 * deferred until its next retry. */
static void msg_settle(struct qmsg *m)
{
	if (m->unremovable)
		return;
	enum commit c = msg_commit(m);
	if (c == COMMIT_FAILED) {
		if (errno == ENOENT) {
			log_info("qid=%s: removed from the queue by an administrator", m->qid);
			msg_forget(m);
		} else {
			settle_later(m);
		}
		return;
	}
	if (c == COMMIT_REMOVED) {
		msg_forget(m);
		return;
	}
	if (pending_count(m) == 0) {
		msg_finish(m);
		return;
	}
	if (msg_move(m, QDIR_DEFERRED) < 0) {
		msg_forget(m);
		return;
	}
	arm_retry(m);
	/* a message just deferred waits for its retry on disk (as Postfix's
	 * do), costing an index entry, not its bookkeeping: at once when its
	 * retry is EVICT_WAIT_SECONDS away or more, or when mail waits on disk
	 * for room (its room goes to the others in turn) */
	time_t now = time(NULL);
	if ((Q.backlog || m->due - now >= EVICT_WAIT_SECONDS) && evict_msg(m, now) == 0)
		qmgr_refill_soon();
}

/* Past max_queue_lifetime: every recipient still pending has failed for
 * good (its last temporary error goes into the bounce). */
static void expire_pending(struct qmsg *m)
{
	for (size_t i = 0; i < m->qf.nrcpt; i++) {
		struct qrcpt *rc = &m->qf.rcpt[i];
		if (rc->state != RCPT_PENDING)
			continue;
		log_info("qid=%s from=<%s> to=<%s> delay=%.3f status=expired (%s)", m->qid,
		    m->qf.sender, rc->address, delay_since_arrival(m),
		    rc->last_error ? rc->last_error : "past max_queue_lifetime");
		if (rc->last_error == NULL)
			rc->last_error = xstrdup("4.4.7 message expired in the queue");
		rc->state = RCPT_EXPIRED;
		m->unrecorded[i] = 1;   /* msg_settle records them first */
		figures_expired(m);
	}
	msg_settle(m);
}

/* Retry m's pending recipients now (or expire them). */
static void retry_start(struct qmsg *m)
{
	if (m->njobs > 0 || m->unremovable)
		return;
	waiting_leave(m);
	if (msg_move(m, QDIR_ACTIVE) < 0) {
		msg_forget(m);
		return;
	}
	if (msg_expired(m, time(NULL))) {
		expire_pending(m);
		return;
	}
	schedule_pending(m);
}

/* m's timer: its delay warning, its retry, or both are due. */
static void retry_fire(evutil_socket_t fd, short what, void *arg)
{
	struct qmsg *m = arg;
	time_t now = time(NULL);
	time_t warn = warning_due(m);

	if (m->njobs > 0)
		return;
	/* not to be put back to disk while its warning is queued (arm_retry
	 * makes it a waiting one again) */
	waiting_leave(m);
	if (warn != 0 && warn <= now && !msg_expired(m, now)) {
		send_delay_warning(m, now);
		if (m->next_retry > now) {      /* only the warning was due */
			arm_retry(m);
			return;
		}
	}
	retry_start(m);
}

static int collect_deferred(const char *key, void *value, void *ctx)
{
	struct msg_list *l = ctx;
	struct qmsg *m = value;
	if (m->dir == QDIR_DEFERRED && m->njobs == 0)
		msg_list_add(l, m);
	return 0;
}

void sched_retry_all_now(void)
{
	/* collect first: retry_fire may remove entries from the map */
	struct msg_list l = { NULL, 0 };
	strmap_each(Q.msgs, collect_deferred, &l);
	for (size_t i = 0; i < l.n; i++)
		retry_start(l.items[i]);
	free(l.items);
	log_info("flush: %zu deferred message%s retried", l.n, l.n == 1 ? "" : "s");
	/* and those waiting on disk for lack of room, as room frees */
	qmgr_flush_disk();
}

/* ---- resolving recipients into jobs ---- */

static struct user *user_new(const char *key, uid_t uid, gid_t gid, const char *account,
    const char *home)
{
	struct user *u = xcalloc(1, sizeof(*u));
	u->key = xstrdup(key);
	u->uid = uid;
	u->gid = gid;
	u->account = xstrdup(account);
	u->home = xstrdup(home ? home : "/");
	TAILQ_INIT(&u->waiting);
	TAILQ_INIT(&u->workers);
	strmap_put(Q.users, key, u);
	return u;
}

/* The user of this identity, which address (part) resolves to. */
static struct user *user_get(uid_t uid, gid_t gid, const char *account, const char *home,
    const char *address, uint32_t part)
{
	char key[512];

	snprintf(key, sizeof(key), "%lu:%lu:%s", (unsigned long)uid, (unsigned long)gid, account);
	struct user *u = strmap_get(Q.users, key);
	if (u == NULL)
		u = user_new(key, uid, gid, account, home);
	if (u->witness == NULL || strcmp(u->witness, address) != 0) {
		free(u->witness);
		u->witness = xstrdup(address);
	}
	u->witness_part = part;
	return u;
}

struct user *sched_user_for(const struct db_resolution *r, char *err, size_t errlen)
{
	const char *account = r->account ? r->account : "";

	if (!Q.root_mode)
		return user_get(getuid(), getgid(), account, r->home ? r->home : Q.self_home,
		    r->address, DB_PART_PRIMARY);
	if (!r->account_resolved) {
		snprintf(err, errlen, "no account for this recipient (add it to uid)");
		return NULL;
	}
	return user_get(r->uid, r->gid, account, r->home, r->address, DB_PART_PRIMARY);
}

/* The identity instruction i of address's entry runs as (uid=/gid=,
 * db/identity.c).  NULL (err set) when the account is gone. */
static struct user *override_user(const struct rule_instruction *in, int i,
    const struct user *entry, const char *address, char *err, size_t errlen)
{
	struct db_identity id;

	if (db_override_identity(in, entry->uid, entry->gid, &id, err, errlen) < 0)
		return NULL;
	struct user *u = user_get(id.uid, id.gid, id.account, id.home, address, (uint32_t)i);
	db_identity_free(&id);
	return u;
}

/* In root mode, the identities other than the entry's that its uid=/gid=
 * instructions need, each with the list of instruction numbers it runs
 * ("only:2,5").  Returns how many (at most max), -1 (err set) on failure;
 * wants_spam: whether the entry gets a spam verdict (which those parts
 * then wait for, verdicts.c). */
static int override_parts(const char *address, const void *blob, size_t len,
    struct user *entry, struct user **users, struct buf *lists, int max, int *wants_spam,
    char *err, size_t errlen)
{
	struct rules_entry e = { 0 };
	int n = 0;

	if (!Q.root_mode || blob == NULL || len == 0)
		return 0;
	if (rules_entry_decode(blob, len, &e) < 0) {
		snprintf(err, errlen, "malformed rules entry");
		return -1;
	}
	*wants_spam = Q.cfg->spam_engine != 0 && e.spam != 0;
	for (int i = 0; i < e.ninstr && n >= 0; i++) {
		const struct rule_instruction *in = &e.instr[i];
		if (!(in->has_uid || in->has_gid) || !rule_action_writes_as_user(in->action))
			continue;
		struct user *u = override_user(in, i, entry, address, err, errlen);
		if (u == NULL) {
			n = -1;
			break;
		}
		if (u == entry)
			continue;       /* same identity after all: the primary runs it */
		int k = 0;
		while (k < n && users[k] != u)
			k++;
		if (k == n) {
			if (n == max) {
				snprintf(err, errlen, "more than %d uid=/gid= identities", max);
				n = -1;
				break;
			}
			users[n] = u;
			buf_reset(&lists[n]);
			buf_puts(&lists[n], "only:");
			n++;
		} else {
			buf_putc(&lists[k], ',');
		}
		buf_printf(&lists[k], "%d", i);
	}
	rules_entry_free(&e);
	return n;
}

static struct job *job_new(struct qmsg *m, struct user *u, size_t max)
{
	struct job *j = xcalloc(1, sizeof(*j));
	j->msg = m;
	j->user = u;
	j->rcpt = xcalloc(max, sizeof(*j->rcpt));
	m->lane_tag = backlog_tag(u);
	return j;
}

/* A job is built with room for its kind's most recipients (some 30 KB);
 * the one waiting in a queue keeps only what it uses, or thousands of
 * waiting jobs hold hundreds of MB. */
static void job_fit(struct job *j)
{
	if (j->n > 0)
		j->rcpt = xreallocarray(j->rcpt, j->n, sizeof(*j->rcpt));
}

struct delivery_result *job_rcpt_result(struct job_rcpt *jr)
{
	if (jr->result == NULL)
		jr->result = xcalloc(1, sizeof(*jr->result));
	return jr->result;
}

void job_rcpt_tempfail(struct job_rcpt *jr, const char *reason)
{
	struct delivery_result *r = job_rcpt_result(jr);

	jr->have_result = 1;
	memset(r, 0, sizeof(*r));
	r->status = DELIVERY_TEMPFAIL;
	snprintf(r->dsn, sizeof(r->dsn), "4.3.0");
	snprintf(r->text, sizeof(r->text), "%s", reason);
}

void sched_job_free(struct job *job)
{
	for (size_t i = 0; i < job->n; i++) {
		free(job->rcpt[i].result);
		free(job->rcpt[i].where);
		free(job->rcpt[i].forward);
		free(job->rcpt[i].run);
		free(job->rcpt[i].done);
		part_verdict_free(&job->rcpt[i].verdict);
	}
	free(job->rcpt);
	free(job->lmtp_dest);
	free(job);
}

static void fail_now(struct qmsg *m, size_t idx, enum delivery_status st, const char *dsn,
    const char *text)
{
	struct delivery_result r = { .status = st };
	snprintf(r.dsn, sizeof(r.dsn), "%s", dsn);
	snprintf(r.text, sizeof(r.text), "%s", text);
	apply_result(m, idx, &r, NULL, 0);
}

/* An outbound message (forward, bounce): its pending recipients go to the
 * relay, in jobs of up to MSG_RELAY_MAX_RCPTS. */
static void schedule_outbound(struct qmsg *m)
{
	struct job *j = NULL;

	for (size_t i = 0; i < m->qf.nrcpt; i++) {
		if (m->qf.rcpt[i].state != RCPT_PENDING || m->busy[i])
			continue;
		if (j == NULL || j->n == MSG_RELAY_MAX_RCPTS) {
			if (j != NULL) {
				job_fit(j);
				relay_enqueue(j);
			}
			j = job_new(m, NULL, MSG_RELAY_MAX_RCPTS);
			m->njobs++;
		}
		j->rcpt[j->n++].index = i;
		m->busy[i] = 1;
	}
	if (j != NULL) {
		job_fit(j);
		relay_enqueue(j);
	}
	if (m->njobs == 0)
		msg_settle(m);
	relay_dispatch();
}

/* The job of u in jobs[] with room for a part of `bytes` (workers.c,
 * job_part_bytes), or a new one; NULL when the table is full (the rest
 * waits for the next round). */
static struct job *job_for(struct job **jobs, int *njobs, int max, struct qmsg *m,
    struct user *u, size_t bytes, int for_verdicts)
{
	for (int k = 0; k < *njobs; k++)
		if (jobs[k]->user == u && jobs[k]->for_verdicts == for_verdicts &&
		    jobs[k]->n < MSG_JOB_MAX_RCPTS && bytes <= IPC_MAX_PAYLOAD - jobs[k]->bytes)
			return jobs[k];
	if (*njobs == max)
		return NULL;
	struct job *j = jobs[(*njobs)++] = job_new(m, u, MSG_JOB_MAX_RCPTS);
	j->bytes = job_head_bytes(m);
	j->for_verdicts = for_verdicts;
	return j;
}

/* for_verdict: a uid=/gid= part that waits for its primary part's verdict. */
static void add_part(struct job *j, size_t i, const struct db_resolution *res,
    const char *run, int for_verdict)
{
	struct job_rcpt *jr = &j->rcpt[j->n++];
	jr->index = i;
	jr->rules_version = qfile_rules_version(res->rules_blob, res->rules_len);
	jr->run = xstrdup(run);
	jr->awaiting_verdict = for_verdict;
	j->held += for_verdict;
	j->bytes += job_part_bytes(run, for_verdict);
}

#define MAX_IDENTITIES 8        /* per recipient, its entry's included */
/* List managers' destinations one scheduling round of a message fills
 * jobs for; recipients for more wait for the next round. */
#define MAX_LIST_DESTS 8

/* A recipient that belongs to a mailing list goes to the list manager
 * through the relay (LMTP), not to a worker: one job per destination
 * holds all of the message's recipients for it (up to
 * MSG_RELAY_MAX_RCPTS), so that a post is one LMTP transaction.  0 when
 * it is in a job, -1 when the table is full (it waits). */
static int add_list_rcpt(struct job **ljobs, int *nljobs, struct qmsg *m, size_t i,
    const char *dest)
{
	struct job *j = NULL;
	for (int k = 0; k < *nljobs && j == NULL; k++)
		if (strcmp(ljobs[k]->lmtp_dest, dest) == 0 && ljobs[k]->n < MSG_RELAY_MAX_RCPTS)
			j = ljobs[k];
	if (j == NULL) {
		if (*nljobs == MAX_LIST_DESTS)
			return -1;
		j = ljobs[(*nljobs)++] = job_new(m, NULL, MSG_RELAY_MAX_RCPTS);
		j->lmtp_dest = xstrdup(dest);
	}
	j->rcpt[j->n++].index = i;
	m->busy[i] = 1;
	return 0;
}

static void enqueue_list_jobs(struct job **ljobs, int nljobs, struct qmsg *m)
{
	for (int k = 0; k < nljobs; k++) {
		m->njobs++;
		job_fit(ljobs[k]);
		relay_enqueue(ljobs[k]);
	}
	if (nljobs > 0)
		relay_dispatch();
}

/* Leave the instructions in done (an earlier attempt delivered them) out
 * of the uid=/gid= parts ("only:N,..."); a part left with nothing is
 * dropped.  Returns the number of parts left. */
static int drop_done(struct user **users, struct buf *lists, int n, const char *done)
{
	int kept = 0;
	struct buf left = BUF_INIT;

	for (int k = 0; k < n; k++) {
		const char *p = lists[k].data + 5;      /* after "only:" */
		buf_reset(&left);
		buf_puts(&left, "only:");
		while (*p) {
			char *end;
			unsigned long x = strtoul(p, &end, 10);
			if (end == p)
				break;
			if (!qfile_list_has(done, x))
				buf_printf(&left, "%s%lu", left.len > 5 ? "," : "", x);
			p = *end == ',' ? end + 1 : end;
		}
		if (left.len == 5)
			continue;
		users[kept] = users[k];
		buf_reset(&lists[kept]);
		buf_puts(&lists[kept], left.data);
		kept++;
	}
	buf_free(&left);
	return kept;
}

/* A postmaster the databases do not know (RFC 5321 4.5.1: it was accepted
 * anyway) must reach somebody: in single-user mode the daemon's own user
 * gets it by default_delivery, under home_base as the virtual account
 * `postmaster`.  In root mode there is no account to run as (workers never
 * run as root): it waits in the queue, a temporary failure that says what
 * to add, and is never refused as unknown.  Returns 1 (res filled) or 0. */
static int postmaster_fallback(const char *address, struct db_resolution *res,
    char *err, size_t errlen)
{
	if (Q.root_mode) {
		snprintf(err, errlen, "no destination for postmaster: add postmaster@ "
		    "to the rules and uid databases");
		log_warn("<%s>: %s", address, err);
		return 0;
	}
	db_resolve_postmaster(res, Q.cfg->home_base);
	log_info("<%s>: not in the databases; default delivery for the postmaster", address);
	return 1;
}

/* Resolve every pending recipient that is not in a job yet and hand the
 * jobs to the users' queues.  A recipient whose rules run instructions as
 * other accounts (uid=, gid=) gets one part per identity; its result is
 * the worst of the parts.  The maildir/mbox/pipe instructions an earlier
 * attempt delivered (qrcpt.done) are left out of every part, and a
 * uid=/gid= part left with nothing is not sent.  Recipients that fail here
 * (unknown since they were accepted, database unreadable) get their result
 * at once. */
static void schedule_pending(struct qmsg *m)
{
	struct job *jobs[64];
	const int maxjobs = (int)(sizeof(jobs) / sizeof(jobs[0]));
	int njobs = 0;
	size_t failed[256];
	size_t nfailed = 0;
	char err[256];
	struct user *others[MAX_IDENTITIES - 1];
	struct buf lists[MAX_IDENTITIES - 1];
	struct job *ljobs[MAX_LIST_DESTS];
	int nljobs = 0;

	if (m->qf.outbound) {
		schedule_outbound(m);
		return;
	}
	for (int k = 0; k < MAX_IDENTITIES - 1; k++)
		lists[k] = (struct buf)BUF_INIT;
	for (size_t i = 0; i < m->qf.nrcpt; i++) {
		struct qrcpt *rc = &m->qf.rcpt[i];
		struct db_resolution res = { 0 };
		struct user *u = NULL;
		int nparts = 0, wants_spam = 0;
		if (rc->state != RCPT_PENDING || m->busy[i])
			continue;
		int found = Q.db ? db_resolve(Q.db, rc->address, Q.cfg->recipient_delimiter,
		    &res, err, sizeof(err)) : -1;
		if (Q.db == NULL)
			snprintf(err, sizeof(err), "databases not available");
		if (found == 0 && address_is_postmaster(rc->address))
			found = postmaster_fallback(rc->address, &res, err, sizeof(err)) ? 1 : -1;
		if (found > 0 && res.list_dest != NULL) {
			int full = add_list_rcpt(ljobs, &nljobs, m, i, res.list_dest);
			db_resolution_free(&res);
			if (full < 0)
				break;
			continue;
		}
		if (found == 0) {
			fail_now(m, i, DELIVERY_PERMFAIL, "5.1.1", "user unknown");
		} else if (found > 0 && (u = sched_user_for(&res, err, sizeof(err))) != NULL) {
			nparts = override_parts(res.address, res.rules_blob, res.rules_len, u, others,
			    lists, MAX_IDENTITIES - 1, &wants_spam, err, sizeof(err));
			if (nparts < 0)
				fail_now(m, i, DELIVERY_TEMPFAIL, "4.3.0", err);
		} else {
			fail_now(m, i, DELIVERY_TEMPFAIL, "4.3.0", err);
		}
		if (found <= 0 || u == NULL || nparts < 0) {
			if (nfailed < sizeof(failed) / sizeof(failed[0]))
				failed[nfailed++] = i;
			db_resolution_free(&res);
			continue;
		}
		/* the primary part runs everything the other parts do not, and
		 * no part what an earlier attempt delivered */
		struct buf except = BUF_INIT;
		buf_puts(&except, Q.root_mode ? "primary" : "all");
		for (int k = 0; k < nparts; k++) {
			buf_puts(&except, k == 0 ? ":except:" : ",");
			buf_puts(&except, lists[k].data + 5);   /* after "only:" */
		}
		if (rc->done != NULL &&
		    qfile_rules_version(res.rules_blob, res.rules_len) != rc->done_version) {
			/* the numbers are of an entry changed since: better a
			 * copy twice than one left out */
			log_info("qid=%s to=<%s>: rules changed since instructions %s delivered; "
			    "all run again", m->qid, rc->address, rc->done);
			free(rc->done);
			rc->done = NULL;
		}
		if (rc->done != NULL) {
			buf_puts(&except, nparts == 0 ? ":except:" : ",");
			buf_puts(&except, rc->done);
			nparts = drop_done(others, lists, nparts, rc->done);
		}
		/* a part too long for any job fails for good: it would for ever */
		size_t longest = job_part_bytes(except.data, 0);
		for (int k = 0; k < nparts; k++)
			if (job_part_bytes(lists[k].data, wants_spam) > longest)
				longest = job_part_bytes(lists[k].data, wants_spam);
		if (longest > IPC_MAX_PAYLOAD - job_head_bytes(m)) {
			snprintf(err, sizeof(err), "cannot hand to a worker: the list of "
			    "instructions to run takes %zu bytes, more than one job carries", longest);
			fail_now(m, i, DELIVERY_PERMFAIL, "5.3.0", err);
			if (nfailed < sizeof(failed) / sizeof(failed[0]))
				failed[nfailed++] = i;
			buf_free(&except);
			db_resolution_free(&res);
			continue;
		}
		/* every part must find room, or the recipient waits */
		struct job *parts[MAX_IDENTITIES];
		int room = 1;
		for (int k = 0; k <= nparts && room; k++) {
			parts[k] = job_for(jobs, &njobs, maxjobs, m, k == 0 ? u : others[k - 1],
			    k == 0 ? job_part_bytes(except.data, 0) :
			    job_part_bytes(lists[k - 1].data, wants_spam), k > 0 && wants_spam);
			room = parts[k] != NULL;
		}
		if (!room) {
			buf_free(&except);
			db_resolution_free(&res);
			break;
		}
		add_part(parts[0], i, &res, except.data, 0);
		buf_free(&except);
		for (int k = 1; k <= nparts; k++)
			add_part(parts[k], i, &res, lists[k - 1].data, wants_spam);
		m->busy[i] = (unsigned char)(nparts + 1);
		db_resolution_free(&res);
	}
	for (int k = 0; k < MAX_IDENTITIES - 1; k++)
		buf_free(&lists[k]);
	if (nfailed > 0 && njobs + nljobs > 0)
		msg_record(m);          /* else msg_settle records them */
	enqueue_list_jobs(ljobs, nljobs, m);
	for (int k = 0; k < njobs; k++) {
		if (jobs[k]->n == 0) {
			sched_job_free(jobs[k]);
			continue;
		}
		m->njobs++;
		job_fit(jobs[k]);
		if (jobs[k]->held > 0)
			verdicts_hold(m, jobs[k]);
		else
			user_enqueue(jobs[k]->user, jobs[k]);
	}
	if (m->njobs == 0)
		msg_settle(m);
	workers_dispatch();
}

/* A crash while a state record was being appended leaves it torn; it must
 * be cut off before anything else is appended after it. */
static void repair_torn_tail(struct qmsg *m, int rfd)
{
	struct stat st;
	if (fstat(rfd, &st) < 0 || st.st_size <= m->qf.end_offset)
		return;
	int fd = openat(Q.queue_dirfd[m->dir], m->qid, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 || qfile_repair_tail(fd, &m->qf) < 0)
		log_warn("qid=%s: cannot repair a torn state record: %s", m->qid, strerror(errno));
	else
		log_info("qid=%s: removed a torn state record", m->qid);
	if (fd >= 0)
		close(fd);
}

/* ---- entry points ---- */

/* A file in incoming/ that is not marked committed is still being written
 * (or was abandoned): not ours yet. */
static int committed_file(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && qfile_mode_committed(st.st_mode);
}

static void load_failed(const char *qid, enum qdir dir, int err)
{
	if (err != EBADMSG) {
		log_warn("qid=%s: cannot read: %s", qid, strerror(err));
	} else if (dir == QDIR_INCOMING) {
		/* marked but incomplete: the crash came before the fsync that
		 * precedes the reply, so this was never acknowledged */
		log_warn("qid=%s: incomplete queue file in incoming/ (never acknowledged); removed", qid);
		if (unlinkat(Q.queue_dirfd[dir], qid, 0) < 0 && errno != ENOENT)
			log_warn("qid=%s: cannot remove: %s", qid, strerror(errno));
	} else {
		log_warn("qid=%s: malformed queue file; moved to corrupt/", qid);
		if (queue_move(Q.cfg->queue_dir, qid, qdir_names[dir], "corrupt") == 0)
			figures_corrupt_add();
	}
}

/* Put m, deferred and waiting for its timer, back to disk: its file's
 * mtime says when the timer was due (the scans load a file of deferred/
 * only once its mtime has come).  Not one whose time has come (it is about
 * to run: it was loaded for that), nor one busy.  0 when it went. */
static int evict_msg(struct qmsg *m, time_t now)
{
	struct timespec times[2] = { { .tv_nsec = UTIME_OMIT },
		{ .tv_sec = m->due, .tv_nsec = backlog_mtime_nsec(m) } };

	if (!m->in_waiting || m->due <= now || m->njobs > 0 || m->dir != QDIR_DEFERRED ||
	    (m->settle_ev != NULL && evtimer_pending(m->settle_ev, NULL)))
		return -1;
	if (utimensat(Q.queue_dirfd[QDIR_DEFERRED], m->qid, times, AT_SYMLINK_NOFOLLOW) < 0) {
		log_warn("qid=%s: cannot note its retry time: %s", m->qid, strerror(errno));
		return -1;
	}
	log_debug("qid=%s: back to disk until %lld", m->qid, (long long)m->due);
	figures_msg_to_disk(m);
	backlog_put_msg(m);
	strmap_del(Q.msgs, m->qid);
	msg_free(m);
	Q.evicted++;
	return 0;
}

/* Make room: the waiting message that has waited longest goes back to
 * disk.  0 when one did. */
static int evict_one(void)
{
	struct qmsg *m;
	time_t now = time(NULL);

	TAILQ_FOREACH(m, &Q.waiting, waiting)
		if (evict_msg(m, now) == 0)
			return 0;
	return -1;
}

int sched_room(void)
{
	return strmap_count(Q.msgs) < Q.cfg->max_active_messages || evict_one() == 0;
}

int sched_load(const char *qid, enum qdir dir)
{
	if (!qid_valid(qid) || strmap_get(Q.msgs, qid) != NULL)
		return 0;
	int fd = openat(Q.queue_dirfd[dir], qid, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno != ENOENT)
			log_warn("qid=%s: cannot open: %s", qid, strerror(errno));
		return 0;
	}
	if (dir == QDIR_INCOMING && !committed_file(fd)) {
		close(fd);
		return 0;
	}
	struct stat st;
	if (!sched_room()) {
		int have_st = dir == QDIR_DEFERRED && fstat(fd, &st) == 0;
		close(fd);
		Q.backlog = 1;
		figures_msg_left_on_disk(qid, dir);
		backlog_put_file(qid, dir, have_st ? &st : NULL);
		return -1;
	}
	int flushed = dir == QDIR_DEFERRED && fstat(fd, &st) == 0 && st.st_mtime == QMGR_MTIME_FLUSHED;
	struct qmsg *m = xcalloc(1, sizeof(*m));
	snprintf(m->qid, sizeof(m->qid), "%s", qid);
	m->dir = dir;
	if (qfile_read(fd, &m->qf) < 0) {
		int e = errno;
		close(fd);
		free(m);
		load_failed(qid, dir, e);
		return 0;
	}
	repair_torn_tail(m, fd);
	close(fd);
	m->busy = xcalloc(m->qf.nrcpt, 1);
	m->unrecorded = xcalloc(m->qf.nrcpt, 1);
	strmap_put(Q.msgs, m->qid, m);
	backlog_loaded(m->qid);
	figures_msg_in(m);
	if (strmap_count(Q.msgs) > Q.peak_msgs)
		Q.peak_msgs = strmap_count(Q.msgs);
	if (m->qf.finished != 0) {
		/* its bounce is queued; only the removal was left to do */
		msg_finish(m);
		return 0;
	}
	/* Taken from incoming/: the move needs no fsync, a crash that loses it
	 * leaves a committed file in incoming/, which is loaded again. */
	if (dir == QDIR_INCOMING && msg_move(m, QDIR_ACTIVE) < 0) {
		msg_forget(m);
		return 0;
	}
	if (dir == QDIR_DEFERRED && pending_count(m) > 0) {
		m->retry_now = flushed;         /* retried now, not by retry_schedule */
		arm_retry(m);   /* at once when its time has already come */
		return 0;
	}
	log_debug("qid=%s: from=<%s> nrcpt=%zu size=%llu", qid, m->qf.sender, m->qf.nrcpt,
	    (unsigned long long)m->qf.msg_size);
	schedule_pending(m);
	return 0;
}

/* The recipient's rules forwarded it: queue the copy now.  Only a
 * recipient whose other deliveries all succeeded forwards (a retry would
 * forward again); a forward that cannot be queued is a temporary failure.
 * The copy is durable before the recipient's result is even applied, and
 * the result is recorded after: the other order could lose the forward.
 * A crash in between delivers the recipient again, and its forward is
 * queued again only if the first copy has left the queue already (its
 * queue id is made of m's and the recipient's, see outbound_forward).
 * While the daemon runs, a result that cannot be recorded stays in memory,
 * so nothing is forwarded twice then. */
static void queue_forward(struct qmsg *m, struct job_rcpt *jr)
{
	char *list = xstrdup(jr->forward);
	const char *addrs[MSG_FORWARD_MAX];
	size_t n = 0;

	for (char *save = NULL, *a = strtok_r(list, ",", &save); a != NULL && n < MSG_FORWARD_MAX;
	    a = strtok_r(NULL, ",", &save))
		addrs[n++] = a;
	if (n > 0 && outbound_forward(m, jr->index, addrs, n) < 0) {
		struct delivery_result *r = job_rcpt_result(jr);
		r->status = DELIVERY_TEMPFAIL;
		snprintf(r->dsn, sizeof(r->dsn), "4.3.0");
		snprintf(r->text, sizeof(r->text), "cannot queue the forward");
	}
	free(list);
}

/* A recipient deferred after some of its instructions delivered: those
 * are not run again (msg_record records them with the deferral). */
static void note_done(struct qmsg *m, const struct job_rcpt *jr)
{
	if (qfile_done_merge(&m->qf.rcpt[jr->index], jr->rules_version, jr->done) < 0)
		log_warn("qid=%s: worker sent a malformed list of deliveries done: %s", m->qid,
		    jr->done);
}

/* One part of a recipient split across identities is done: fold it into
 * the others (the worst status wins; destinations add up; the primary part
 * brings the forwards).  jr has its result (sched_job_finished made every
 * one).  Returns 1 when it was the last part, with jr holding the combined
 * result. */
static int merge_part(struct qmsg *m, struct job_rcpt *jr, uint64_t *started_usec)
{
	size_t i = jr->index;

	if (m->partial == NULL)
		m->partial = xcalloc(m->qf.nrcpt, sizeof(*m->partial));
	struct rcpt_partial *p = m->partial[i];
	if (p == NULL) {
		p = m->partial[i] = xcalloc(1, sizeof(*p));
		p->where = (struct buf)BUF_INIT;
		p->done = (struct buf)BUF_INIT;
		p->result = *jr->result;
	} else if (jr->result->status > p->result.status) {
		p->result = *jr->result;
	}
	if (*started_usec != 0 && (p->started_usec == 0 || *started_usec < p->started_usec))
		p->started_usec = *started_usec;
	if (jr->where && jr->where[0]) {
		if (p->where.len)
			buf_putc(&p->where, ',');
		buf_puts(&p->where, jr->where);
	}
	if (jr->forward && jr->forward[0] && p->forward == NULL)
		p->forward = xstrdup(jr->forward);
	if (jr->done && jr->done[0]) {
		if (p->done.len)
			buf_putc(&p->done, ',');
		buf_puts(&p->done, jr->done);
	}
	if (m->busy[i] > 1) {
		m->busy[i]--;
		return 0;
	}
	*jr->result = p->result;
	free(jr->where);
	jr->where = xstrdup(p->where.len ? p->where.data : "");
	free(jr->forward);
	jr->forward = p->forward;
	p->forward = NULL;
	free(jr->done);
	jr->done = p->done.len ? xstrdup(p->done.data) : NULL;
	*started_usec = p->started_usec;
	partial_free(p);
	m->partial[i] = NULL;
	return 1;
}

/* Every recipient of the job without a result gets a temporary failure
 * with this reason. */
static void fill_missing_results(struct job *job, const char *reason)
{
	for (size_t i = 0; i < job->n; i++) {
		struct job_rcpt *jr = &job->rcpt[i];
		if (!jr->have_result)
			job_rcpt_tempfail(jr, reason);
	}
}

void sched_job_failed(struct job *job, const char *reason)
{
	fill_missing_results(job, reason);
	sched_job_finished(job);
}

void sched_job_finished(struct job *job)
{
	struct qmsg *m = job->msg;

	verdicts_job_over(job);
	fill_missing_results(job, job->user ? "worker exited before reporting" :
	    "no result from the relay");
	for (size_t i = 0; i < job->n; i++) {
		struct job_rcpt *jr = &job->rcpt[i];
		struct delivery_result *r = job_rcpt_result(jr);       /* all have one now */
		uint64_t started_usec = job->started_usec;
		/* the relay's deliveries: to a list manager, or an outbound
		 * message's (forwards and bounces) */
		if (job->user == NULL)
			r->action = job->lmtp_dest ? RESULT_ACTION_LIST : RESULT_ACTION_FORWARD;
		if (m->busy[jr->index] > 1 || (m->partial && m->partial[jr->index])) {
			if (!merge_part(m, jr, &started_usec))
				continue;       /* other parts still run */
		}
		m->busy[jr->index] = 0;
		if (jr->done != NULL && r->status == DELIVERY_TEMPFAIL)
			note_done(m, jr);
		if (jr->forward != NULL && jr->forward[0] != '\0' &&
		    r->status == DELIVERY_OK)
			queue_forward(m, jr);
		apply_result(m, jr->index, r, jr->where, started_usec);
	}
	m->njobs--;
	sched_job_free(job);
	/* the results go to disk now; with no job left, msg_settle does it
	 * before it acts on them */
	if (m->njobs > 0)
		msg_record(m);
	else
		msg_settle(m);
}

static int free_one(const char *key, void *value, void *ctx)
{
	struct qmsg *m = value;
	/* a last try for results still waiting to be recorded (disk full):
	 * without them a restart delivers those recipients again */
	if (memchr(m->unrecorded, 1, m->qf.nrcpt) != NULL && msg_record(m) < 0)
		log_warn("qid=%s: stopping with delivery results not recorded: %s; they are "
		    "delivered again after the restart", m->qid, strerror(errno));
	msg_free(m);
	return 0;
}

void sched_free_all(void)
{
	strmap_each(Q.msgs, free_one, NULL);
	strmap_free(Q.msgs);
	Q.msgs = NULL;
}
