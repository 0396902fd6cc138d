/*
 * compile_write.c - writing the compiled tables into a fresh LMDB file and
 * swapping it in.
 *
 * Under an flock on db_dir/compile.lock: write tmp-NAME.mdb (MDB_NOLOCK,
 * one transaction), sync, chmod 0644, rename to db-NAME.mdb, point a new
 * symlink at it and rename that over current.mdb, fsync db_dir, then
 * remove every other db-*.mdb and tmp-*.mdb (and any -lock file).
 */
#include "conf/config.h"
#include "db/compile_private.h"
#include "db/db.h"
#include "lib/buf.h"
#include "lib/fsutil.h"
#include "lib/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOCK_NAME "compile.lock"
#define LINK_TMP_NAME ".current.mdb.tmp"
#define NODE_OVERHEAD 64
#define MAP_BASE (16u << 20)
#define MAP_ROUND (1u << 20)

struct names {
	char *base;             /* db-T-P-N.mdb */
	char *final;            /* db_dir/db-T-P-N.mdb */
	char *tmp;              /* db_dir/tmp-T-P-N.mdb */
};

static void names_free(struct names *n)
{
	free(n->base);
	free(n->final);
	free(n->tmp);
}

/* A file name not used yet: two compiles in one second by one process must
 * still produce different files, or readers would not notice the change. */
static void choose_names(const char *dir, struct names *n)
{
	struct stat st;
	long long now = (long long)time(NULL);
	for (unsigned seq = 0;; seq++) {
		n->base = xasprintf("db-%lld-%ld-%u.mdb", now, (long)getpid(), seq);
		n->final = xasprintf("%s/%s", dir, n->base);
		if (lstat(n->final, &st) < 0 && errno == ENOENT)
			break;
		free(n->base);
		free(n->final);
	}
	n->tmp = xasprintf("%s/tmp-%s", dir, n->base + 3);
}

/* ---- LMDB ---- */

static size_t table_bytes(const struct table *t)
{
	size_t sum = 0;
	for (size_t i = 0; i < t->n; i++)
		sum += strlen(t->items[i]->key ? t->items[i]->key : "") + NODE_OVERHEAD;
	return sum;
}

static size_t estimate_mapsize(struct compile *c)
{
	/* the domains database holds at most one key per rules and uid key */
	size_t sum = 2 * table_bytes(&c->rules) + 2 * table_bytes(&c->uid) + table_bytes(&c->gid) +
	    2 * table_bytes(&c->lists);
	for (size_t i = 0; i < c->lists.n; i++) {
		const struct db_list *l = &c->lists.items[i]->list;
		sum += 64 + (l->manager ? strlen(l->manager) : 0) + (l->dest ? strlen(l->dest) : 0);
	}
	for (size_t i = 0; i < c->rules.n; i++) {
		/* what is stored is the encoded entry, conditions included */
		struct buf enc = BUF_INIT;
		rules_entry_encode(&c->rules.items[i]->entry, &enc);
		sum += 64 + enc.len;
		buf_free(&enc);
	}
	for (size_t i = 0; i < c->uid.n; i++) {
		const struct db_account *a = &c->uid.items[i]->account;
		sum += 64 + (a->name ? strlen(a->name) : 0) + (a->home ? strlen(a->home) : 0);
	}
	size_t size = MAP_BASE + 4 * sum;
	return (size + MAP_ROUND - 1) / MAP_ROUND * MAP_ROUND;
}

static int put(MDB_txn *txn, MDB_dbi dbi, const char *key, const void *val, size_t len,
    struct compile *c, const char *path)
{
	MDB_val k = { strlen(key), (void *)key };
	MDB_val v = { len, (void *)val };
	int rc = mdb_put(txn, dbi, &k, &v, MDB_NOOVERWRITE);
	if (rc != 0) {
		compile_error(c, path, 0, "storing %s: %s", key, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

static int open_dbi(MDB_txn *txn, const char *name, MDB_dbi *dbi,
    struct compile *c, const char *path)
{
	int rc = mdb_dbi_open(txn, name, MDB_CREATE, dbi);
	if (rc != 0) {
		compile_error(c, path, 0, "creating database %s: %s", name, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

static int put_rules(MDB_txn *txn, struct compile *c, const char *path, size_t *count)
{
	MDB_dbi dbi;
	struct buf b = BUF_INIT;
	int r = open_dbi(txn, DB_NAME_RULES, &dbi, c, path);
	for (size_t i = 0; r == 0 && i < c->rules.n; i++) {
		struct rec *rec = c->rules.items[i];
		if (!rec->valid)
			continue;
		buf_reset(&b);
		rules_entry_encode(&rec->entry, &b);
		r = put(txn, dbi, rec->key, b.data, b.len, c, path);
		(*count)++;
	}
	buf_free(&b);
	return r;
}

static int put_uids(MDB_txn *txn, struct compile *c, const char *path, size_t *count)
{
	MDB_dbi dbi;
	struct buf b = BUF_INIT;
	int r = open_dbi(txn, DB_NAME_UID, &dbi, c, path);
	for (size_t i = 0; r == 0 && i < c->uid.n; i++) {
		struct rec *rec = c->uid.items[i];
		if (!rec->valid)
			continue;
		buf_reset(&b);
		db_account_encode(&rec->account, &b);
		r = put(txn, dbi, rec->key, b.data, b.len, c, path);
		(*count)++;
	}
	buf_free(&b);
	return r;
}

static int put_lists(MDB_txn *txn, struct compile *c, const char *path, size_t *count)
{
	MDB_dbi dbi;
	struct buf b = BUF_INIT;
	int r = open_dbi(txn, DB_NAME_LISTS, &dbi, c, path);
	for (size_t i = 0; r == 0 && i < c->lists.n; i++) {
		struct rec *rec = c->lists.items[i];
		if (!rec->valid)
			continue;
		buf_reset(&b);
		db_list_encode(&rec->list, &b);
		r = put(txn, dbi, rec->key, b.data, b.len, c, path);
		(*count)++;
	}
	buf_free(&b);
	return r;
}

static int put_gids(MDB_txn *txn, struct compile *c, const char *path, size_t *count)
{
	MDB_dbi dbi;
	unsigned char v[DB_GID_LEN];
	int r = open_dbi(txn, DB_NAME_GID, &dbi, c, path);
	for (size_t i = 0; r == 0 && i < c->gid.n; i++) {
		struct rec *rec = c->gid.items[i];
		if (!rec->valid)
			continue;
		db_gid_encode(rec->gid, v);
		r = put(txn, dbi, rec->key, v, sizeof(v), c, path);
		(*count)++;
	}
	return r;
}

/* The domain of a key x@domain or @domain; NULL for local@. */
static const char *key_domain(const char *key)
{
	const char *at = strrchr(key, '@');
	return at != NULL && at[1] != '\0' ? at + 1 : NULL;
}

static int put_domains_of(MDB_txn *txn, MDB_dbi dbi, const struct table *t,
    struct compile *c, const char *path)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct rec *rec = t->items[i];
		const char *domain = rec->valid ? key_domain(rec->key) : NULL;
		if (domain == NULL)
			continue;
		MDB_val k = { strlen(domain), (void *)domain };
		MDB_val v = { 0, (void *)"" };
		int rc = mdb_put(txn, dbi, &k, &v, 0);
		if (rc != 0) {
			compile_error(c, path, 0, "storing domain %s: %s", domain, mdb_strerror(rc));
			return -1;
		}
	}
	return 0;
}

/* The domains a recipient may be in for the databases to know it: those
 * of the rules, uid and lists keys (keys are lower-cased already). */
static int put_domains(MDB_txn *txn, struct compile *c, const char *path)
{
	MDB_dbi dbi;
	if (open_dbi(txn, DB_NAME_DOMAINS, &dbi, c, path) < 0 ||
	    put_domains_of(txn, dbi, &c->rules, c, path) < 0 ||
	    put_domains_of(txn, dbi, &c->uid, c, path) < 0 ||
	    put_domains_of(txn, dbi, &c->lists, c, path) < 0)
		return -1;
	return 0;
}

static int fill(MDB_env *env, struct compile *c, const char *path, struct compile_stats *st)
{
	MDB_txn *txn;
	MDB_dbi dbi;
	int rc = mdb_txn_begin(env, NULL, 0, &txn);
	if (rc != 0) {
		compile_error(c, path, 0, "mdb_txn_begin: %s", mdb_strerror(rc));
		return -1;
	}
	if (put_rules(txn, c, path, &st->rules) < 0 || put_uids(txn, c, path, &st->uid) < 0 ||
	    put_gids(txn, c, path, &st->gid) < 0 || put_domains(txn, c, path) < 0 ||
	    put_lists(txn, c, path, &st->lists) < 0 ||
	    open_dbi(txn, DB_NAME_MEMBERS, &dbi, c, path) < 0) {
		mdb_txn_abort(txn);
		return -1;
	}
	if (compile_members_put(txn, dbi, c, path) < 0) {
		mdb_txn_abort(txn);
		return -1;
	}
	rc = mdb_txn_commit(txn);
	if (rc != 0) {
		compile_error(c, path, 0, "mdb_txn_commit: %s", mdb_strerror(rc));
		return -1;
	}
	return 0;
}

static int write_env(struct compile *c, const char *path, struct compile_stats *st)
{
	MDB_env *env;
	int rc = mdb_env_create(&env);
	if (rc != 0) {
		compile_error(c, path, 0, "mdb_env_create: %s", mdb_strerror(rc));
		return -1;
	}
	mdb_env_set_maxdbs(env, DB_MAX_DBS);
	rc = mdb_env_set_mapsize(env, estimate_mapsize(c));
	if (rc == 0)
		rc = mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOLOCK, 0644);
	if (rc != 0) {
		compile_error(c, path, 0, "cannot create: %s", mdb_strerror(rc));
		mdb_env_close(env);
		return -1;
	}
	int r = fill(env, c, path, st);
	if (r == 0 && (rc = mdb_env_sync(env, 1)) != 0) {
		compile_error(c, path, 0, "sync: %s", mdb_strerror(rc));
		r = -1;
	}
	mdb_env_close(env);
	return r;
}

/* ---- swapping ---- */

static int swap_link(struct compile *c, const char *dir, const struct names *n)
{
	char *tmp = xasprintf("%s/%s", dir, LINK_TMP_NAME);
	char *link = xasprintf("%s/%s", dir, DB_CURRENT_LINK);
	int r = -1;

	if (unlink(tmp) < 0 && errno != ENOENT)
		compile_error(c, tmp, 0, "unlink: %s", strerror(errno));
	else if (symlink(n->base, tmp) < 0)
		compile_error(c, tmp, 0, "symlink: %s", strerror(errno));
	else if (rename(tmp, link) < 0)
		compile_error(c, link, 0, "rename: %s", strerror(errno));
	else
		r = 0;
	/* The new database is live now whatever happens next. */
	if (r == 0 && fsync_dir(dir) < 0)
		compile_warning(c, "%s: fsync: %s", dir, strerror(errno));
	free(tmp);
	free(link);
	return r;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t ls = strlen(s), lx = strlen(suffix);
	return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

/* db-*.mdb, tmp-*.mdb and their -lock files, other than keep. */
static int old_file(const char *name, const char *keep)
{
	if (strcmp(name, keep) == 0)
		return 0;
	if (strncmp(name, "db-", 3) != 0 && strncmp(name, "tmp-", 4) != 0)
		return 0;
	return ends_with(name, ".mdb") || ends_with(name, ".mdb-lock");
}

/* Remove older databases; failures are only warnings, the swap is done. */
static void remove_old(struct compile *c, const char *dir, const char *keep)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	if (d == NULL) {
		compile_warning(c, "%s: cannot clean up: %s", dir, strerror(errno));
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (!old_file(de->d_name, keep))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
			compile_warning(c, "%s/%s: cannot remove: %s", dir, de->d_name,
			    strerror(errno));
	}
	closedir(d);
}

static int take_lock(struct compile *c, const char *dir)
{
	char *path = xasprintf("%s/%s", dir, LOCK_NAME);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		compile_error(c, path, 0, "cannot open: %s", strerror(errno));
	} else if (flock(fd, LOCK_EX) < 0) {
		compile_error(c, path, 0, "flock: %s", strerror(errno));
		close(fd);
		fd = -1;
	}
	free(path);
	return fd;
}

static int install(struct compile *c, const char *dir, const struct names *n,
    struct compile_stats *st)
{
	if (write_env(c, n->tmp, st) < 0)
		return -1;
	if (chmod(n->tmp, 0644) < 0) {
		compile_error(c, n->tmp, 0, "chmod: %s", strerror(errno));
		return -1;
	}
	if (rename(n->tmp, n->final) < 0) {
		compile_error(c, n->final, 0, "rename: %s", strerror(errno));
		return -1;
	}
	return swap_link(c, dir, n);
}

int compile_write(struct compile *c, struct compile_stats *stats)
{
	const char *dir = c->cfg->db_dir;
	struct compile_stats st = { 0 };
	struct names n = { 0 };

	if (mkdir_p(dir, 0755) < 0) {
		compile_error(c, dir, 0, "cannot create: %s", strerror(errno));
		return -1;
	}
	int lock = take_lock(c, dir);
	if (lock < 0)
		return -1;
	choose_names(dir, &n);
	int r = install(c, dir, &n, &st);
	if (r < 0) {
		unlink(n.tmp);
		unlink(n.final);        /* not live: the link swap failed */
	} else {
		remove_old(c, dir, n.base);
		st.db_file = n.final;
		n.final = NULL;
		if (stats != NULL)
			*stats = st;
		else
			free(st.db_file);
	}
	names_free(&n);
	close(lock);
	return r;
}
