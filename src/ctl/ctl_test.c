/*
 * ctl_test.c - `mailprocctl test [-s SENDER] ADDRESS < message`: a dry run
 * of the rules for ADDRESS on a message.  Prints, for each instruction
 * reached, its line, condition and whether it held, and what it would
 * deliver where; then the outcome.  Nothing is delivered and no command
 * is run.  The walk is the worker's own (rules_walk), so what this shows is
 * what a delivery does; only the spam verdict is not computed (false,
 * score 0) until the spam engine lands.
 *
 * Output, one fact per line:
 *   address: bob+x@example.test
 *   entry: bob@example.test
 *   account: bob  home: /home/bob
 *   line 3: if header List-Id ~ /dev/ -> holds: maildir /home/bob/Maildir/.dev/
 *   line 4: if spam -> does not hold
 *   result: deliver (1 destination)
 * A list address (lists database) runs no rules: it prints
 *   address: devs-request@lists.example.test
 *   list: devs@lists.example.test (manager)
 *   result: handed to mailman3 over LMTP at lmtp:127.0.0.1:8024
 */
#include "conf/config.h"
#include "ctl/ctl.h"
#include "db/db.h"
#include "db/rules_entry.h"
#include "deliver/deliver.h"
#include "lib/buf.h"
#include "lib/xalloc.h"
#include "mime/mime.h"
#include "rules/walk.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct dry_run {
	const char *home;
	int destinations;
	int rejected;
};

static void describe(const struct rule_instruction *in, const struct dry_run *d)
{
	char path[PATH_MAX], err[256];

	switch (in->action) {
	case ACT_MAILDIR:
	case ACT_MBOX:
		if (deliver_expand_path(in->arg, d->home, path, sizeof(path), err, sizeof(err)) < 0)
			printf("%s %s (bad destination: %s)", rule_action_name(in->action), in->arg, err);
		else
			printf("%s %s", rule_action_name(in->action), path);
		break;
	case ACT_PIPE:
		printf("pipe ");
		ctl_print_quoted(in->arg);
		break;
	case ACT_REJECT:
		printf("reject ");
		ctl_print_quoted(in->arg ? in->arg : "");
		break;
	default:
		printf("%s%s%s", rule_action_name(in->action), in->arg ? " " : "",
		    in->arg ? in->arg : "");
		break;
	}
	if (in->has_uid)
		printf(" uid=%lu", (unsigned long)in->uid);
	if (in->has_gid)
		printf(" gid=%lu", (unsigned long)in->gid);
}

static void visit(const struct rule_instruction *in, int index, int holds, const char *warn,
    void *arg)
{
	struct dry_run *d = arg;
	struct buf cond = BUF_INIT;

	rule_condition_format(in, &cond);
	printf("line %d: ", in->line);
	if (cond.len)
		printf("if %s -> %s", cond.data, holds ? "holds" : "does not hold");
	else
		printf("always");
	buf_free(&cond);
	if (holds) {
		printf(": ");
		describe(in, d);
		d->destinations += rule_action_writes_as_user(in->action) ||
		    in->action == ACT_FORWARD;
		d->rejected += in->action == ACT_REJECT;
	}
	putchar('\n');
	if (warn[0])
		printf("  warning: %s\n", warn);
}

static const char *fallback_home(void)
{
	struct passwd *pw = getpwuid(getuid());
	return pw && pw->pw_dir ? pw->pw_dir : "/";
}

int ctl_test(const struct config *cfg, char **args, int nargs)
{
	const char *sender = "";
	int a = 0;

	if (a + 1 < nargs && strcmp(args[a], "-s") == 0) {
		sender = args[a + 1];
		a += 2;
	}
	if (nargs - a != 1) {
		ctl_error("usage: mailprocctl test [-s SENDER] ADDRESS < message");
		return CTL_USAGE;
	}
	const char *address = args[a];
	struct db *db;
	struct db_resolution r;
	char err[512];
	if (db_open(cfg->db_dir, &db, err, sizeof(err)) < 0) {
		ctl_error("test: %s", err);
		return CTL_ERROR;
	}
	int known = db_resolve(db, address, cfg->recipient_delimiter, &r, err, sizeof(err));
	db_close(db);
	if (known <= 0) {
		if (known < 0)
			ctl_error("test: %s", err);
		else
			printf("address: %s\nresult: unknown address (550 5.1.1 at RCPT)\n", address);
		db_resolution_free(&r);
		return CTL_ERROR;
	}
	if (r.list_key != NULL) {
		/* no rules run: the message goes to the list manager as it is */
		printf("address: %s\nlist: %s (%s)\nresult: handed to %s over LMTP at %s\n",
		    r.address, r.list_key, r.list_role == LIST_ROLE_POST ? "post" : "manager",
		    r.list_manager, r.list_dest);
		db_resolution_free(&r);
		return CTL_OK;
	}

	int status = CTL_ERROR;
	size_t len = 0;
	char *msg = ctl_read_message("test", cfg->max_message_size, &len);
	struct rules_entry e = { .spam = -1 };
	struct mime_message mm = { 0 };
	struct dry_run d = { .home = r.home ? r.home : fallback_home() };
	if (msg == NULL)
		goto out;
	if (r.rules_blob != NULL && rules_entry_decode(r.rules_blob, r.rules_len, &e) < 0) {
		ctl_error("test: the rules entry for %s is corrupt", r.rules_key);
		goto out;
	}
	printf("address: %s\n", r.address);
	printf("entry: %s\n", r.rules_key ? r.rules_key : "- (no rules entry)");
	printf("account: %s  home: %s\n", r.account ? r.account : "-", d.home);
	printf("sender: <%s>  size: %zu bytes\n", sender, len);
	status = CTL_OK;
	if (e.maxsize > 0 && len > e.maxsize) {
		printf("result: refused, over maxsize=%llu (552 5.3.4)\n",
		    (unsigned long long)e.maxsize);
		goto out;
	}
	const char *loop = deliver_loop_reason(msg, len, r.address);
	if (loop != NULL) {
		printf("result: bounced: %s (5.4.6)\n", loop);
		goto out;
	}
	if (mime_parse(msg, len, cfg->body_match_limit, 0, &mm) < 0) {
		ctl_error("test: cannot parse the message");
		status = CTL_ERROR;
		goto out;
	}
	struct rule_context ctx = {
		.sender = sender, .rcpt = r.address,
		.extension = r.extension ? r.extension : "",
		.size = len, .spam = 0, .score = 0, .msg = &mm,
	};
	if (rules_walk(&e, &ctx, visit, &d) == 0) {
		struct rule_instruction def;
		if (rules_parse_instruction(cfg->default_delivery, &def, err, sizeof(err)) == 0) {
			printf("default_delivery: ");
			describe(&def, &d);
			putchar('\n');
			rule_instruction_free(&def);
			d.destinations++;
		}
	}
	if (d.rejected)
		printf("result: bounced by reject (5.7.1)\n");
	else if (d.destinations == 0)
		printf("result: delivered nowhere (discarded)\n");
	else
		printf("result: deliver (%d destination%s)\n", d.destinations,
		    d.destinations == 1 ? "" : "s");
out:
	mime_message_free(&mm);
	rules_entry_free(&e);
	db_resolution_free(&r);
	free(msg);
	return status;
}
