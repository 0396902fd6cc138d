/*
 * test_db.c - compiling database sources and resolving addresses: the
 * lookup order, case-insensitivity, compile errors with file:line, a failed
 * compile leaving the old database, and readers seeing a new one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <lmdb.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/config.h"
#include "db/compile.h"
#include "db/db.h"
#include "db/rules_entry.h"
#include "lib/buf.h"
#include "lib/xalloc.h"

struct fixture {
	char base[64];
	char *src;
	char *dbdir;
	char *home_base;
	struct config cfg;
	struct buf msgs;        /* reported messages, one per line */
};

static const char good_rules[] =
    "# the test rules\n"
    "alice@example.test\n"
    "    maildir ~/Maildir/\n"
    "\n"
    "alice+list@example.test\n"
    "\tmbox /var/mail/alice-list   # trailing comment\n"
    "\n"
    "bob@example.test   maxsize=20M spam=off\n"
    "    maildir ~/Maildir/.Junk/ ; stop\n"
    "    mbox \"/var/mail/bob #1\"\n"
    "\n"
    "@example.test\n"
    "    maildir ~/Maildir/\n"
    "carol@\n"
    "    mbox /var/mail/carol\n"
    "empty@example.test\n";

static const char good_uid[] =
    "Alice@Example.Test alice\n"
    "bob@example.test   bob\n"
    "@example.test      catchall   # every other user\n"
    "carol@             carol\n"
    "dave@other.test    dave\n";

static const char good_gid[] = "bob@example.test 12345\n";

static void write_file(const char *dir, const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	free(path);
}

static void remove_file(const char *dir, const char *name)
{
	char *path = xasprintf("%s/%s", dir, name);
	unlink(path);
	free(path);
}

static void collect(void *ctx, const char *msg)
{
	struct buf *b = ctx;
	buf_puts(b, msg);
	buf_putc(b, '\n');
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	snprintf(f->base, sizeof(f->base), "/tmp/test_db.XXXXXX");
	assert_non_null(mkdtemp(f->base));
	f->src = xasprintf("%s/src", f->base);
	f->dbdir = xasprintf("%s/db", f->base);
	f->home_base = xasprintf("%s/home", f->base);
	assert_int_equal(mkdir(f->src, 0755), 0);
	config_defaults(&f->cfg);
	free(f->cfg.db_dir);
	f->cfg.db_dir = xstrdup(f->dbdir);
	f->cfg.home_base = xstrdup(f->home_base);
	f->cfg.recipient_delimiter = '+';
	write_file(f->src, "rules", good_rules);
	write_file(f->src, "uid", good_uid);
	write_file(f->src, "gid", good_gid);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char *cmd = xasprintf("rm -rf '%s'", f->base);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	config_free(&f->cfg);
	buf_free(&f->msgs);
	free(f->src);
	free(f->dbdir);
	free(f->home_base);
	free(f);
	return 0;
}

static int compile(struct fixture *f)
{
	buf_reset(&f->msgs);
	return db_compile(&f->cfg, f->src, collect, &f->msgs, NULL);
}

static void compile_ok(struct fixture *f)
{
	if (compile(f) != 0)
		fail_msg("compile failed:\n%s", f->msgs.data);
}

static struct db *open_db(struct fixture *f)
{
	struct db *db;
	char err[512];
	if (db_open(f->dbdir, &db, err, sizeof(err)) != 0)
		fail_msg("db_open: %s", err);
	return db;
}

static int resolve(struct db *db, const char *addr, struct db_resolution *r)
{
	char err[512] = "";
	int k = db_resolve(db, addr, '+', r, err, sizeof(err));
	if (k < 0)
		fail_msg("db_resolve(%s): %s", addr, err);
	return k;
}

static void expect(struct db *db, const char *addr, const char *rules_key,
    const char *account)
{
	struct db_resolution r;
	int k = resolve(db, addr, &r);
	assert_int_equal(k, rules_key || account ? 1 : 0);
	if (rules_key)
		assert_string_equal(r.rules_key, rules_key);
	else
		assert_null(r.rules_key);
	if (account) {
		assert_true(r.account_resolved);
		assert_string_equal(r.account, account);
	} else {
		assert_false(r.account_resolved);
		assert_null(r.account);
	}
	db_resolution_free(&r);
}

static void test_resolve(void **state)
{
	struct fixture *f = *state;
	struct db_resolution r;

	compile_ok(*state);
	struct db *db = open_db(f);

	assert_int_equal(resolve(db, "alice@example.test", &r), 1);
	assert_string_equal(r.address, "alice@example.test");
	assert_null(r.extension);
	assert_string_equal(r.rules_key, "alice@example.test");
	assert_string_equal(r.uid_key, "alice@example.test");
	assert_string_equal(r.account, "alice");
	assert_int_equal(r.uid, getuid());
	assert_int_equal(r.gid, getgid());
	char *home = xasprintf("%s/alice", f->home_base);
	assert_string_equal(r.home, home);
	free(home);
	db_resolution_free(&r);

	/* +detail and case-insensitivity */
	assert_int_equal(resolve(db, "ALICE+Foo@Example.TEST", &r), 1);
	assert_string_equal(r.address, "alice+foo@example.test");
	assert_string_equal(r.extension, "foo");
	assert_string_equal(r.rules_key, "alice@example.test");
	assert_string_equal(r.account, "alice");
	db_resolution_free(&r);

	/* the exact key wins over the base */
	expect(db, "alice+list@example.test", "alice+list@example.test", "alice");

	/* entry options and the gid database */
	assert_int_equal(resolve(db, "bob@example.test", &r), 1);
	assert_int_equal(r.gid, 12345);
	struct rules_entry e;
	assert_int_equal(rules_entry_decode(r.rules_blob, r.rules_len, &e), 0);
	assert_int_equal(e.maxsize, 20ULL << 20);
	assert_int_equal(e.spam, 0);
	assert_int_equal(e.ninstr, 3);
	assert_int_equal(e.instr[0].action, ACT_MAILDIR);
	assert_string_equal(e.instr[0].arg, "~/Maildir/.Junk/");
	assert_int_equal(e.instr[0].line, 9);
	assert_int_equal(e.instr[1].action, ACT_STOP);
	assert_int_equal(e.instr[2].action, ACT_MBOX);
	assert_string_equal(e.instr[2].arg, "/var/mail/bob #1");
	rules_entry_free(&e);
	db_resolution_free(&r);

	/* user@ then @domain */
	expect(db, "carol+x@elsewhere.test", "carol@", "carol");
	expect(db, "zed@example.test", "@example.test", "catchall");
	expect(db, "carol@example.test", "carol@", "carol");
	/* known through uid only */
	expect(db, "dave@other.test", NULL, "dave");
	/* an entry without instructions */
	expect(db, "empty@example.test", "empty@example.test", "catchall");

	/* unknown and unusable addresses */
	expect(db, "nobody@nowhere.test", NULL, NULL);
	expect(db, "dave@example.org", NULL, NULL);
	expect(db, "", NULL, NULL);
	expect(db, "alice", NULL, NULL);
	expect(db, "@example.test", NULL, NULL);
	expect(db, "alice@", NULL, NULL);
	expect(db, "ali\rce@example.test", NULL, NULL);
	char longaddr[300];
	memset(longaddr, 'a', sizeof(longaddr));
	strcpy(longaddr + 280, "@example.test");
	expect(db, longaddr, NULL, NULL);
	db_close(db);
}

static void test_no_delimiter(void **state)
{
	struct fixture *f = *state;
	struct db_resolution r;
	char err[256];

	compile_ok(f);
	struct db *db = open_db(f);
	assert_int_equal(db_resolve(db, "alice+foo@example.test", '\0', &r, err,
	    sizeof(err)), 1);
	assert_null(r.extension);
	assert_string_equal(r.rules_key, "@example.test");
	db_resolution_free(&r);
	/* a delimiter in first position splits nothing */
	assert_int_equal(db_resolve(db, "+alice@example.test", '+', &r, err, sizeof(err)), 1);
	assert_null(r.extension);
	assert_string_equal(r.rules_key, "@example.test");
	db_resolution_free(&r);
	db_close(db);
}

/* Compile `name` = text over the good sources, expect failure with msg. */
static void expect_error(struct fixture *f, const char *name, const char *text,
    const char *where, const char *msg)
{
	write_file(f->src, "rules", good_rules);
	write_file(f->src, "uid", good_uid);
	write_file(f->src, "gid", good_gid);
	write_file(f->src, name, text);
	int n = compile(f);
	char *want = xasprintf("%s/%s: %s\n", f->src, where, msg);
	if (n == 0 || strstr(f->msgs.data ? f->msgs.data : "", want) == NULL)
		fail_msg("expected \"%s\", got %d errors:\n%s", want, n,
		    f->msgs.data ? f->msgs.data : "");
	free(want);
}

static void test_compile_errors(void **state)
{
	struct fixture *f = *state;
	expect_error(f, "rules", "a@example.test\n    deliver ~/x\n",
	    "rules:2", "unknown instruction \"deliver\"");
	expect_error(f, "rules", "a@b@example.test\n    maildir ~/x\n",
	    "rules:1", "bad key \"a@b@example.test\": expected local@domain, @domain or local@");
	expect_error(f, "rules", "nokey\n", "rules:1",
	    "bad key \"nokey\": expected local@domain, @domain or local@");
	expect_error(f, "rules", "@\n", "rules:1", "bad key \"@\": local part or domain needed");
	expect_error(f, "rules", "a@example.test\n    maildir ~/x\nA@Example.test\n",
	    "rules:3", "duplicate key \"a@example.test\" (first at line 1)");
	expect_error(f, "uid", "x@example.test alice\nX@example.test bob\n",
	    "uid:2", "duplicate key \"x@example.test\" (first at line 1)");
	expect_error(f, "rules", "a@example.test colour=red\n", "rules:1",
	    "unknown option \"colour=red\" (maxsize= or spam=)");
	expect_error(f, "rules", "a@example.test maxsize=12Q\n", "rules:1",
	    "bad size \"12Q\" in maxsize= (a number with K, M or G)");
	expect_error(f, "rules", "a@example.test spam=maybe\n", "rules:1",
	    "spam= expects on or off, not \"maybe\"");
	expect_error(f, "rules", "alice@elsewhere.test\n    maildir ~/Maildir/\n",
	    "rules:1", "no account for alice@elsewhere.test (add it to uid)");
	expect_error(f, "rules", "    maildir ~/x\n", "rules:1",
	    "instruction before any key line (a key starts at the beginning of a line)");
	expect_error(f, "rules", "a@example.test\n    if subject ~ /a(b/ maildir ~/x\n", "rules:2",
	    "subject: bad regex /a(b/: missing closing parenthesis at offset 3");
	expect_error(f, "rules", "a@example.test\n    maildir ~/x uid=bob\n", "rules:2",
	    "uid=bob: uid= is not available with home_base (virtual accounts)");
	expect_error(f, "uid", "x@example.test ../etc\n", "uid:1",
	    "bad account name \"../etc\" (letters, digits, '.', '_' and '-' only with home_base)");
	expect_error(f, "uid", "x@example.test\n", "uid:1", "expected KEY ACCOUNT");
	expect_error(f, "gid", "x@example.test no_such_group_xyz\n", "gid:1",
	    "unknown group \"no_such_group_xyz\"");
	remove_file(f->src, "lists");
	expect_error(f, "rules", "a@example.test\n    maildir ~/x\x01y\n", "rules:2",
	    "control character in line");

	/* every error is reported, not only the first */
	write_file(f->src, "rules", "a@example.test colour=red\n    deliver x\n"
	    "b@example.test maxsize=huge\n");
	assert_int_equal(compile(f), 3);
}

/* Without home_base: passwd accounts and uid= options. */
static void test_compile_errors_passwd(void **state)
{
	struct fixture *f = *state;
	free(f->cfg.home_base);
	f->cfg.home_base = NULL;
	expect_error(f, "uid", "x@example.test no_such_user_xyz\n", "uid:1",
	    "unknown account \"no_such_user_xyz\"");
	expect_error(f, "uid", "x@example.test root\n", "uid:1",
	    "account \"root\": refusing uid 0");
	expect_error(f, "rules", "a@example.test\n    maildir /tmp/x uid=root\n", "rules:2",
	    "uid=root: refusing uid 0");
}

static void test_no_sources(void **state)
{
	struct fixture *f = *state;
	remove_file(f->src, "rules");
	remove_file(f->src, "uid");
	remove_file(f->src, "gid");
	assert_int_equal(compile(f), 1);
	assert_non_null(strstr(f->msgs.data, "neither a rules nor a uid source"));
	/* uid alone is enough */
	write_file(f->src, "uid", good_uid);
	compile_ok(f);
	/* a missing source directory */
	char *src = f->src;
	f->src = xasprintf("%s/missing", f->base);
	assert_int_equal(compile(f), 1);
	free(f->src);
	f->src = src;
}

static int count_db_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "db-", 3) == 0 || strncmp(de->d_name, "tmp-", 4) == 0)
			n++;
		assert_null(strstr(de->d_name, "-lock"));
	}
	closedir(d);
	return n;
}

static void test_failed_compile_keeps_old(void **state)
{
	struct fixture *f = *state;
	compile_ok(f);
	struct db *db = open_db(f);
	expect(db, "alice@example.test", "alice@example.test", "alice");

	write_file(f->src, "rules", "alice@example.test\n    deliver somewhere\n");
	assert_int_equal(compile(f), 1);
	expect(db, "alice@example.test", "alice@example.test", "alice");
	expect(db, "bob@example.test", "bob@example.test", "bob");
	db_close(db);
	db = open_db(f);
	expect(db, "bob@example.test", "bob@example.test", "bob");
	db_close(db);
	assert_int_equal(count_db_files(f->dbdir), 1);
}

static void test_reader_sees_new_data(void **state)
{
	struct fixture *f = *state;
	compile_ok(f);
	struct db *db = open_db(f);
	expect(db, "new@other.test", NULL, NULL);
	expect(db, "dave@other.test", NULL, "dave");

	write_file(f->src, "uid", "new@other.test newbie\n@example.test catchall\ncarol@ carol\n");
	compile_ok(f);
	expect(db, "new@other.test", NULL, "newbie");
	expect(db, "dave@other.test", NULL, NULL);
	assert_int_equal(count_db_files(f->dbdir), 1);

	/* and again, within the same second */
	write_file(f->src, "uid", "third@other.test third\n@example.test catchall\ncarol@ carol\n");
	compile_ok(f);
	expect(db, "new@other.test", NULL, NULL);
	expect(db, "third@other.test", NULL, "third");
	assert_int_equal(count_db_files(f->dbdir), 1);

	struct stat st;
	char *path = xasprintf("%s/%s", f->dbdir, DB_CURRENT_LINK);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	free(path);
	db_close(db);
}

static void test_open_missing(void **state)
{
	struct fixture *f = *state;
	struct db *db = NULL;
	char err[512] = "";
	assert_int_equal(db_open(f->dbdir, &db, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "db compile"));

	/* a database that vanishes is a temporary failure */
	compile_ok(f);
	db = open_db(f);
	char *path = xasprintf("%s/%s", f->dbdir, DB_CURRENT_LINK);
	assert_int_equal(unlink(path), 0);
	struct db_resolution r;
	assert_int_equal(db_resolve(db, "alice@example.test", '+', &r, err, sizeof(err)), -1);
	db_resolution_free(&r);
	/* garbage in its place too */
	int fd = open(path, O_WRONLY | O_CREAT, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "garbage garbage garbage", 23), 23);
	close(fd);
	assert_int_equal(db_resolve(db, "alice@example.test", '+', &r, err, sizeof(err)), -1);
	db_resolution_free(&r);
	free(path);
	db_close(db);
}

static void test_real_account(void **state)
{
	struct fixture *f = *state;
	struct passwd *pw = getpwnam("nobody");
	if (pw == NULL)
		skip();
	uid_t uid = pw->pw_uid;
	gid_t gid = pw->pw_gid;
	char *home = xstrdup(pw->pw_dir);

	free(f->cfg.home_base);
	f->cfg.home_base = NULL;
	write_file(f->src, "rules", "n@example.test\n    maildir /tmp/x\n"
	    "o@example.test\n    mbox /tmp/o uid=nobody\n");
	write_file(f->src, "uid", "n@example.test nobody\n");
	write_file(f->src, "gid", "");
	compile_ok(f);
	struct db *db = open_db(f);
	struct db_resolution r;
	assert_int_equal(resolve(db, "n@example.test", &r), 1);
	assert_string_equal(r.account, "nobody");
	assert_int_equal(r.uid, uid);
	assert_int_equal(r.gid, gid);
	assert_string_equal(r.home, home);
	db_resolution_free(&r);
	assert_int_equal(resolve(db, "o@example.test", &r), 1);
	assert_false(r.account_resolved);
	struct rules_entry e;
	assert_int_equal(rules_entry_decode(r.rules_blob, r.rules_len, &e), 0);
	assert_true(e.instr[0].has_uid);
	assert_int_equal(e.instr[0].uid, uid);
	rules_entry_free(&e);
	db_resolution_free(&r);
	db_close(db);
	free(home);
}

static void expect_domains(struct db *db)
{
	static const struct { const char *domain; int known; } cases[] = {
		{ "example.test", 1 }, { "EXAMPLE.Test", 1 },
		{ "other.test", 1 },            /* dave@other.test in uid */
		{ "nowhere.test", 0 },          /* carol@ makes no domain known */
		{ "test", 0 }, { "", 0 },
	};
	char err[512] = "";
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int k = db_domain_known(db, cases[i].domain, err, sizeof(err));
		if (k != cases[i].known)
			fail_msg("db_domain_known(%s) = %d (%s)", cases[i].domain, k, err);
	}
}

static const char good_lists[] =
    "# the lists\n"
    "Devs@Lists.Example.Test   mailman3  lmtp:127.0.0.1:8024  members-only\n"
    "announce@lists.example.test mailman3 lmtp:unix:/run/mailman3/lmtp.sock\n"
    "v6@lists.example.test     mailman3  lmtp:[::1]:24\n"
    "a-b@example.test          mailman3  lmtp:localhost:8024\n";

static void expect_list(struct db *db, const char *addr, const char *list, int role,
    const char *dest, int members_only)
{
	struct db_resolution r;
	int k = resolve(db, addr, &r);
	if (list == NULL) {
		if (r.list_key != NULL)
			fail_msg("%s resolved to list %s", addr, r.list_key);
		assert_int_equal(r.list_role, LIST_ROLE_NONE);
		assert_null(r.list_dest);
		db_resolution_free(&r);
		return;
	}
	assert_int_equal(k, 1);
	if (r.list_key == NULL)
		fail_msg("%s: no list", addr);
	assert_string_equal(r.list_key, list);
	assert_int_equal(r.list_role, role);
	assert_string_equal(r.list_manager, "mailman3");
	assert_string_equal(r.list_dest, dest);
	assert_int_equal(r.list_members_only, members_only);
	/* a list address is the manager's: no rules entry, no account */
	assert_null(r.rules_key);
	assert_false(r.account_resolved);
	db_resolution_free(&r);
}

/* The list address and Mailman 3's suffix addresses resolve to the list,
 * ahead of the @domain catch-all; anything else does not. */
static void test_lists(void **state)
{
	struct fixture *f = *state;
	const char *devs = "devs@lists.example.test", *tcp = "lmtp:127.0.0.1:8024";
	write_file(f->src, "lists", good_lists);
	compile_ok(f);
	struct db *db = open_db(f);
	expect_list(db, "devs@lists.example.test", devs, LIST_ROLE_POST, tcp, 1);
	expect_list(db, "DEVS@Lists.Example.TEST", devs, LIST_ROLE_POST, tcp, 1);
	static const char *const suffixes[] = { "bounces", "confirm", "join", "leave", "owner",
		"request", "subscribe", "unsubscribe", "bounces+x=y.test", "confirm+abc123" };
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		char *addr = xasprintf("devs-%s@lists.example.test", suffixes[i]);
		expect_list(db, addr, devs, LIST_ROLE_MANAGER, tcp, 1);
		free(addr);
	}
	expect_list(db, "announce-request@lists.example.test", "announce@lists.example.test",
	    LIST_ROLE_MANAGER, "lmtp:unix:/run/mailman3/lmtp.sock", 0);
	expect_list(db, "v6@lists.example.test", "v6@lists.example.test", LIST_ROLE_POST,
	    "lmtp:[::1]:24", 0);
	/* a dash in the list name */
	expect_list(db, "a-b-owner@example.test", "a-b@example.test", LIST_ROLE_MANAGER,
	    "lmtp:localhost:8024", 0);
	expect_list(db, "a-b@example.test", "a-b@example.test", LIST_ROLE_POST,
	    "lmtp:localhost:8024", 0);
	/* not Mailman's: the catch-all has them */
	expect_list(db, "devs-admin@lists.example.test", NULL, 0, NULL, 0);
	expect_list(db, "devs-bounces+@lists.example.test", NULL, 0, NULL, 0);
	expect_list(db, "devs+x@lists.example.test", NULL, 0, NULL, 0);
	expect_list(db, "devs@other.example.test", NULL, 0, NULL, 0);
	expect_list(db, "a-owner@example.test", NULL, 0, NULL, 0);
	expect(db, "a-owner@example.test", "@example.test", "catchall");
	expect(db, "devs@example.test", "@example.test", "catchall");
	/* the lists' domains are known */
	char err[256];
	assert_int_equal(db_domain_known(db, "lists.example.test", err, sizeof(err)), 1);
	db_close(db);
}

static void test_lists_errors(void **state)
{
	struct fixture *f = *state;
	expect_error(f, "lists", "devs@l.test mailman3\n", "lists:1",
	    "expected LIST@DOMAIN MANAGER DESTINATION [members-only]");
	expect_error(f, "lists", "@l.test mailman3 lmtp:127.0.0.1:24\n", "lists:1",
	    "bad list address \"@l.test\": expected LIST@DOMAIN");
	expect_error(f, "lists", "devs@ mailman3 lmtp:127.0.0.1:24\n", "lists:1",
	    "bad list address \"devs@\": expected LIST@DOMAIN");
	expect_error(f, "lists", "devs mailman3 lmtp:127.0.0.1:24\n", "lists:1",
	    "bad key \"devs\": expected local@domain, @domain or local@");
	expect_error(f, "lists", "devs@l.test mailman2 lmtp:127.0.0.1:24\n", "lists:1",
	    "unknown manager \"mailman2\" (mailman3)");
	expect_error(f, "lists", "devs@l.test mailman3 smtp:127.0.0.1:24\n", "lists:1",
	    "bad destination \"smtp:127.0.0.1:24\" (expected lmtp:HOST:PORT or "
	    "lmtp:unix:/absolute/path)");
	expect_error(f, "lists", "devs@l.test mailman3 lmtp:127.0.0.1:99999\n", "lists:1",
	    "bad destination \"lmtp:127.0.0.1:99999\": bad port \"99999\" (1-65535)");
	expect_error(f, "lists", "devs@l.test mailman3 lmtp:127.0.0.1\n", "lists:1",
	    "bad destination \"lmtp:127.0.0.1\": no port in \"127.0.0.1\" (expected "
	    "lmtp:HOST:PORT or lmtp:unix:/absolute/path)");
	expect_error(f, "lists", "devs@l.test mailman3 lmtp:unix:run/lmtp\n", "lists:1",
	    "bad destination \"lmtp:unix:run/lmtp\": unix socket path \"run/lmtp\" must be "
	    "absolute");
	expect_error(f, "lists", "devs@l.test mailman3 lmtp:127.0.0.1:24 moderated\n",
	    "lists:1", "unknown option \"moderated\" (members-only)");
	expect_error(f, "lists", "devs@l.test mailman3 lmtp:127.0.0.1:24\n"
	    "Devs@L.test mailman3 lmtp:127.0.0.1:25\n", "lists:2",
	    "duplicate key \"devs@l.test\" (first at line 1)");
	expect_error(f, "lists", "# a comment\nbob@example.test mailman3 lmtp:127.0.0.1:24\n",
	    "lists:2", "list bob@example.test is also a key of rules (a list address "
	    "belongs to the list manager)");
	expect_error(f, "lists", "dave@other.test mailman3 lmtp:127.0.0.1:24\n",
	    "lists:1", "list dave@other.test is also a key of uid (a list address "
	    "belongs to the list manager)");
	/* a catch-all key is no clash: the list is looked up first */
	write_file(f->src, "lists", "x@example.test mailman3 lmtp:127.0.0.1:24\n");
	compile_ok(f);
}

/* The domains the databases know, also in an environment compiled before
 * the domains database existed (read from the keys at the open). */
static void test_domains(void **state)
{
	struct fixture *f = *state;
	compile_ok(f);
	struct db *db = open_db(f);
	expect_domains(db);
	db_close(db);

	/* an older environment: no domains database */
	char *path = xasprintf("%s/current.mdb", f->dbdir);
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	assert_int_equal(mdb_env_create(&env), 0);
	mdb_env_set_maxdbs(env, 8);
	assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOLOCK, 0644), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "domains", 0, &dbi), 0);
	assert_int_equal(mdb_drop(txn, dbi, 1), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
	free(path);
	db = open_db(f);
	expect_domains(db);
	db_close(db);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_resolve, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_delimiter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compile_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compile_errors_passwd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_sources, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_compile_keeps_old, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_sees_new_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_real_account, setup, teardown),
		cmocka_unit_test_setup_teardown(test_domains, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lists, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lists_errors, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
