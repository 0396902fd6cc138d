/*
 * members_store.c - writing members.mdb whole and swapping it in, and
 * reading it (or the main environment's `members` db) with a reopen when
 * the file was replaced (members_store.h).
 */
#include "lists/members_store.h"
#include "lists/members_key.h"
#include "db/db_record.h"
#include "lib/fsutil.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int members_store_put(MDB_txn *txn, MDB_dbi dbi, const struct members_data *d,
    char *err, size_t errlen)
{
	struct buf key = BUF_INIT, val = BUF_INIT;
	int r = 0;

	for (size_t i = 0; i < d->n && r == 0; i++) {
		const struct members_list *l = &d->lists[i];
		uint64_t count = 0;
		for (size_t j = 0; j < l->n; j++) {
			members_member_key(l->address, l->addrs[j], &key);
			MDB_val k = { key.len, key.data };
			MDB_val v = { strlen(l->roles[j]), l->roles[j] };
			int rc = mdb_put(txn, dbi, &k, &v, MDB_NOOVERWRITE);
			if (rc == MDB_KEYEXIST)
				continue;       /* an owner who is also a member */
			if (rc != 0) {
				snprintf(err, errlen, "storing %s: %s", key.data, mdb_strerror(rc));
				r = -1;
				break;
			}
			count++;
		}
		if (r < 0)
			break;
		members_list_key(l->address, &key);
		members_list_value(l->fetched, count, &val);
		MDB_val k = { key.len, key.data };
		MDB_val v = { val.len, val.data };
		int rc = mdb_put(txn, dbi, &k, &v, 0);
		if (rc != 0) {
			snprintf(err, errlen, "storing %s: %s", key.data, mdb_strerror(rc));
			r = -1;
		}
	}
	buf_free(&key);
	buf_free(&val);
	return r;
}

static size_t estimate_mapsize(const struct members_data *d)
{
	size_t bytes = 0;
	for (size_t i = 0; i < d->n; i++)
		for (size_t j = 0; j < d->lists[i].n; j++)
			bytes += 2 * (strlen(d->lists[i].address) + strlen(d->lists[i].addrs[j])) + 64;
	return 4 * bytes + ((size_t)4 << 20);
}

static int write_file(const char *path, const struct members_data *d, char *err, size_t errlen)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	int rc = mdb_env_create(&env);
	if (rc != 0) {
		snprintf(err, errlen, "mdb_env_create: %s", mdb_strerror(rc));
		return -1;
	}
	mdb_env_set_maxdbs(env, 2);
	rc = mdb_env_set_mapsize(env, estimate_mapsize(d));
	if (rc == 0)
		rc = mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOLOCK, 0644);
	if (rc == 0)
		rc = mdb_txn_begin(env, NULL, 0, &txn);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", path, mdb_strerror(rc));
		mdb_env_close(env);
		return -1;
	}
	rc = mdb_dbi_open(txn, MEMBERS_DB_NAME, MDB_CREATE, &dbi);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", path, mdb_strerror(rc));
		mdb_txn_abort(txn);
		mdb_env_close(env);
		return -1;
	}
	if (members_store_put(txn, dbi, d, err, errlen) < 0) {
		mdb_txn_abort(txn);
		mdb_env_close(env);
		return -1;
	}
	rc = mdb_txn_commit(txn);
	if (rc == 0)
		rc = mdb_env_sync(env, 1);
	mdb_env_close(env);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", path, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

int members_store_write(const char *state_dir, const struct members_data *d,
    char *err, size_t errlen)
{
	char *tmp = xasprintf("%s/%s.tmp.%ld", state_dir, MEMBERS_STORE_FILE, (long)getpid());
	char *path = xasprintf("%s/%s", state_dir, MEMBERS_STORE_FILE);
	int r = -1;

	unlink(tmp);
	if (mkdir_p(state_dir, 0755) < 0) {
		snprintf(err, errlen, "%s: %s", state_dir, strerror(errno));
	} else if (write_file(tmp, d, err, errlen) < 0) {
		unlink(tmp);
	} else if (rename(tmp, path) < 0) {
		snprintf(err, errlen, "rename %s: %s", path, strerror(errno));
		unlink(tmp);
	} else {
		fsync_dir(state_dir);
		r = 0;
	}
	free(tmp);
	free(path);
	return r;
}

/* ---- reading ---- */

struct members_reader {
	char *path;
	MDB_env *env;
	MDB_dbi dbi;
	int has_dbi;            /* 0: the file has no members db (empty) */
	dev_t dev;
	ino_t ino;
};

struct members_reader *members_reader_new(const char *path)
{
	struct members_reader *r = xcalloc(1, sizeof(*r));
	r->path = xstrdup(path);
	return r;
}

static void reader_close(struct members_reader *r)
{
	if (r->env != NULL)
		mdb_env_close(r->env);
	r->env = NULL;
	r->has_dbi = 0;
}

void members_reader_free(struct members_reader *r)
{
	if (r == NULL)
		return;
	reader_close(r);
	free(r->path);
	free(r);
}

static int reader_open(struct members_reader *r, const struct stat *st, char *err, size_t errlen)
{
	MDB_txn *txn;
	int rc = mdb_env_create(&r->env);
	if (rc == 0) {
		mdb_env_set_maxdbs(r->env, DB_MAX_DBS);
		rc = mdb_env_open(r->env, r->path, MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK, 0);
	}
	if (rc == 0)
		rc = mdb_txn_begin(r->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", r->path, mdb_strerror(rc));
		reader_close(r);
		return -1;
	}
	rc = mdb_dbi_open(txn, MEMBERS_DB_NAME, 0, &r->dbi);
	if (rc == 0) {
		r->has_dbi = 1;
		mdb_txn_commit(txn);
	} else {
		mdb_txn_abort(txn);
		if (rc != MDB_NOTFOUND) {
			snprintf(err, errlen, "%s: %s", r->path, mdb_strerror(rc));
			reader_close(r);
			return -1;
		}
	}
	r->dev = st->st_dev;
	r->ino = st->st_ino;
	return 0;
}

int members_reader_get(struct members_reader *r, const char *key, size_t keylen,
    char **out, size_t *outlen, char *err, size_t errlen)
{
	struct stat st;
	if (stat(r->path, &st) < 0) {
		snprintf(err, errlen, "%s: %s", r->path, strerror(errno));
		reader_close(r);
		return -1;
	}
	if (r->env != NULL && (st.st_dev != r->dev || st.st_ino != r->ino))
		reader_close(r);
	if (r->env == NULL && reader_open(r, &st, err, errlen) < 0)
		return -1;
	if (!r->has_dbi)
		return 0;

	MDB_txn *txn;
	int rc = mdb_txn_begin(r->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", r->path, mdb_strerror(rc));
		reader_close(r);
		return -1;
	}
	MDB_val k = { keylen, (void *)key }, v;
	rc = mdb_get(txn, r->dbi, &k, &v);
	int found = 0;
	if (rc == 0) {
		*out = xmalloc(v.mv_size + 1);
		memcpy(*out, v.mv_data, v.mv_size);
		(*out)[v.mv_size] = '\0';
		*outlen = v.mv_size;
		found = 1;
	} else if (rc != MDB_NOTFOUND) {
		snprintf(err, errlen, "%s: %s", r->path, mdb_strerror(rc));
		found = -1;
	}
	mdb_txn_abort(txn);
	return found;
}
