/*
 * policy_store.c - state_dir/policy.mdb (see policy_store.h).
 *
 * The record is big-endian: version(u8 = 1) uid(u32) mtime_sec(i64)
 * mtime_nsec(u32) ino(u64) size(u64) flags(u8: 1 broken) then the compiled
 * policy to the end (none when empty).  Readers open the file read-only
 * (with LMDB's lock file, so they never see a half-written page); a file
 * that does not exist yet is an empty store, opened at the first lookup
 * that finds it.  A map the writer grew is followed (MDB_MAP_RESIZED).
 */
#include "policy/policy_store.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define VERSION 1
#define HEADER_LEN (1 + 4 + 8 + 4 + 8 + 8 + 1)
#define FLAG_BROKEN 1
#define WRITER_MAPSIZE ((size_t)1 << 30)

struct policy_store {
	char *path;
	int writable;
	MDB_env *env;           /* NULL: read side, the file does not exist (yet) */
	MDB_dbi dbi;
	MDB_txn *wtxn;          /* the round's write transaction */
};

static void put_be(struct buf *b, uint64_t v, int bytes)
{
	for (int i = bytes - 1; i >= 0; i--)
		buf_putc(b, (char)(unsigned char)(v >> (8 * i)));
}

static uint64_t get_be(const unsigned char *p, int bytes)
{
	uint64_t v = 0;
	for (int i = 0; i < bytes; i++)
		v = (v << 8) | p[i];
	return v;
}

void policy_store_encode(const struct policy_store_entry *e, struct buf *out)
{
	put_be(out, VERSION, 1);
	put_be(out, e->st.uid, 4);
	put_be(out, (uint64_t)e->st.mtime_sec, 8);
	put_be(out, e->st.mtime_nsec, 4);
	put_be(out, e->st.ino, 8);
	put_be(out, e->st.size, 8);
	put_be(out, e->broken ? FLAG_BROKEN : 0, 1);
	if (e->blob != NULL)
		buf_append(out, e->blob, e->blob_len);
}

int policy_store_decode(const void *data, size_t len, struct policy_store_entry *out)
{
	const unsigned char *p = data;
	memset(out, 0, sizeof(*out));
	if (len < HEADER_LEN || p[0] != VERSION)
		return -1;
	out->st.uid = (uint32_t)get_be(p + 1, 4);
	out->st.mtime_sec = (int64_t)get_be(p + 5, 8);
	out->st.mtime_nsec = (uint32_t)get_be(p + 13, 4);
	out->st.ino = get_be(p + 17, 8);
	out->st.size = get_be(p + 25, 8);
	unsigned flags = p[33];
	if ((flags & ~FLAG_BROKEN) != 0 || out->st.mtime_nsec >= 1000000000u)
		return -1;
	out->broken = (flags & FLAG_BROKEN) != 0;
	if (len > HEADER_LEN) {
		out->blob = p + HEADER_LEN;
		out->blob_len = len - HEADER_LEN;
	}
	return 0;
}

static int env_open(struct policy_store *s, char *err, size_t errlen)
{
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_env_create(&s->env)) != 0) {
		snprintf(err, errlen, "mdb_env_create: %s", mdb_strerror(rc));
		s->env = NULL;
		return -1;
	}
	mdb_env_set_maxdbs(s->env, 2);
	if (s->writable)
		mdb_env_set_mapsize(s->env, WRITER_MAPSIZE);
	rc = mdb_env_open(s->env, s->path, MDB_NOSUBDIR | (s->writable ? 0 : MDB_RDONLY), 0600);
	if (rc == 0)
		rc = mdb_txn_begin(s->env, NULL, s->writable ? 0 : MDB_RDONLY, &txn);
	if (rc == 0) {
		rc = mdb_dbi_open(txn, POLICY_STORE_DB, s->writable ? MDB_CREATE : 0, &s->dbi);
		rc = rc == 0 ? mdb_txn_commit(txn) : (mdb_txn_abort(txn), rc);
	}
	if (rc != 0) {
		mdb_env_close(s->env);
		s->env = NULL;
		/* the writer made the file but has not committed the named db
		 * yet: as good as no file */
		if (!s->writable && rc == MDB_NOTFOUND)
			return 0;
		snprintf(err, errlen, "%s: %s", s->path, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

/* Read side: open the file if it exists now.  0 (s->env may stay NULL), -1. */
static int ensure_open(struct policy_store *s, char *err, size_t errlen)
{
	struct stat st;
	if (s->env != NULL)
		return 0;
	if (stat(s->path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", s->path, strerror(errno));
		return -1;
	}
	return env_open(s, err, errlen);
}

int policy_store_open(const char *state_dir, int writable,
    struct policy_store **out, char *err, size_t errlen)
{
	struct policy_store *s = xcalloc(1, sizeof(*s));
	s->path = xasprintf("%s/%s", state_dir, POLICY_STORE_FILE);
	s->writable = writable;
	if ((writable ? env_open(s, err, errlen) : ensure_open(s, err, errlen)) < 0) {
		policy_store_close(s);
		*out = NULL;
		return -1;
	}
	*out = s;
	return 0;
}

void policy_store_close(struct policy_store *s)
{
	if (s == NULL)
		return;
	policy_store_abort(s);
	if (s->env != NULL)
		mdb_env_close(s->env);
	free(s->path);
	free(s);
}

/* A read transaction (or the open write one, *own = 0). */
static int read_txn(struct policy_store *s, MDB_txn **txn, int *own, char *err, size_t errlen)
{
	*own = 0;
	if (s->wtxn != NULL) {
		*txn = s->wtxn;
		return 0;
	}
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
	if (rc == MDB_MAP_RESIZED) {
		mdb_env_set_mapsize(s->env, 0);
		rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
	}
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", s->path, mdb_strerror(rc));
		return -1;
	}
	*own = 1;
	return 0;
}

static int lookup(struct policy_store *s, const char *account, MDB_txn *txn,
    struct policy_store_entry *out, char *err, size_t errlen)
{
	MDB_val k = { strlen(account), (void *)account }, v;
	int rc = mdb_get(txn, s->dbi, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0) {
		snprintf(err, errlen, "%s: lookup of %s: %s", s->path, account, mdb_strerror(rc));
		return -1;
	}
	if (policy_store_decode(v.mv_data, v.mv_size, out) < 0) {
		snprintf(err, errlen, "%s: corrupt entry for %s", s->path, account);
		return -1;
	}
	return 1;
}

int policy_store_get_entry(struct policy_store *s, const char *account,
    struct policy_store_entry *out, char *err, size_t errlen)
{
	MDB_txn *txn;
	int own;

	memset(out, 0, sizeof(*out));
	if (ensure_open(s, err, errlen) < 0)
		return -1;
	if (s->env == NULL)
		return 0;
	if (read_txn(s, &txn, &own, err, errlen) < 0)
		return -1;
	int r = lookup(s, account, txn, out, err, errlen);
	if (r == 1 && out->blob != NULL)
		out->blob = xmemdup(out->blob, out->blob_len);
	if (own)
		mdb_txn_abort(txn);
	return r;
}

int policy_store_get(struct policy_store *s, const char *account,
    struct user_policy **out, char *err, size_t errlen)
{
	struct policy_store_entry e;
	MDB_txn *txn;
	int own;

	*out = NULL;
	if (ensure_open(s, err, errlen) < 0)
		return -1;
	if (s->env == NULL)
		return 0;
	if (read_txn(s, &txn, &own, err, errlen) < 0)
		return -1;
	int r = lookup(s, account, txn, &e, err, errlen);
	if (r == 1 && e.blob == NULL) {
		r = 0;          /* only ever broken: no policy */
	} else if (r == 1 && user_policy_decode(e.blob, e.blob_len, out) < 0) {
		snprintf(err, errlen, "%s: corrupt policy for %s", s->path, account);
		r = -1;
	}
	if (own)
		mdb_txn_abort(txn);
	return r;
}

int policy_store_list(struct policy_store *s, int (*fn)(void *arg, const char *account,
    const struct policy_file_stat *st, int broken), void *arg, char *err, size_t errlen)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int own, rc, r = 0;

	if (ensure_open(s, err, errlen) < 0)
		return -1;
	if (s->env == NULL)
		return 0;
	if (read_txn(s, &txn, &own, err, errlen) < 0)
		return -1;
	if ((rc = mdb_cursor_open(txn, s->dbi, &cur)) != 0) {
		snprintf(err, errlen, "%s: %s", s->path, mdb_strerror(rc));
		if (own)
			mdb_txn_abort(txn);
		return -1;
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct policy_store_entry e;
		char name[256];
		if (k.mv_size == 0 || k.mv_size >= sizeof(name) ||
		    memchr(k.mv_data, '\0', k.mv_size) != NULL ||
		    policy_store_decode(v.mv_data, v.mv_size, &e) < 0) {
			snprintf(err, errlen, "%s: corrupt entry", s->path);
			r = -1;
			break;
		}
		memcpy(name, k.mv_data, k.mv_size);
		name[k.mv_size] = '\0';
		if (fn(arg, name, &e.st, e.broken) != 0)
			break;
	}
	if (r == 0 && rc != 0 && rc != MDB_NOTFOUND) {
		snprintf(err, errlen, "%s: %s", s->path, mdb_strerror(rc));
		r = -1;
	}
	mdb_cursor_close(cur);
	if (own)
		mdb_txn_abort(txn);
	return r;
}

int policy_store_begin(struct policy_store *s, char *err, size_t errlen)
{
	if (!s->writable || s->env == NULL) {
		snprintf(err, errlen, "%s: not open for writing", s->path);
		return -1;
	}
	if (s->wtxn != NULL)
		return 0;
	int rc = mdb_txn_begin(s->env, NULL, 0, &s->wtxn);
	if (rc != 0) {
		s->wtxn = NULL;
		snprintf(err, errlen, "%s: %s", s->path, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

int policy_store_put(struct policy_store *s, const char *account,
    const struct policy_store_entry *e, char *err, size_t errlen)
{
	struct buf b = BUF_INIT;
	if (policy_store_begin(s, err, errlen) < 0)
		return -1;
	policy_store_encode(e, &b);
	MDB_val k = { strlen(account), (void *)account }, v = { b.len, b.data };
	int rc = mdb_put(s->wtxn, s->dbi, &k, &v, 0);
	buf_free(&b);
	if (rc != 0) {
		snprintf(err, errlen, "%s: put %s: %s", s->path, account, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

int policy_store_delete(struct policy_store *s, const char *account, char *err,
    size_t errlen)
{
	if (policy_store_begin(s, err, errlen) < 0)
		return -1;
	MDB_val k = { strlen(account), (void *)account };
	int rc = mdb_del(s->wtxn, s->dbi, &k, NULL);
	if (rc != 0 && rc != MDB_NOTFOUND) {
		snprintf(err, errlen, "%s: delete %s: %s", s->path, account, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

int policy_store_commit(struct policy_store *s, char *err, size_t errlen)
{
	if (s->wtxn == NULL)
		return 0;
	int rc = mdb_txn_commit(s->wtxn);
	s->wtxn = NULL;
	if (rc != 0) {
		snprintf(err, errlen, "%s: commit: %s", s->path, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

void policy_store_abort(struct policy_store *s)
{
	if (s->wtxn != NULL)
		mdb_txn_abort(s->wtxn);
	s->wtxn = NULL;
}
