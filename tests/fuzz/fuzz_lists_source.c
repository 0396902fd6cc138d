/*
 * fuzz_lists_source.c - libFuzzer target for the two sources of issue 11
 * as `mailprocctl db compile` reads them (the file is written and read by
 * the compiler's own reader, so comments, indentation and line numbers
 * are the real ones): the `lists` source (compile_lists_line and
 * compile_check_lists in src/db/compile_accounts.c) and the `members`
 * source (src/lists/members_source.c via src/db/compile_members.c), with
 * property checks:
 *   - every error is reported as "FILE:LINE: message" with the source's
 *     path and a line in range (1 to the number of lines), and there are
 *     as many such reports as the compiler counts errors;
 *   - an accepted `lists` source gives valid records whose key is a
 *     lower-case LIST@DOMAIN (one '@', neither first nor last) and whose
 *     value encodes, decodes (db_record.c) to the same manager, destination
 *     and members-only flag, and encodes again to the same bytes;
 *   - an accepted `members` source gives lower-case list addresses and
 *     member addresses that normalise to themselves; stored with
 *     members_store_put into an LMDB `members` db (in a transaction that is
 *     then aborted), every list record decodes to "0 COUNT" with COUNT its
 *     distinct addresses, every member record to "member", and the db holds
 *     nothing else;
 *   - no leak (ASan's leak check).
 *
 * Not part of the meson build.  Build and run by hand:
 *   clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Isrc \
 *     tests/fuzz/fuzz_lists_source.c src/db/compile_source.c \
 *     src/db/compile_accounts.c src/db/compile_members.c src/db/address.c \
 *     src/db/db_record.c src/db/rules_entry.c src/db/rules_parse.c \
 *     src/lists/members_source.c src/lists/members_data.c \
 *     src/lists/members_key.c src/lists/members_store.c src/rules/cond.c \
 *     src/rules/cond_parse.c src/rules/cond_codec.c src/rules/cond_format.c \
 *     src/rules/action_args.c src/rules/regex.c src/rules/eval.c \
 *     src/proto/smtp_addr.c src/lib/lmtp_dest.c src/lib/strmap.c \
 *     src/lib/privsep.c src/lib/fsutil.c src/lib/parse_util.c src/lib/buf.c \
 *     src/lib/xalloc.c src/lib/log.c -llmdb -lpcre2-8 -o /tmp/fuzz_lists_source
 *   (the rules files only because the compiler's tables free rules entries)
 *   mkdir -p /tmp/corpus_lists_source
 *   /tmp/fuzz_lists_source -max_len=4096 -max_total_time=60 \
 *     /tmp/corpus_lists_source tests/fuzz/seeds/lists_source
 * The first byte picks the mode: bit 0 clear = the `lists` source, set =
 * the `members` source; bits 1-2 the recipient delimiter ('\0', '+', '-',
 * '+').  The sources are written to a directory under /dev/shm (or $TMPDIR
 * when there is none) made at the first run and removed at exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/config.h"
#include "db/compile_private.h"
#include "lists/members_key.h"
#include "lists/members_source.h"
#include "lists/members_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s\n", #c); abort(); } } while (0)

struct reports {
	const char *path;
	int max_line;
	int n;
	int stopped;
};

/* "PATH:LINE: message" with LINE in 1..max_line, or the one last line of
 * a compiler that stops. */
static void report(void *arg, const char *msg)
{
	struct reports *r = arg;
	size_t plen = strlen(r->path);
	CHECK(!r->stopped);
	if (strcmp(msg, "too many errors, stopping") == 0) {
		r->stopped = 1;
		return;
	}
	if (strncmp(msg, r->path, plen) != 0 || msg[plen] != ':') {
		fprintf(stderr, "report without the path: %s\n", msg);
		abort();
	}
	char *end;
	long line = strtol(msg + plen + 1, &end, 10);
	if (end == msg + plen + 1 || strncmp(end, ": ", 2) != 0 || end[2] == '\0' ||
	    line < 1 || line > r->max_line) {
		fprintf(stderr, "report with no line in 1..%d: %s\n", r->max_line, msg);
		abort();
	}
	r->n++;
}

static char *srcdir;
static MDB_env *env;

/* The directory and what is in it go at exit (not after a crash: then
 * its source is in the directory too). */
static void cleanup(void)
{
	static const char *const names[] = { "lists", "members", "members.mdb" };
	char path[4200];
	mdb_env_close(env);
	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
		snprintf(path, sizeof(path), "%s/%s", srcdir, names[i]);
		unlink(path);
	}
	rmdir(srcdir);
}

static void setup(void)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm"
	    : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	static char dir[4096];
	snprintf(dir, sizeof(dir), "%s/fuzz_lists_source.XXXXXX", base);
	CHECK(mkdtemp(dir) != NULL);
	srcdir = dir;

	char path[4200];
	snprintf(path, sizeof(path), "%s/members.mdb", dir);
	CHECK(mdb_env_create(&env) == 0);
	CHECK(mdb_env_set_maxdbs(env, 2) == 0);
	CHECK(mdb_env_set_mapsize(env, (size_t)64 << 20) == 0);
	CHECK(mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOLOCK | MDB_NOSYNC, 0600) == 0);
	atexit(cleanup);
}

static void write_source(const char *path, const uint8_t *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	for (size_t done = 0; done < len;) {
		ssize_t n = write(fd, data + done, len - done);
		CHECK(n > 0 || (n < 0 && errno == EINTR));
		if (n > 0)
			done += (size_t)n;
	}
	CHECK(close(fd) == 0);
}

/* As getline counts them. */
static int count_lines(const uint8_t *data, size_t len)
{
	int n = 0;
	for (size_t i = 0; i < len; i++)
		n += data[i] == '\n';
	return n + (len > 0 && data[len - 1] != '\n');
}

static void check_no_upper(const char *s)
{
	for (; *s; s++)
		CHECK(!(*s >= 'A' && *s <= 'Z'));
}

static void check_list_address(const char *key)
{
	const char *at = strchr(key, '@');
	CHECK(at != NULL && at != key && at[1] != '\0' && strchr(at + 1, '@') == NULL);
	check_no_upper(key);
}

static void check_lists(struct compile *c)
{
	for (size_t i = 0; i < c->lists.n; i++) {
		const struct rec *r = c->lists.items[i];
		CHECK(r->valid && r->key != NULL && table_get(&c->lists, r->key) == r);
		check_list_address(r->key);
		CHECK(r->list.manager != NULL && strcmp(r->list.manager, LIST_MANAGER_MAILMAN3) == 0);
		CHECK(r->list.dest != NULL && strncmp(r->list.dest, "lmtp:", 5) == 0);
		CHECK(r->list.members_only == 0 || r->list.members_only == 1);

		struct buf a = BUF_INIT, b = BUF_INIT;
		struct db_list back;
		db_list_encode(&r->list, &a);
		CHECK(db_list_decode(a.data, a.len, &back) == 0);
		CHECK(strcmp(back.manager, r->list.manager) == 0);
		CHECK(strcmp(back.dest, r->list.dest) == 0);
		CHECK(back.members_only == r->list.members_only);
		db_list_encode(&back, &b);
		CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
		db_list_free(&back);
		buf_free(&a);
		buf_free(&b);
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void expect(MDB_txn *txn, MDB_dbi dbi, const struct buf *key, const char *value)
{
	MDB_val k = { key->len, key->data }, v;
	CHECK(mdb_get(txn, dbi, &k, &v) == 0);
	CHECK(v.mv_size == strlen(value) && memcmp(v.mv_data, value, v.mv_size) == 0);
}

static void check_members(const struct members_data *d, char delimiter)
{
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_stat st;
	char err[400];
	struct buf key = BUF_INIT, norm = BUF_INIT, val = BUF_INIT;
	size_t records = 0;

	CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	CHECK(mdb_dbi_open(txn, MEMBERS_DB_NAME, MDB_CREATE, &dbi) == 0);
	CHECK(mdb_stat(txn, dbi, &st) == 0 && st.ms_entries == 0);
	CHECK(members_store_put(txn, dbi, d, err, sizeof(err)) == 0);
	for (size_t i = 0; i < d->n; i++) {
		const struct members_list *l = &d->lists[i];
		CHECK(l->fetched == 0 && l->n <= l->cap);
		check_list_address(l->address);
		char **sorted = malloc((l->n ? l->n : 1) * sizeof(*sorted));
		CHECK(sorted != NULL);
		for (size_t j = 0; j < l->n; j++) {
			CHECK(strcmp(l->roles[j], "member") == 0);
			CHECK(members_normalise(l->addrs[j], delimiter, &norm) == 0);
			CHECK(strcmp(norm.data, l->addrs[j]) == 0);
			members_member_key(l->address, l->addrs[j], &key);
			expect(txn, dbi, &key, "member");
			sorted[j] = l->addrs[j];
		}
		qsort(sorted, l->n, sizeof(*sorted), cmp_str);
		size_t distinct = 0;
		for (size_t j = 0; j < l->n; j++)
			distinct += j == 0 || strcmp(sorted[j - 1], sorted[j]) != 0;
		free(sorted);

		members_list_key(l->address, &key);
		MDB_val k = { key.len, key.data }, v;
		CHECK(mdb_get(txn, dbi, &k, &v) == 0);
		time_t fetched;
		uint64_t count;
		CHECK(members_list_value_parse(v.mv_data, v.mv_size, &fetched, &count) == 0);
		CHECK(fetched == 0 && count == distinct);
		members_list_value(0, distinct, &val);
		CHECK(v.mv_size == val.len && memcmp(v.mv_data, val.data, val.len) == 0);
		records += 1 + distinct;
	}
	CHECK(mdb_stat(txn, dbi, &st) == 0 && st.ms_entries == records);
	mdb_txn_abort(txn);
	buf_free(&key);
	buf_free(&norm);
	buf_free(&val);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char delimiters[] = { '\0', '+', '-', '+' };
	struct config cfg;
	struct compile c;

	if (size == 0)
		return 0;
	if (srcdir == NULL)
		setup();
	int members = data[0] & 1;
	memset(&cfg, 0, sizeof(cfg));
	cfg.recipient_delimiter = delimiters[(data[0] >> 1) & 3];
	data++;
	size--;

	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", srcdir, members ? "members" : "lists");
	write_source(path, data, size);

	struct reports r = { path, count_lines(data, size), 0, 0 };
	memset(&c, 0, sizeof(c));
	c.cfg = &cfg;
	c.srcdir = srcdir;
	c.report = report;
	c.ctx = &r;
	table_init(&c.rules);
	table_init(&c.uid);
	table_init(&c.gid);
	table_init(&c.lists);
	/* a rules key a list may clash with */
	table_add(&c, &c.rules, "rules", 1, "clash@example.test");

	CHECK(compile_read_source(&c, path, members ? compile_members_line
	    : compile_lists_line) == 1);
	if (!members)
		compile_check_lists(&c);
	CHECK(r.n == c.errors && r.stopped == c.stopped);
	CHECK(c.errors <= COMPILE_MAX_ERRORS);
	if (c.errors == 0) {
		if (!members)
			check_lists(&c);
		else if (c.members != NULL)
			check_members(&c.members->data, cfg.recipient_delimiter);
	}

	table_free(&c.rules);
	table_free(&c.uid);
	table_free(&c.gid);
	table_free(&c.lists);
	compile_members_free(&c);
	return 0;
}
