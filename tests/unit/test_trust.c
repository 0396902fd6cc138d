/*
 * test_trust.c - the spawner's and the worker's own checks against a real
 * compiled database (spawner/trust.c): a request (or job) naming an
 * account the databases do not give the recipient is refused, so is an
 * account below minimum_uid, and a uid=/gid= part runs only the
 * instructions that name the worker's own account.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/config.h"
#include "db/compile.h"
#include "db/db.h"
#include "db/identity.h"
#include "db/rules_entry.h"
#include "lib/buf.h"
#include "lib/xalloc.h"
#include "queue/qfile.h"
#include "spawner/trust.h"

/* Two unprivileged accounts (uid >= 100) and one below 100. */
struct acct {
	char name[64];
	uid_t uid;
	gid_t gid;
	char home[256];
};

struct fixture {
	char base[64];
	struct config cfg;
	struct db *db;
	struct acct a, b, low;  /* a: nobody, b: another, low: daemon (uid 1) */
};

static void write_file(const char *dir, const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	free(path);
}

static void collect(void *ctx, const char *msg)
{
	buf_puts(ctx, msg);
}

static int acct_set(struct acct *a, const struct passwd *pw)
{
	if (pw == NULL)
		return -1;
	snprintf(a->name, sizeof(a->name), "%s", pw->pw_name);
	snprintf(a->home, sizeof(a->home), "%s", pw->pw_dir);
	a->uid = pw->pw_uid;
	a->gid = pw->pw_gid;
	return 0;
}

/* An account other than nobody with 100 <= uid < 65534 and a group of its
 * own (not 0). */
static int find_other(struct acct *a, uid_t not)
{
	struct passwd *pw;
	int found = -1;
	setpwent();
	while (found < 0 && (pw = getpwent()) != NULL)
		if (pw->pw_uid >= 100 && pw->pw_uid < 65534 && pw->pw_uid != not && pw->pw_gid != 0)
			found = acct_set(a, pw);
	endpwent();
	return found;
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	char err[512];
	struct buf msgs = BUF_INIT;

	if (acct_set(&f->a, getpwnam("nobody")) < 0 || acct_set(&f->low, getpwnam("daemon")) < 0 ||
	    find_other(&f->b, f->a.uid) < 0) {
		free(f);
		return -1;
	}
	snprintf(f->base, sizeof(f->base), "/tmp/test_trust.XXXXXX");
	assert_non_null(mkdtemp(f->base));
	char *src = xasprintf("%s/src", f->base);
	assert_int_equal(mkdir(src, 0755), 0);
	config_defaults(&f->cfg);
	free(f->cfg.db_dir);
	f->cfg.db_dir = xasprintf("%s/db", f->base);
	char *rules = xasprintf(
	    "a@example.test\n"
	    "    maildir ~/Maildir/\n"
	    "low@example.test\n"
	    "    maildir ~/Maildir/\n"
	    "split@example.test\n"
	    "    maildir ~/Maildir/\n"
	    "    maildir /tmp/b-copy uid=%s\n"
	    "    pipe \"id\" uid=%s\n"
	    "    mbox /tmp/a-self uid=%s\n",
	    f->b.name, f->b.name, f->a.name);
	char *uids = xasprintf("a@example.test %s\nlow@example.test %s\nsplit@example.test %s\n",
	    f->a.name, f->low.name, f->a.name);
	write_file(src, "rules", rules);
	write_file(src, "uid", uids);
	write_file(src, "gid", "");
	if (db_compile(&f->cfg, src, collect, &msgs, NULL) != 0)
		fail_msg("compile: %s", msgs.data ? msgs.data : "");
	if (db_open(f->cfg.db_dir, &f->db, err, sizeof(err)) != 0)
		fail_msg("db_open: %s", err);
	buf_free(&msgs);
	free(rules);
	free(uids);
	free(src);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char *cmd = xasprintf("rm -rf '%s'", f->base);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	db_close(f->db);
	config_free(&f->cfg);
	free(f);
	return 0;
}

static int spawn_check(struct fixture *f, const struct acct *claim, const char *address,
    uint32_t part, uint64_t min_uid, char *err, size_t errlen)
{
	struct db_identity id;
	int r = trust_spawn_identity(f->db, '+', min_uid, claim->uid, claim->gid, claim->name,
	    address, part, &id, err, errlen);
	if (r == 0) {
		assert_int_equal(id.uid, claim->uid);
		assert_int_equal(id.gid, claim->gid);
		assert_string_equal(id.account, claim->name);
		db_identity_free(&id);
	}
	return r;
}

static void test_spawn_gives_the_databases_account(void **state)
{
	struct fixture *f = *state;
	struct db_identity id;
	char err[512];

	assert_int_equal(trust_spawn_identity(f->db, '+', 100, f->a.uid, f->a.gid, f->a.name,
	    "A+tag@Example.Test", DB_PART_PRIMARY, &id, err, sizeof(err)), 0);
	assert_string_equal(id.home, f->a.home);        /* the home is the databases' too */
	db_identity_free(&id);
}

static void test_spawn_forged_account_refused(void **state)
{
	struct fixture *f = *state;
	char err[512];

	/* b for a's address: the databases give a */
	assert_int_equal(spawn_check(f, &f->b, "a@example.test", DB_PART_PRIMARY, 100, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "the databases give"));
	/* a's name with b's uid */
	struct acct mixed = f->a;
	mixed.uid = f->b.uid;
	assert_int_equal(spawn_check(f, &mixed, "a@example.test", DB_PART_PRIMARY, 100, err,
	    sizeof(err)), -1);
	/* an address the databases do not know */
	assert_int_equal(spawn_check(f, &f->a, "nobody@else.test", DB_PART_PRIMARY, 100, err,
	    sizeof(err)), -1);
}

static void test_spawn_below_minimum_uid_refused(void **state)
{
	struct fixture *f = *state;
	char err[512];

	assert_int_equal(spawn_check(f, &f->low, "low@example.test", DB_PART_PRIMARY, 100, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "minimum_uid"));
	/* lowered on purpose, it runs */
	assert_int_equal(spawn_check(f, &f->low, "low@example.test", DB_PART_PRIMARY, 1, err,
	    sizeof(err)), 0);
	/* nobody (65534) and the other account (>= 100) pass the default */
	assert_int_equal(spawn_check(f, &f->a, "a@example.test", DB_PART_PRIMARY, 100, err,
	    sizeof(err)), 0);
}

static void test_spawn_override_parts(void **state)
{
	struct fixture *f = *state;
	char err[512];

	/* instructions 1 and 2 name b, 3 names a (the entry's own) */
	assert_int_equal(spawn_check(f, &f->b, "split@example.test", 1, 100, err, sizeof(err)), 0);
	assert_int_equal(spawn_check(f, &f->b, "split@example.test", 2, 100, err, sizeof(err)), 0);
	assert_int_equal(spawn_check(f, &f->a, "split@example.test", 3, 100, err, sizeof(err)), 0);
	/* instruction 0 has no uid=; 9 does not exist; b is not the entry's */
	assert_int_equal(spawn_check(f, &f->b, "split@example.test", 0, 100, err, sizeof(err)), -1);
	assert_int_equal(spawn_check(f, &f->b, "split@example.test", 9, 100, err, sizeof(err)), -1);
	assert_int_equal(spawn_check(f, &f->b, "split@example.test", DB_PART_PRIMARY, 100, err,
	    sizeof(err)), -1);
	assert_int_equal(spawn_check(f, &f->a, "split@example.test", 1, 100, err, sizeof(err)), -1);
}

static uint64_t version_of(struct fixture *f, const char *address)
{
	struct db_resolution r;
	char err[256];
	assert_int_equal(db_resolve(f->db, address, '+', &r, err, sizeof(err)), 1);
	uint64_t v = qfile_rules_version(r.rules_blob, r.rules_len);
	db_resolution_free(&r);
	return v;
}

static int worker_check(struct fixture *f, const struct acct *self, int root_mode,
    const char *address, const char *run, uint64_t version, char *err, size_t errlen)
{
	struct trust_self ts = { root_mode, self->uid, self->gid, self->name, NULL };
	struct db_resolution res;
	struct rules_entry e;
	int r = trust_worker_part(f->db, '+', &ts, address, run, version, &res, &e, err, errlen);
	if (r == 0) {
		assert_non_null(res.rules_blob);
		assert_true(e.ninstr > 0);
	} else {
		assert_null(res.rules_blob);
		assert_int_equal(e.ninstr, 0);
	}
	rules_entry_free(&e);
	db_resolution_free(&res);
	return r;
}

static void test_worker_runs_only_its_own_account(void **state)
{
	struct fixture *f = *state;
	char err[512];
	uint64_t va = version_of(f, "a@example.test");
	uint64_t vs = version_of(f, "split@example.test");

	assert_int_equal(worker_check(f, &f->a, 1, "a@example.test", "primary", va, err,
	    sizeof(err)), 0);
	/* b's worker asked to run a's entry */
	assert_int_equal(worker_check(f, &f->b, 1, "a@example.test", "primary", va, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "not this worker's account"));
	/* b's worker runs the instructions that name b, and only those */
	assert_int_equal(worker_check(f, &f->b, 1, "split@example.test", "only:1,2", vs, err,
	    sizeof(err)), 0);
	assert_int_equal(worker_check(f, &f->b, 1, "split@example.test", "only:1,3", vs, err,
	    sizeof(err)), -1);
	assert_int_equal(worker_check(f, &f->b, 1, "split@example.test", "only:0", vs, err,
	    sizeof(err)), -1);
	assert_int_equal(worker_check(f, &f->a, 1, "split@example.test", "only:1", vs, err,
	    sizeof(err)), -1);
	assert_int_equal(worker_check(f, &f->a, 1, "split@example.test", "primary:except:1,2",
	    vs, err, sizeof(err)), 0);
	/* malformed lists, single-user parts in root mode */
	assert_int_equal(worker_check(f, &f->b, 1, "split@example.test", "only:1,", vs, err,
	    sizeof(err)), -1);
	assert_int_equal(worker_check(f, &f->b, 1, "split@example.test", "only:", vs, err,
	    sizeof(err)), -1);
	assert_int_equal(worker_check(f, &f->a, 1, "a@example.test", "all", va, err,
	    sizeof(err)), -1);
	/* single-user mode: "all" parts only */
	assert_int_equal(worker_check(f, &f->a, 0, "a@example.test", "all", va, err,
	    sizeof(err)), 0);
	assert_int_equal(worker_check(f, &f->a, 0, "a@example.test", "primary", va, err,
	    sizeof(err)), -1);
}

static void test_worker_refuses_another_version(void **state)
{
	struct fixture *f = *state;
	char err[512];
	uint64_t va = version_of(f, "a@example.test");

	assert_int_equal(worker_check(f, &f->a, 1, "a@example.test", "primary", va + 1, err,
	    sizeof(err)), -1);
	assert_non_null(strstr(err, "changed"));
}

static void test_instruction_runs_as(void **state)
{
	struct fixture *f = *state;
	struct db_resolution r;
	struct rules_entry e;
	char err[256];
	struct trust_self sa = { 1, f->a.uid, f->a.gid, f->a.name, NULL };
	struct trust_self sb = { 1, f->b.uid, f->b.gid, f->b.name, NULL };

	assert_int_equal(db_resolve(f->db, "split@example.test", '+', &r, err, sizeof(err)), 1);
	assert_int_equal(rules_entry_decode(r.rules_blob, r.rules_len, &e), 0);
	assert_true(trust_instruction_runs_as(&e.instr[0], r.uid, r.gid, &sa));
	assert_false(trust_instruction_runs_as(&e.instr[0], r.uid, r.gid, &sb));
	assert_false(trust_instruction_runs_as(&e.instr[1], r.uid, r.gid, &sa));
	assert_true(trust_instruction_runs_as(&e.instr[1], r.uid, r.gid, &sb));
	assert_true(trust_instruction_runs_as(&e.instr[3], r.uid, r.gid, &sa));
	rules_entry_free(&e);
	db_resolution_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_spawn_gives_the_databases_account, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spawn_forged_account_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spawn_below_minimum_uid_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spawn_override_parts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_worker_runs_only_its_own_account, setup, teardown),
		cmocka_unit_test_setup_teardown(test_worker_refuses_another_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_instruction_runs_as, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
