/*
 * decide.h - what the policy service answers to one request, and why.
 *
 * At RCPT, for a recipient in a domain the databases know, in this order:
 * unknown recipient 550 5.1.1; `size` over the recipient's limit (its
 * rules entry's maxsize=, its account's own maxsize, max_message_size)
 * 552 5.3.4; the members-only list hook (550 5.7.1); then the account's
 * own policy: allow -> DUNNO, block -> 550 5.7.1 TEXT, greylist on -> the
 * caller asks the greylist store (async in the service, a dry run in
 * mailprocctl) and hands the verdict to decide_greylisted().  At
 * END-OF-MESSAGE the actual size against every recipient the transaction
 * (instance) was remembered with.  Anything else, and any temporary
 * trouble: DUNNO.
 *
 * The same code serves the daemon and `mailprocctl policy check`; only the
 * context differs.
 */
#ifndef MP_DECIDE_H
#define MP_DECIDE_H

#include <stdint.h>
#include <time.h>

#include "lib/buf.h"
#include "metrics/policy_figures.h"

struct config;
struct db;
struct db_resolution;
struct members;
struct policy_request;
struct tx_memory;
struct user_policy;

/* The account's own policy: 1 found (*out, the caller frees it), 0 none,
 * -1 temporary failure (err). */
typedef int (*decide_policy_fn)(void *arg, const char *account,
    struct user_policy **out, char *err, size_t errlen);

struct decide_ctx {
	const struct config *cfg;
	struct db *db;                  /* NULL: the databases cannot be read */
	decide_policy_fn get_policy;    /* NULL: no users' policies */
	void *policy_arg;
	struct tx_memory *txs;          /* recipients by instance; NULL: none kept */
	struct members *members;        /* the lists' members; NULL: no members_source */
};

#define DECIDE_ACTION_MAX 512

struct decision {
	char action[DECIDE_ACTION_MAX]; /* "DUNNO", "550 5.1.1 ..." (no "action=") */
	enum fig_policy_answer figure;  /* which answer it is, for the figures */
	struct buf why;                 /* lines saying why, for policy check */
	char reason[512];               /* one line for the log */
	int temporary;                  /* DUNNO because something is wrong */
	/* DECIDE_GREYLIST: the triplet to check */
	char *gl_client, *gl_sender, *gl_recipient;
	/* remembered at RCPT once the answer is DUNNO */
	char *instance, *rcpt, *limit_why;
	uint64_t count, limit;
	int remember;
};

enum decide_step {
	DECIDE_DONE,            /* d->action is the answer */
	DECIDE_GREYLIST,        /* check d->gl_*, then decide_greylisted() */
};

enum decide_grey { DECIDE_GREY_PASS, DECIDE_GREY_DEFER, DECIDE_GREY_UNAVAILABLE };

void decision_init(struct decision *d);
void decision_free(struct decision *d);
enum decide_step decide(struct decide_ctx *ctx, const struct policy_request *req,
    time_t now, struct decision *d);
/* The greylist store's verdict for a DECIDE_GREYLIST: d->action is final. */
void decide_greylisted(struct decide_ctx *ctx, struct decision *d, enum decide_grey verdict,
    long retry_in, int auto_allowed, time_t now);

/* The members-only list hook (issue 11): 1 and a text in *text when the
 * sender may not post to the list the recipient resolved to (a members-only
 * list's own address, and members_check says no member), else 0.  why
 * gets a line saying why, or "" when the check does not apply; when the
 * members are not known the mail goes through, and that is logged. */
int decide_members_only(struct decide_ctx *ctx, const struct db_resolution *res,
    const char *sender, const char **text, char *why, size_t whylen);

#endif
