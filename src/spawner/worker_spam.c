/*
 * worker_spam.c - the spam verdict in the worker: one check per message
 * and user (a job's recipients all belong to this worker's user), on first
 * need, with the limits of the config.
 *
 * A message over spam_max_size is not checked; one whose check hits
 * spam_timeout is delivered unchecked; either way a header says so, and the
 * rules see no spam (score 0).  After a timeout, an engine error, or
 * spam_max_checks checks, the worker asks to be replaced when the job is
 * done (a fresh fork of the spawner's warm interpreter).  Bayes learning
 * goes to the journal, synced every spam_learn_sync and at exit.  Checks
 * and learning wait for a turn from the qmgr (spam_concurrency).
 */
#include "spawner/worker_private.h"
#include "lib/fsutil.h"
#include "lib/log.h"
#include "lib/msgtypes.h"
#include "lib/xalloc.h"
#include "mime/mime.h"
#include "spam/spam.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static struct {
	int ready;              /* the engine is loaded and switched to our user */
	unsigned long checks;
	int retire;
	int unsynced;           /* learned since the last journal sync */
	time_t last_sync;
	char user[256];
} S;

void worker_spam_init(const char *user, const char *home)
{
	char err[512];

	snprintf(S.user, sizeof(S.user), "%s", user && *user ? user : "-");
	S.last_sync = time(NULL);
	if (worker_cfg->spam_engine == 0)
		return;
	if (!spam_engine_loaded()) {
		log_warn("spam: user=%s: the engine is not loaded; messages are delivered "
		    "unchecked", S.user);
		return;
	}
	if (spam_engine_user(user, home, err, sizeof(err)) < 0) {
		log_warn("spam: user=%s: %s; messages are delivered unchecked", S.user, err);
		return;
	}
	S.ready = 1;
}

int worker_spam_wanted(int entry_spam)
{
	return worker_cfg->spam_engine != 0 && entry_spam != 0;
}

/* A header saying why the copy was not checked. */
static void set_note(struct worker_spam *ws, const char *why)
{
	free(ws->headers);
	ws->headers = xasprintf("X-Mailprocd-Spam: not checked (%s)\n", why);
}

/* A checked copy carries this host's verdict only: X-Spam-* fields already
 * in the message (another filter's, or forged) are left out of it, as
 * SpamAssassin itself does when it marks a message (X-Spam-Prev-* stay).
 * Only a message that has some pays for the filtered copy. */
static void filter_old_fields(struct worker_spam *ws, const struct qfile *qf, const char *msg,
    size_t len)
{
	struct buf copy = BUF_INIT;

	if (mime_strip_fields(msg, len, "X-Spam-", "X-Spam-Prev-", &copy) == 0)
		return;
	int fd = memfd_create("mailprocd-copy", MFD_CLOEXEC);
	if (fd < 0 || write_all(fd, copy.data, copy.len) < 0) {
		log_warn("qid=%s user=%s: cannot leave out the message's own X-Spam-* fields: %s",
		    qf->qid, S.user, strerror(errno));
		if (fd >= 0)
			close(fd);
	} else {
		ws->filtered = 1;
		ws->filtered_fd = fd;
		ws->filtered_size = copy.len;
	}
	buf_free(&copy);
}

void worker_spam_get(struct worker_spam *ws, const struct qfile *qf, const char *msg,
    size_t len)
{
	struct spam_verdict v;
	char err[512], why[128];

	if (ws->done)
		return;
	ws->done = 1;
	if (!S.ready) {
		set_note(ws, "spam engine unavailable");
		return;
	}
	if (ws->stopped_before) {
		set_note(ws, "the check was stopped after spam_timeout");
		log_info("qid=%s user=%s spam=skipped (an earlier check was stopped)", qf->qid,
		    S.user);
		return;
	}
	if (len > worker_cfg->spam_max_size) {
		snprintf(why, sizeof(why), "message larger than spam_max_size, %llu bytes",
		    (unsigned long long)worker_cfg->spam_max_size);
		set_note(ws, why);
		log_info("qid=%s user=%s spam=skipped size=%zu", qf->qid, S.user, len);
		return;
	}
	memset(&v, 0, sizeof(v));
	worker_check_begin();
	int r = spam_engine_check(msg, len, &v, err, sizeof(err));
	worker_check_end();
	if (r < 0) {
		log_warn("qid=%s user=%s spam: check failed: %s", qf->qid, S.user, err);
		set_note(ws, "spam engine error");
		S.retire = 1;
		return;
	}
	S.checks++;
	if (S.checks >= worker_cfg->spam_max_checks)
		S.retire = 1;
	if (v.timed_out) {
		log_warn("qid=%s user=%s spam=timeout ms=%u (over spam_timeout; delivered "
		    "unchecked, worker replaced)", qf->qid, S.user, v.ms);
		snprintf(why, sizeof(why), "over spam_timeout, %llu s",
		    (unsigned long long)worker_cfg->spam_timeout);
		set_note(ws, why);
		S.retire = 1;
		spam_verdict_free(&v);
		return;
	}
	log_info("qid=%s user=%s spam=%s score=%.1f required=%.1f tests=%s ms=%u cpu_ms=%u", qf->qid,
	    S.user, v.is_spam ? "yes" : "no", v.score, v.required,
	    v.tests[0] ? v.tests : "none", v.ms, v.cpu_ms);
	if (v.autolearned)
		S.unsynced = 1;         /* SpamAssassin wrote to the journal */
	ws->checked = 1;
	filter_old_fields(ws, qf, msg, len);
	ws->is_spam = v.is_spam;
	ws->score = v.score;
	free(ws->headers);
	ws->headers = v.headers;
	v.headers = NULL;
	spam_verdict_free(&v);
}

/* Header lines as a verdict has them: fields named X-Spam-... or
 * X-Mailprocd-Spam, folded lines, printable ASCII and tabs, each line
 * ended by LF, at most MSG_VERDICT_HEADERS_MAX bytes. */
static int verdict_headers_valid(const char *h)
{
	size_t len = strlen(h);
	int at_start = 1;

	if (len > MSG_VERDICT_HEADERS_MAX || (len > 0 && h[len - 1] != '\n'))
		return 0;
	for (const char *p = h; *p; p++) {
		if (at_start && *p != ' ' && *p != '\t' && strncasecmp(p, "X-Spam-", 7) != 0 &&
		    strncasecmp(p, "X-Mailprocd-Spam:", 17) != 0)
			return 0;
		if (at_start && (*p == ' ' || *p == '\t') && p == h)
			return 0;
		at_start = *p == '\n';
		if (*p != '\n' && *p != '\t' && (*p < 0x20 || *p > 0x7e))
			return 0;
	}
	return 1;
}

void worker_spam_given(struct worker_spam *ws, const struct worker_rcpt *rc,
    const struct qfile *qf, const char *msg, size_t len)
{
	ws->done = 1;
	if (rc->given_verdict == VERDICT_NONE)
		return;
	if (!verdict_headers_valid(rc->given_headers)) {
		log_warn("qid=%s user=%s: REFUSED the spam verdict header lines handed over "
		    "for a uid=/gid= part; the copy goes without them", qf->qid, S.user);
	} else if (rc->given_headers[0] != '\0') {
		ws->headers = xstrdup(rc->given_headers);
	}
	if (rc->given_verdict != VERDICT_CHECKED)
		return;
	ws->checked = 1;
	ws->is_spam = rc->given_is_spam != 0;
	ws->score = (double)rc->given_score / 1000.0;
	filter_old_fields(ws, qf, msg, len);
}

const char *worker_spam_view(struct worker_spam *ws, const char *msg, size_t len,
    size_t *outlen)
{
	*outlen = len;
	if (!ws->checked || ((ws->headers == NULL || ws->headers[0] == '\0') && !ws->filtered))
		return msg;
	if (!ws->view_built) {
		ws->view_built = 1;
		buf_reset(&ws->view);
		if (ws->headers != NULL)
			buf_puts(&ws->view, ws->headers);
		if (ws->filtered) {
			size_t at = ws->view.len;
			buf_reserve(&ws->view, (size_t)ws->filtered_size);
			if (pread_all(ws->filtered_fd, ws->view.data + at, (size_t)ws->filtered_size,
			    0) < 0) {
				log_warn("user=%s: cannot read the filtered copy back: %s", S.user,
				    strerror(errno));
				ws->view.len = at;
				buf_append(&ws->view, msg, len);
			} else {
				ws->view.len = at + (size_t)ws->filtered_size;
				ws->view.data[ws->view.len] = '\0';
			}
		} else {
			buf_append(&ws->view, msg, len);
		}
	}
	*outlen = ws->view.len;
	return ws->view.data;
}

void worker_spam_reset(struct worker_spam *ws)
{
	if (ws->filtered)
		close(ws->filtered_fd);
	buf_free(&ws->view);
	free(ws->headers);
	memset(ws, 0, sizeof(*ws));
}

int worker_spam_retiring(void)
{
	return S.retire;
}

unsigned long worker_spam_checks(void)
{
	return S.checks;
}

int worker_spam_learn(const char *msg, size_t len, int is_spam, char *err, size_t errlen)
{
	if (!S.ready) {
		snprintf(err, errlen, "spam engine not available for this user");
		return -1;
	}
	worker_check_begin();
	int r = spam_engine_learn(msg, len, is_spam, err, errlen);
	worker_check_end();
	if (r < 0)
		return -1;
	S.unsynced = 1;
	return 0;
}

int worker_spam_next_sync_ms(void)
{
	if (!S.ready || !S.unsynced)
		return -1;
	time_t due = S.last_sync + (time_t)worker_cfg->spam_learn_sync;
	time_t now = time(NULL);
	if (due <= now)
		return 0;
	/* a day at most: the caller's poll() takes an int of milliseconds */
	return due - now > 86400 ? 86400 * 1000 : (int)(due - now) * 1000;
}

void worker_spam_sync(void)
{
	char err[512];

	if (!S.ready || !S.unsynced)
		return;
	if (spam_engine_sync(err, sizeof(err)) < 0)
		log_warn("spam: user=%s: Bayes journal sync: %s", S.user, err);
	S.unsynced = 0;
	S.last_sync = time(NULL);
}

void worker_spam_exit(void)
{
	if (S.ready)
		spam_engine_shutdown();     /* syncs the journal */
	S.ready = 0;
}
