/*
 * ctl_db.c - `mailprocctl db compile [SRCDIR]` and `db lookup ADDRESS`.
 *
 * db lookup prints one `key: value` line each, always in this order, with
 * "-" for nothing:
 *   address, extension, rules key, uid key, account, uid, gid, home, list,
 *   (for a list address: list role (post, manager), list manager, list
 *   destination, list members-only (yes, no)),
 *   maxsize, spam (default, on, off),
 * then (not for a list, handed to its manager as it is)
 * `instruction: ACTION [ARG] [uid=N] [gid=N]` per instruction, or
 * `default_delivery: INSTRUCTION` when the address has no instructions.
 * An unknown address prints `unknown address` and exits 1.
 */
#include "conf/config.h"
#include "ctl/ctl.h"
#include "db/compile.h"
#include "db/db.h"
#include "db/rules_entry.h"
#include "lib/buf.h"
#include "rules/eval.h"

#include <stdio.h>
#include <stdlib.h>

static void report_compile_error(void *ctx, const char *msg)
{
	fprintf(stderr, "%s\n", msg);
}

int ctl_db_compile(const struct config *cfg, char **args, int nargs)
{
	const char *srcdir = nargs > 0 ? args[0] : cfg->db_source_dir;
	struct compile_stats st;

	int errors = db_compile(cfg, srcdir, report_compile_error, NULL, &st);
	if (errors > 0) {
		ctl_error("db compile: %d error%s, database unchanged", errors,
		    errors == 1 ? "" : "s");
		return CTL_ERROR;
	}
	printf("db compile: %zu rules, %zu uid, %zu gid, %zu lists -> %s\n",
	    st.rules, st.uid, st.gid, st.lists, st.db_file);
	free(st.db_file);
	return CTL_OK;
}

static const char *or_dash(const char *s)
{
	return s != NULL ? s : "-";
}

static void print_instruction(const struct rule_instruction *in)
{
	printf("instruction: ");
	if (in->ncond > 0) {
		struct buf cond = BUF_INIT;
		rule_condition_format(in, &cond);
		printf("if %s ", cond.data ? cond.data : "");
		buf_free(&cond);
	}
	printf("%s", rule_action_name(in->action));
	if (in->arg != NULL)
		printf(" %s", in->arg);
	if (in->has_uid)
		printf(" uid=%lu", (unsigned long)in->uid);
	if (in->has_gid)
		printf(" gid=%lu", (unsigned long)in->gid);
	putchar('\n');
}

static void print_account(const struct db_resolution *r)
{
	printf("account: %s\n", r->account_resolved ? r->account : "-");
	if (r->account_resolved) {
		printf("uid: %lu\n", (unsigned long)r->uid);
		printf("gid: %lu\n", (unsigned long)r->gid);
	} else {
		printf("uid: -\ngid: -\n");
	}
	printf("home: %s\n", r->account_resolved ? r->home : "-");
}

/* The rules entry part; an undecodable entry is an error. */
static int print_rules(const struct config *cfg, const struct db_resolution *r)
{
	struct rules_entry e = { .spam = -1 };
	if (r->rules_blob != NULL && rules_entry_decode(r->rules_blob, r->rules_len, &e) < 0) {
		ctl_error("db lookup: the rules entry for %s is corrupt", r->rules_key);
		return CTL_ERROR;
	}
	if (e.maxsize > 0)
		printf("maxsize: %llu\n", (unsigned long long)e.maxsize);
	else
		printf("maxsize: -\n");
	printf("spam: %s\n", e.spam < 0 ? "default" : e.spam ? "on" : "off");
	for (int i = 0; i < e.ninstr; i++)
		print_instruction(&e.instr[i]);
	if (e.ninstr == 0)
		printf("default_delivery: %s\n", cfg->default_delivery);
	rules_entry_free(&e);
	return CTL_OK;
}

int ctl_db_lookup(const struct config *cfg, char **args, int nargs)
{
	struct db *db;
	struct db_resolution r;
	char err[512];

	if (db_open(cfg->db_dir, &db, err, sizeof(err)) < 0) {
		ctl_error("db lookup: %s", err);
		return CTL_ERROR;
	}
	int known = db_resolve(db, args[0], cfg->recipient_delimiter, &r, err, sizeof(err));
	db_close(db);
	int status = CTL_OK;
	if (known < 0) {
		ctl_error("db lookup: %s", err);
		status = CTL_ERROR;
	} else if (known == 0) {
		printf("unknown address\n");
		status = CTL_ERROR;
	} else {
		printf("address: %s\n", r.address);
		printf("extension: %s\n", or_dash(r.extension));
		printf("rules key: %s\n", or_dash(r.rules_key));
		printf("uid key: %s\n", or_dash(r.uid_key));
		print_account(&r);
		printf("list: %s\n", or_dash(r.list_key));
		if (r.list_key != NULL) {
			printf("list role: %s\n", r.list_role == LIST_ROLE_POST ? "post" : "manager");
			printf("list manager: %s\n", r.list_manager);
			printf("list destination: %s\n", r.list_dest);
			printf("list members-only: %s\n", r.list_members_only ? "yes" : "no");
		}
		if (r.list_key == NULL)
			status = print_rules(cfg, &r);
	}
	db_resolution_free(&r);
	return status;
}
