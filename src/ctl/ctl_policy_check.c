/*
 * ctl_policy_check.c - mailprocctl policy check < request: a dry run of
 * the policy service on one Postfix policy request (name=value lines).
 *
 * The same decision code as the service (policy/decide.c), on the same
 * databases, users' policies and greylist state, but the greylist store is
 * only peeked at (greylist_peek writes nothing) and no transaction is
 * remembered.  Prints the action= line first, then why.  In root mode it
 * runs as the daemon's user, as the service does, so that it creates no
 * file in state_dir that the service could not open.
 */
#include "ctl/ctl.h"
#include "conf/config.h"
#include "db/db.h"
#include "lists/members.h"
#include "policy/decide.h"
#include "policy/greylist.h"
#include "policy/policy_request.h"
#include "policy/policy_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A request is a few KiB; Postfix's largest are well below this. */
#define CHECK_INPUT_MAX (POLICY_MAX_ATTRS * (POLICY_LINE_MAX + 2) + 2)

static int get_policy(void *arg, const char *account, struct user_policy **out,
    char *err, size_t errlen)
{
	return policy_store_get(arg, account, out, err, errlen);
}

/* The request on standard input into *req.  0, or -1 (said). */
static int read_request(struct policy_request *req)
{
	struct policy_parser p;
	char chunk[8192];
	size_t n, total = 0, used;
	enum policy_parse_status st = POLICY_PARSE_MORE;

	policy_parser_init(&p);
	while (st == POLICY_PARSE_MORE && (n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
		total += n;
		st = policy_parser_feed(&p, chunk, n, &used);
		if (st == POLICY_PARSE_DONE && used < n) {
			ctl_error("policy check: more than one request on standard input");
			st = POLICY_PARSE_ERROR;
			p.error = NULL;
		}
		if (total > CHECK_INPUT_MAX)
			break;
	}
	if (ferror(stdin)) {
		ctl_error("policy check: reading the request: %s", strerror(errno));
		policy_parser_free(&p);
		return -1;
	}
	/* the empty line that ends it may be left out here */
	if (st == POLICY_PARSE_MORE && policy_parser_pending(&p)) {
		st = policy_parser_feed(&p, "\n", 1, &used);
		if (st == POLICY_PARSE_MORE)
			st = policy_parser_feed(&p, "\n", 1, &used);
	}
	if (st == POLICY_PARSE_ERROR && p.error != NULL)
		ctl_error("policy check: not a policy request: %s (the service would close "
		    "the connection)", p.error);
	else if (st == POLICY_PARSE_MORE)
		ctl_error("policy check: no request on standard input");
	if (st != POLICY_PARSE_DONE) {
		policy_parser_free(&p);
		return -1;
	}
	policy_parser_take(&p, req);
	policy_parser_free(&p);
	return 0;
}

int ctl_policy_check(const struct config *cfg, char **args, int nargs)
{
	struct policy_request req = { 0 };
	struct decide_ctx ctx = { .cfg = cfg };
	struct policy_store *store = NULL;
	struct decision d;
	char err[512] = "";
	time_t now = time(NULL);

	if (read_request(&req) < 0)
		return CTL_ERROR;
	if (ctl_become_daemon_user(cfg, "policy check") < 0) {
		policy_request_free(&req);
		return CTL_ERROR;
	}
	if (db_open(cfg->db_dir, &ctx.db, err, sizeof(err)) < 0) {
		fprintf(stderr, "mailprocctl: policy check: %s\n", err);
		ctx.db = NULL;
	}
	if (cfg->members_source != MEMBERS_NONE)
		ctx.members = members_open(cfg, err, sizeof(err));
	if (cfg->state_dir != NULL &&
	    policy_store_open(cfg->state_dir, 0, &store, err, sizeof(err)) == 0) {
		ctx.get_policy = get_policy;
		ctx.policy_arg = store;
	} else {
		fprintf(stderr, "mailprocctl: policy check: users' policies: %s\n", err);
	}
	decision_init(&d);
	if (decide(&ctx, &req, now, &d) == DECIDE_GREYLIST) {
		struct greylist_answer a;
		if (greylist_peek(cfg, d.gl_client, d.gl_sender, d.gl_recipient, now, &a, err,
		    sizeof(err)) < 0) {
			fprintf(stderr, "mailprocctl: policy check: greylisting: %s\n", err);
			a.verdict = GREYLIST_UNAVAILABLE;
			a.retry_in = 0;
			a.auto_allowed = 0;
		}
		enum decide_grey v = a.verdict == GREYLIST_PASS ? DECIDE_GREY_PASS :
		    a.verdict == GREYLIST_DEFER ? DECIDE_GREY_DEFER : DECIDE_GREY_UNAVAILABLE;
		decide_greylisted(&ctx, &d, v, a.retry_in, a.auto_allowed, now);
	}
	printf("action=%s\n", d.action);
	fputs(d.why.data ? d.why.data : "", stdout);
	decision_free(&d);
	if (store != NULL)
		policy_store_close(store);
	if (ctx.db != NULL)
		db_close(ctx.db);
	members_close(ctx.members);
	policy_request_free(&req);
	return CTL_OK;
}
