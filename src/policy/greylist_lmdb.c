/*
 * greylist_lmdb.c - greylisting state in state_dir/greylist.mdb.
 *
 * One write transaction per check, opened MDB_NOSYNC: the file is synced
 * every GREYLIST_LMDB_SYNC_INTERVAL seconds by a thread (fd_syncer.c, so
 * that the loop never waits for the disk) and at close, not per request,
 * so a crash only greylists a few triplets again.  A timer purges expired
 * records every second, a bounded number per step, resuming where the
 * last step stopped.  A full map is logged (once a minute at most) and answers
 * UNAVAILABLE; nothing here stops the service.
 */
#include "policy/greylist_store.h"
#include "policy/fd_syncer.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <event2/event.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct gl_lmdb {
	MDB_env *env;
	MDB_dbi dbi;
	char *path;
	size_t mapsize;
	const struct greylist_params *params;
	struct event *tick;             /* purge steps */
	struct fd_syncer *syncer;       /* syncs to disk */
	struct buf purge_from;          /* key the next purge step starts at; empty = first */
	time_t last_full_log;
	time_t last_error_log;
};

static MDB_val val_of(const struct buf *b)
{
	MDB_val v = { b->len, b->data };
	return v;
}

/* Once a minute at most, so that a full disk does not flood the log. */
static void log_store_error(struct gl_lmdb *l, int rc, const char *what)
{
	time_t now = time(NULL);
	if (rc == MDB_MAP_FULL) {
		if (now - l->last_full_log < 60)
			return;
		l->last_full_log = now;
		log_warn("greylist: %s is full (map size %zu KiB): greylisting answers "
		    "UNAVAILABLE until expired triplets are purged (greylist_max_age)",
		    l->path, l->mapsize >> 10);
		return;
	}
	if (now - l->last_error_log < 60)
		return;
	l->last_error_log = now;
	log_warn("greylist: %s: %s: %s", l->path, what, mdb_strerror(rc));
}

static size_t purge(struct gl_lmdb *l, time_t now, size_t max);

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	purge(arg, time(NULL), GREYLIST_LMDB_PURGE_STEP);
}

/* Open l->path into l->env and l->dbi: 0, or an LMDB error (err set). */
static int env_open(struct gl_lmdb *l, char *err, size_t errlen)
{
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_env_create(&l->env)) != 0) {
		snprintf(err, errlen, "mdb_env_create: %s", mdb_strerror(rc));
		l->env = NULL;
		return rc;
	}
	mdb_env_set_mapsize(l->env, l->mapsize);
	if ((rc = mdb_env_open(l->env, l->path, MDB_NOSUBDIR | MDB_NOSYNC, 0600)) != 0 ||
	    (rc = mdb_txn_begin(l->env, NULL, 0, &txn)) != 0)
		goto fail;
	if ((rc = mdb_dbi_open(txn, NULL, 0, &l->dbi)) != 0) {
		mdb_txn_abort(txn);
		goto fail;
	}
	if ((rc = mdb_txn_commit(txn)) != 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "%s: %s", l->path, mdb_strerror(rc));
	mdb_env_close(l->env);
	l->env = NULL;
	return rc;
}

struct gl_lmdb *gl_lmdb_open(const char *state_dir, size_t mapsize,
    const struct greylist_params *params, struct event_base *base, char *err, size_t errlen)
{
	struct gl_lmdb *l = xcalloc(1, sizeof(*l));
	int rc;

	l->path = xasprintf("%s/%s", state_dir, GREYLIST_LMDB_FILE);
	l->mapsize = mapsize;
	l->params = params;
	rc = env_open(l, err, errlen);
	if (rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ||
	    rc == MDB_VERSION_MISMATCH) {
		/* Greylisting state is worth less than a service that runs (a
		 * system crash between syncs can leave the file broken). */
		char *aside = xasprintf("%s.broken", l->path);
		if (rename(l->path, aside) == 0) {
			log_warn("greylist: %s: %s; moved aside to %s: greylisting starts over",
			    l->path, mdb_strerror(rc), aside);
			rc = env_open(l, err, errlen);
		}
		free(aside);
	}
	if (rc != 0)
		goto fail;
	if (base != NULL) {
		struct timeval tv = { GREYLIST_LMDB_TICK, 0 };
		int fd;
		l->tick = event_new(base, -1, EV_PERSIST, tick_cb, l);
		event_add(l->tick, &tv);
		if (mdb_env_get_fd(l->env, &fd) == 0)
			l->syncer = fd_syncer_start(fd, GREYLIST_LMDB_SYNC_INTERVAL, l->path);
	}
	return l;
fail:
	gl_lmdb_close(l);
	return NULL;
}

static void get_records(MDB_txn *txn, MDB_dbi dbi, const struct buf *tkey,
    const struct buf *ckey, struct greylist_triplet *t, struct greylist_client *c)
{
	MDB_val k, v;

	memset(t, 0, sizeof(*t));
	memset(c, 0, sizeof(*c));
	k = val_of(tkey);
	if (mdb_get(txn, dbi, &k, &v) == 0)
		greylist_triplet_decode(v.mv_data, v.mv_size, t);   /* malformed: absent */
	k = val_of(ckey);
	if (mdb_get(txn, dbi, &k, &v) == 0)
		greylist_client_decode(v.mv_data, v.mv_size, c);
}

static int put_text(MDB_txn *txn, MDB_dbi dbi, const struct buf *key, const struct buf *text)
{
	MDB_val k = val_of(key), v = val_of(text);
	return mdb_put(txn, dbi, &k, &v, 0);
}

void gl_lmdb_check(struct gl_lmdb *l, const struct buf *triplet_key,
    const struct buf *client_key, time_t now, struct greylist_answer *out)
{
	struct greylist_triplet t;
	struct greylist_client c;
	struct buf text = BUF_INIT;
	MDB_txn *txn;
	int rc, write;
	const char *what = "mdb_txn_begin";

	if ((rc = mdb_txn_begin(l->env, NULL, 0, &txn)) != 0)
		goto fail;
	get_records(txn, l->dbi, triplet_key, client_key, &t, &c);
	write = greylist_decide(l->params, now, &c, &t, out);
	what = "mdb_put";
	if (write & GREYLIST_WRITE_TRIPLET) {
		greylist_triplet_encode(&t, &text);
		if ((rc = put_text(txn, l->dbi, triplet_key, &text)) != 0)
			goto abort;
	}
	if (write & GREYLIST_WRITE_CLIENT) {
		buf_reset(&text);
		greylist_client_encode(&c, &text);
		if ((rc = put_text(txn, l->dbi, client_key, &text)) != 0)
			goto abort;
	}
	buf_free(&text);
	if (write == 0) {
		mdb_txn_abort(txn);
		return;
	}
	what = "mdb_txn_commit";
	if ((rc = mdb_txn_commit(txn)) == 0)
		return;
	goto fail;
abort:
	buf_free(&text);
	mdb_txn_abort(txn);
fail:
	log_store_error(l, rc, what);
	memset(out, 0, sizeof(*out));
	out->verdict = GREYLIST_UNAVAILABLE;
}

/* A record the purge removes: expired, or not ours to understand. */
static int purgeable(const struct greylist_params *p, time_t now, const MDB_val *k,
    const MDB_val *v)
{
	static const char tp[] = GREYLIST_TRIPLET_PREFIX, cp[] = GREYLIST_CLIENT_PREFIX;
	if (k->mv_size >= sizeof(tp) - 1 && memcmp(k->mv_data, tp, sizeof(tp) - 1) == 0) {
		struct greylist_triplet t;
		return greylist_triplet_decode(v->mv_data, v->mv_size, &t) < 0 ||
		    greylist_triplet_expired(p, now, &t);
	}
	if (k->mv_size >= sizeof(cp) - 1 && memcmp(k->mv_data, cp, sizeof(cp) - 1) == 0) {
		struct greylist_client c;
		return greylist_client_decode(v->mv_data, v->mv_size, &c) < 0 ||
		    greylist_client_expired(p, now, &c);
	}
	return 1;
}

/* Look at up to max records from where the last step stopped and delete
 * the expired ones (keys copied first: deleting under a cursor moves it). */
static int purge_step(struct gl_lmdb *l, time_t now, size_t max, size_t *removed)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	struct buf doomed = BUF_INIT;   /* size_t length, key bytes, ... */
	size_t seen = 0, n = 0;
	int rc;

	*removed = 0;
	if ((rc = mdb_txn_begin(l->env, NULL, 0, &txn)) != 0)
		return rc;
	if ((rc = mdb_cursor_open(txn, l->dbi, &cur)) != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	if (l->purge_from.len > 0) {
		k = val_of(&l->purge_from);
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	} else {
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	}
	for (; rc == 0 && seen < max; seen++) {
		if (purgeable(l->params, now, &k, &v)) {
			buf_append(&doomed, &k.mv_size, sizeof(k.mv_size));
			buf_append(&doomed, k.mv_data, k.mv_size);
			n++;
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	buf_reset(&l->purge_from);
	if (rc == 0)                    /* the next step starts here */
		buf_append(&l->purge_from, k.mv_data, k.mv_size);
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		goto fail;
	for (size_t off = 0; off < doomed.len; off += k.mv_size) {
		memcpy(&k.mv_size, doomed.data + off, sizeof(k.mv_size));
		off += sizeof(k.mv_size);
		k.mv_data = doomed.data + off;
		if ((rc = mdb_del(txn, l->dbi, &k, NULL)) != 0)
			goto fail;
	}
	buf_free(&doomed);
	if ((rc = mdb_txn_commit(txn)) != 0)
		return rc;
	*removed = n;
	return 0;
fail:
	buf_free(&doomed);
	mdb_txn_abort(txn);
	return rc;
}

/* A full map cannot even delete (copy-on-write needs pages): grow it a
 * little, once per step, so that the purge can make room. */
static size_t purge(struct gl_lmdb *l, time_t now, size_t max)
{
	struct buf from = BUF_INIT;
	size_t removed;
	int rc;

	buf_append(&from, l->purge_from.data, l->purge_from.len);
	rc = purge_step(l, now, max, &removed);
	if (rc == MDB_MAP_FULL) {
		size_t more = l->mapsize / 16 > 65536 ? l->mapsize / 16 : 65536;
		if (mdb_env_set_mapsize(l->env, l->mapsize + more) == 0) {
			l->mapsize += more;
			log_warn("greylist: %s: map size grown to %zu KiB so that the purge can "
			    "delete", l->path, l->mapsize >> 10);
			buf_reset(&l->purge_from);
			buf_append(&l->purge_from, from.data, from.len);
			rc = purge_step(l, now, max, &removed);
		}
	}
	buf_free(&from);
	if (rc != 0) {
		log_store_error(l, rc, "purge");
		return 0;
	}
	if (removed > 0)
		log_debug("greylist: purged %zu expired records", removed);
	return removed;
}

size_t gl_lmdb_tick(struct gl_lmdb *l, time_t now, size_t max)
{
	size_t removed = purge(l, now, max);
	int rc = mdb_env_sync(l->env, 1);
	if (rc != 0)
		log_store_error(l, rc, "mdb_env_sync");
	return removed;
}

void gl_lmdb_close(struct gl_lmdb *l)
{
	if (l == NULL)
		return;
	if (l->tick != NULL)
		event_free(l->tick);
	fd_syncer_stop(l->syncer);
	if (l->env != NULL) {
		mdb_env_sync(l->env, 1);
		mdb_env_close(l->env);
	}
	buf_free(&l->purge_from);
	free(l->path);
	free(l);
}

int gl_lmdb_peek(const char *state_dir, const struct greylist_params *params,
    const struct buf *triplet_key, const struct buf *client_key, time_t now,
    struct greylist_answer *out, char *err, size_t errlen)
{
	struct greylist_triplet t;
	struct greylist_client c;
	char *path = xasprintf("%s/%s", state_dir, GREYLIST_LMDB_FILE);
	char *lock = xasprintf("%s-lock", path);
	unsigned flags = MDB_NOSUBDIR | MDB_RDONLY;
	MDB_env *env = NULL;
	MDB_txn *txn;
	int rc, ret = -1;

	memset(&t, 0, sizeof(t));
	memset(&c, 0, sizeof(c));
	if (access(path, F_OK) < 0) {
		if (errno != ENOENT) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			goto out;
		}
		goto decide;            /* nothing recorded yet */
	}
	/* Use the service's lock file, never create one (it would be ours,
	 * and the service could not open it). */
	if (access(lock, F_OK) < 0)
		flags |= MDB_NOLOCK;
	if ((rc = mdb_env_create(&env)) != 0 ||
	    (rc = mdb_env_open(env, path, flags, 0600)) != 0 ||
	    (rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0) {
		snprintf(err, errlen, "%s: %s", path, mdb_strerror(rc));
		goto out;
	}
	MDB_dbi dbi;
	if ((rc = mdb_dbi_open(txn, NULL, 0, &dbi)) != 0) {
		mdb_txn_abort(txn);
		snprintf(err, errlen, "%s: %s", path, mdb_strerror(rc));
		goto out;
	}
	get_records(txn, dbi, triplet_key, client_key, &t, &c);
	mdb_txn_abort(txn);
decide:
	greylist_decide(params, now, &c, &t, out);
	ret = 0;
out:
	if (env != NULL)
		mdb_env_close(env);
	free(path);
	free(lock);
	return ret;
}
