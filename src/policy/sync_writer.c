/*
 * sync_writer.c - the unprivileged end of a sync round: the only process
 * that writes policy.mdb.
 *
 * It runs as config `user` (root mode) and takes the root side's word
 * only for what root knows (the account, its uid, the file's stat); what
 * came from the reader -- a process running as the user who wrote the
 * file -- is read from the pipe with a size cap and decoded strictly
 * before it is stored.  A broken file keeps the policy stored before (if
 * it was the same uid's) and records the file's stat, so that it is not
 * read again until it changes.  Everything goes into one write
 * transaction, committed when the root side says so.
 */
#include "policy/sync.h"
#include "policy/policy_store.h"
#include "lib/buf.h"
#include "lib/ipc.h"
#include "lib/log.h"
#include "lib/msgtypes.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct writer {
	int sock;
	struct policy_store *store;
	unsigned changed, broken, removed;
	char error[512];        /* the first error: nothing is committed then */
	struct ipc_msg msg;
	struct ipc_msg out;
};

static int send_known(struct writer *w, const char *account,
    const struct policy_file_stat *st)
{
	ipc_init(&w->out, MSG_POLSYNC_KNOWN);
	ipc_add_str(&w->out, account);
	ipc_add_u32(&w->out, st->uid);
	ipc_add_i64(&w->out, st->mtime_sec);
	ipc_add_u32(&w->out, st->mtime_nsec);
	ipc_add_u64(&w->out, st->ino);
	ipc_add_u64(&w->out, st->size);
	return ipc_send(w->sock, &w->out);
}

static int list_one(void *arg, const char *account, const struct policy_file_stat *st,
    int broken)
{
	return send_known(arg, account, st) < 0 ? -1 : 0;
}

static void set_error(struct writer *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error(struct writer *w, const char *fmt, ...)
{
	va_list ap;
	if (w->error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(w->error, sizeof(w->error), fmt, ap);
	va_end(ap);
}

/* The reader's result from fd: its status byte and the compiled policy. */
static char read_result(int fd, struct buf *blob)
{
	char chunk[16384];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (blob->len + (size_t)n > POLSYNC_MAX_RESULT)
			return 0;
		buf_append(blob, chunk, (size_t)n);
	}
	if (blob->len == 0)
		return 0;
	return blob->data[0];
}

static void take_file(struct writer *w)
{
	const char *account;
	struct policy_store_entry e, old;
	struct buf result = BUF_INIT;
	struct user_policy *p = NULL;
	char err[512];
	int fd = w->msg.fd;

	memset(&e, 0, sizeof(e));
	ipc_get_str(&w->msg, &account);
	ipc_get_u32(&w->msg, &e.st.uid);
	ipc_get_i64(&w->msg, &e.st.mtime_sec);
	ipc_get_u32(&w->msg, &e.st.mtime_nsec);
	ipc_get_u64(&w->msg, &e.st.ino);
	ipc_get_u64(&w->msg, &e.st.size);
	if (ipc_end(&w->msg) < 0 || fd < 0) {
		set_error(w, "malformed request from the sync");
		if (fd >= 0)
			close(fd);
		return;
	}
	char status = read_result(fd, &result);
	close(fd);
	if (status == POLSYNC_NOFILE) {
		if (policy_store_delete(w->store, account, err, sizeof(err)) < 0)
			set_error(w, "%s", err);
		else
			w->removed++;
		goto out;
	}
	if (status == POLSYNC_GOOD &&
	    user_policy_decode(result.data + 1, result.len - 1, &p) == 0) {
		e.blob = result.data + 1;
		e.blob_len = result.len - 1;
		if (policy_store_put(w->store, account, &e, err, sizeof(err)) < 0)
			set_error(w, "%s", err);
		else
			w->changed++;
		goto out;
	}
	if (status != POLSYNC_BROKEN)
		log_warn("policy of %s: the reader sent no valid result; keeping the previous "
		    "policy", account);
	/* broken: the previous policy stays, the file is not read again
	 * until it changes */
	int had = policy_store_get_entry(w->store, account, &old, err, sizeof(err));
	if (had < 0) {
		set_error(w, "%s", err);
		goto out;
	}
	e.broken = 1;
	if (had == 1 && old.st.uid == e.st.uid) {
		e.blob = old.blob;
		e.blob_len = old.blob_len;
	}
	if (policy_store_put(w->store, account, &e, err, sizeof(err)) < 0)
		set_error(w, "%s", err);
	else
		w->broken++;
	free((void *)old.blob);
out:
	user_policy_free(p);
	buf_free(&result);
}

static void take_gone(struct writer *w)
{
	const char *account;
	char err[512];
	ipc_get_str(&w->msg, &account);
	if (ipc_end(&w->msg) < 0) {
		set_error(w, "malformed request from the sync");
		return;
	}
	if (policy_store_delete(w->store, account, err, sizeof(err)) < 0)
		set_error(w, "%s", err);
	else
		w->removed++;
}

static int finish(struct writer *w)
{
	char err[512];
	if (w->error[0] == '\0' && policy_store_commit(w->store, err, sizeof(err)) < 0)
		set_error(w, "%s", err);
	policy_store_abort(w->store);
	ipc_init(&w->out, MSG_POLSYNC_DONE);
	ipc_add_u32(&w->out, w->changed);
	ipc_add_u32(&w->out, w->broken);
	ipc_add_u32(&w->out, w->removed);
	ipc_add_str(&w->out, w->error);
	return ipc_send(w->sock, &w->out) < 0 || w->error[0] != '\0' ? 1 : 0;
}

int polsync_writer_run(int sock, const char *state_dir)
{
	struct writer *w = calloc(1, sizeof(*w));
	char err[512];
	int status = 1;

	if (w == NULL)
		return 1;
	w->sock = sock;
	if (policy_store_open(state_dir, 1, &w->store, err, sizeof(err)) < 0) {
		snprintf(w->error, sizeof(w->error), "%s", err);
		w->store = NULL;
	}
	for (;;) {
		int r = ipc_recv(sock, &w->msg);
		if (r <= 0)
			break;          /* the root side went away: nothing committed */
		if (w->store == NULL && w->msg.type != MSG_POLSYNC_COMMIT) {
			if (w->msg.fd >= 0)
				close(w->msg.fd);
			if (w->msg.type == MSG_POLSYNC_LIST)
				send_known(w, "", &(struct policy_file_stat){ 0 });
			continue;
		}
		switch (w->msg.type) {
		case MSG_POLSYNC_LIST:
			if (policy_store_list(w->store, list_one, w, err, sizeof(err)) < 0)
				set_error(w, "%s", err);
			if (send_known(w, "", &(struct policy_file_stat){ 0 }) < 0)
				goto out;
			break;
		case MSG_POLSYNC_FILE:
			take_file(w);
			break;
		case MSG_POLSYNC_GONE:
			take_gone(w);
			break;
		case MSG_POLSYNC_COMMIT:
			if (w->store == NULL) {
				ipc_init(&w->out, MSG_POLSYNC_DONE);
				ipc_add_u32(&w->out, 0);
				ipc_add_u32(&w->out, 0);
				ipc_add_u32(&w->out, 0);
				ipc_add_str(&w->out, w->error);
				ipc_send(sock, &w->out);
				goto out;
			}
			status = finish(w);
			goto out;
		default:
			if (w->msg.fd >= 0)
				close(w->msg.fd);
			set_error(w, "unexpected message from the sync");
			break;
		}
	}
out:
	policy_store_close(w->store);
	free(w);
	return status;
}
