/*
 * decide.c - the policy service's decision (decide.h): the order of the
 * checks, the answers' codes and texts, and the reasons given for them.
 */
#include "policy/decide.h"
#include "policy/policy_request.h"
#include "policy/tx_memory.h"
#include "policy/user_policy.h"
#include "conf/config.h"
#include "db/address.h"
#include "db/db.h"
#include "db/rules_entry.h"
#include "lists/members.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_BLOCK_TEXT "Refused by the recipient's own policy"

void decision_init(struct decision *d)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->action, sizeof(d->action), "DUNNO");
	d->figure = FPA_DUNNO;
}

void decision_free(struct decision *d)
{
	buf_free(&d->why);
	free(d->gl_client);
	free(d->gl_sender);
	free(d->gl_recipient);
	free(d->instance);
	free(d->rcpt);
	free(d->limit_why);
	memset(d, 0, sizeof(*d));
}

static void why(struct decision *d, const char *fmt, ...) MP_PRINTF(2, 3);
static void why(struct decision *d, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
	va_end(ap);
	buf_puts(&d->why, d->reason);
	buf_putc(&d->why, '\n');
}

/* The answer, with any byte that could break the protocol (a user's text)
 * made a '?'; figure says which it is. */
static void answer(struct decision *d, enum fig_policy_answer figure, const char *fmt, ...)
    MP_PRINTF(3, 4);
static void answer(struct decision *d, enum fig_policy_answer figure, const char *fmt, ...)
{
	va_list ap;
	d->figure = figure;
	va_start(ap, fmt);
	vsnprintf(d->action, sizeof(d->action), fmt, ap);
	va_end(ap);
	for (char *p = d->action; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
}

static enum decide_step temporary(struct decision *d, const char *what, const char *err)
{
	d->temporary = 1;
	d->figure = FPA_TEMPORARY;
	why(d, "DUNNO: %s: %s (temporary; Postfix goes on with its other restrictions)",
	    what, err);
	/* the log line says the rest */
	snprintf(d->reason, sizeof(d->reason), "%s: %s", what, err);
	return DECIDE_DONE;
}

int decide_members_only(struct decide_ctx *ctx, const struct db_resolution *res,
    const char *sender, const char **text, char *why, size_t whylen)
{
	char reason[400];

	*text = NULL;
	why[0] = '\0';
	if (res->list_key == NULL || !res->list_members_only || res->list_role != LIST_ROLE_POST)
		return 0;
	if (ctx->members == NULL) {
		snprintf(why, whylen, "<%s> is members-only, but members_source is none: "
		    "let through", res->list_key);
		log_info("policy: %s", why);
		return 0;
	}
	switch (members_check(ctx->members, res->list_key, sender, reason, sizeof(reason))) {
	case MEMBERS_NOT_MEMBER:
		snprintf(why, whylen, "<%s> is a members-only list: %s", res->list_key, reason);
		*text = "Only members may post to this list";
		return 1;
	case MEMBERS_IS_MEMBER:
		snprintf(why, whylen, "<%s> is a members-only list: %s", res->list_key, reason);
		return 0;
	case MEMBERS_UNKNOWN:
	default:
		snprintf(why, whylen, "<%s> is a members-only list, but %s: let through "
		    "(the list manager still moderates)", res->list_key, reason);
		log_info("policy: %s", why);
		return 0;
	}
}

/* The smallest of the limits that apply (0 = none), and where it is set. */
static void lower_limit(uint64_t *limit, char *what, size_t whatlen, uint64_t cand,
    const char *desc)
{
	if (cand == 0 || (*limit != 0 && *limit <= cand))
		return;
	*limit = cand;
	snprintf(what, whatlen, "%s", desc);
}

static uint64_t entry_maxsize(const struct db_resolution *res)
{
	struct rules_entry e;
	uint64_t max = 0;
	if (res->rules_blob != NULL &&
	    rules_entry_decode(res->rules_blob, res->rules_len, &e) == 0) {
		max = e.maxsize;
		rules_entry_free(&e);
	}
	return max;
}

/* The recipient's limit: its entry's maxsize=, its account's own maxsize,
 * max_message_size. */
static uint64_t recipient_limit(struct decide_ctx *ctx, const struct db_resolution *res,
    const struct user_policy *up, char *what, size_t whatlen)
{
	uint64_t limit = 0;
	char desc[300];

	snprintf(what, whatlen, "no limit");
	lower_limit(&limit, what, whatlen, ctx->cfg->max_message_size, "max_message_size");
	snprintf(desc, sizeof(desc), "maxsize= of the rules entry %s",
	    res->rules_key ? res->rules_key : "");
	lower_limit(&limit, what, whatlen, entry_maxsize(res), desc);
	if (up != NULL) {
		snprintf(desc, sizeof(desc), "maxsize in %s's own policy", res->account);
		lower_limit(&limit, what, whatlen, user_policy_maxsize(up), desc);
	}
	return limit;
}

static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at != NULL ? at + 1 : "";
}

/* 1 the recipient is ours (res filled), 0 not ours or trouble (d says). */
static int our_recipient(struct decide_ctx *ctx, const char *rcpt,
    struct db_resolution *res, struct decision *d, int *known)
{
	char err[512] = "";

	memset(res, 0, sizeof(*res));
	if (*rcpt == '\0') {
		why(d, "DUNNO: no recipient in the request");
		return 0;
	}
	if (ctx->db == NULL) {
		temporary(d, "the databases cannot be read", "see the log");
		return 0;
	}
	int k = db_domain_known(ctx->db, domain_of(rcpt), err, sizeof(err));
	if (k < 0) {
		temporary(d, "the databases cannot be read", err);
		return 0;
	}
	if (k == 0) {
		d->figure = FPA_DUNNO_UNKNOWN_DOMAIN;
		why(d, "DUNNO: the databases know no address in the domain of <%s>", rcpt);
		return 0;
	}
	k = db_resolve(ctx->db, rcpt, ctx->cfg->recipient_delimiter, res, err, sizeof(err));
	if (k < 0) {
		db_resolution_free(res);
		temporary(d, "the databases cannot be read", err);
		return 0;
	}
	*known = k;
	return 1;
}

/* The account's own policy, or NULL; -1 on trouble (d says). */
static int account_policy(struct decide_ctx *ctx, const struct db_resolution *res,
    struct user_policy **up, struct decision *d)
{
	char err[512] = "";

	*up = NULL;
	if (ctx->get_policy == NULL || res->account == NULL)
		return 0;
	int k = ctx->get_policy(ctx->policy_arg, res->account, up, err, sizeof(err));
	if (k < 0) {
		temporary(d, "the users' policies cannot be read", err);
		return -1;
	}
	return k;
}

/* recipient_count, or TX_COUNT_UNKNOWN when Postfix did not send it. */
static uint64_t recipient_count(const struct policy_request *req)
{
	if (*policy_request_get(req, PA_RECIPIENT_COUNT) == '\0')
		return TX_COUNT_UNKNOWN;
	return policy_request_number(req, PA_RECIPIENT_COUNT);
}

static void remember(struct decide_ctx *ctx, struct decision *d, time_t now)
{
	if (!d->remember || ctx->txs == NULL || strcmp(d->action, "DUNNO") != 0)
		return;
	tx_memory_add(ctx->txs, d->instance, d->count, d->rcpt, d->limit, d->limit_why, now);
}

static enum decide_step decide_rcpt(struct decide_ctx *ctx, const struct policy_request *req,
    time_t now, struct decision *d)
{
	const char *rcpt = policy_request_get(req, PA_RECIPIENT);
	const char *sender = policy_request_get(req, PA_SENDER);
	uint64_t size = policy_request_number(req, PA_SIZE);
	struct db_resolution res;
	struct user_policy *up = NULL;
	int known = 0;
	char limit_why[300];
	const char *text;

	if (!our_recipient(ctx, rcpt, &res, d, &known))
		return DECIDE_DONE;
	if (!known) {
		if (address_is_postmaster(rcpt)) {
			why(d, "DUNNO: <%s> is always accepted (RFC 5321 4.5.1)", rcpt);
		} else {
			answer(d, FPA_UNKNOWN_RECIPIENT, "550 5.1.1 User unknown");
			why(d, "<%s>: no key in rules or uid matches it", rcpt);
		}
		goto done;
	}
	buf_printf(&d->why, "<%s>: rules key %s, uid key %s, account %s\n", rcpt,
	    res.rules_key ? res.rules_key : "(none)", res.uid_key ? res.uid_key : "(none)",
	    res.account ? res.account : "(none)");
	if (account_policy(ctx, &res, &up, d) < 0)
		goto done;
	uint64_t limit = recipient_limit(ctx, &res, up, limit_why, sizeof(limit_why));
	if (limit != 0 && size > limit) {
		answer(d, FPA_TOO_LARGE, "552 5.3.4 Message too big for recipient");
		why(d, "size %llu is over %llu, the %s",
		    (unsigned long long)size, (unsigned long long)limit, limit_why);
		goto done;
	}
	char members_why[512];
	if (decide_members_only(ctx, &res, sender, &text, members_why, sizeof(members_why))) {
		answer(d, FPA_NOT_MEMBER, "550 5.7.1 <%s>: %s", res.list_key, text);
		why(d, "%s", members_why);
		goto done;
	}
	if (members_why[0] != '\0')
		buf_printf(&d->why, "%s\n", members_why);
	/* remembered for END-OF-MESSAGE if the answer stays DUNNO */
	d->remember = 1;
	d->instance = xstrdup(policy_request_get(req, PA_INSTANCE));
	d->count = recipient_count(req);
	d->rcpt = xstrdup(res.address);
	d->limit = limit;
	d->limit_why = xstrdup(limit_why);
	if (up == NULL) {
		why(d, "DUNNO: %s has no policy of its own",
		    res.account ? res.account : "the recipient");
		goto done;
	}
	struct user_policy_match m;
	user_policy_evaluate(up, sender, policy_request_get(req, PA_CLIENT_ADDRESS),
	    policy_request_get(req, PA_HELO_NAME), &m);
	if (m.action == UPA_ALLOW) {
		d->figure = FPA_USER_ALLOW;
		why(d, "DUNNO: allowed by %s's own policy, line %d: allow %s", res.account,
		    m.line, m.rule ? m.rule : "");
		goto done;
	}
	if (m.action == UPA_BLOCK) {
		answer(d, FPA_USER_BLOCK, "550 5.7.1 %s", m.text ? m.text : DEFAULT_BLOCK_TEXT);
		why(d, "blocked by %s's own policy, line %d: block %s", res.account, m.line,
		    m.rule ? m.rule : "");
		goto done;
	}
	if (user_policy_greylist(up)) {
		d->gl_client = xstrdup(policy_request_get(req, PA_CLIENT_ADDRESS));
		d->gl_sender = xstrdup(sender);
		d->gl_recipient = xstrdup(res.address);
		why(d, "%s's own policy: greylist on", res.account);
		user_policy_free(up);
		db_resolution_free(&res);
		return DECIDE_GREYLIST;
	}
	why(d, "DUNNO: nothing in %s's own policy applies", res.account);
done:
	if (up != NULL)
		user_policy_free(up);
	db_resolution_free(&res);
	remember(ctx, d, now);
	return DECIDE_DONE;
}

void decide_greylisted(struct decide_ctx *ctx, struct decision *d, enum decide_grey verdict,
    long retry_in, int auto_allowed, time_t now)
{
	switch (verdict) {
	case DECIDE_GREY_DEFER:
		answer(d, FPA_GREYLIST, "450 4.7.1 Greylisted, retry in %ld seconds",
		    retry_in > 0 ? retry_in : 1);
		why(d, "greylisted: client %s, sender <%s>, recipient <%s> first seen less than "
		    "greylist_delay ago (or longer than greylist_max_age)", d->gl_client,
		    d->gl_sender, d->gl_recipient);
		break;
	case DECIDE_GREY_PASS:
		why(d, "DUNNO: %s", auto_allowed ? "the client's network passed greylisting "
		    "often enough (auto-allowed)" : "the triplet passed greylisting");
		break;
	default:
		temporary(d, "greylisting", "its state is unavailable");
		break;
	}
	remember(ctx, d, now);
}

static enum decide_step decide_end_of_message(struct decide_ctx *ctx,
    const struct policy_request *req, time_t now, struct decision *d)
{
	const char *instance = policy_request_get(req, PA_INSTANCE);
	uint64_t size = policy_request_number(req, PA_SIZE);
	uint64_t count = recipient_count(req);
	int found = 0;

	if (ctx->txs != NULL) {
		const struct tx_rcpt *over = tx_memory_over(ctx->txs, instance, count, size, now,
		    &found);
		if (over != NULL) {
			answer(d, FPA_TOO_LARGE, "552 5.3.4 Message too big for recipient");
			why(d, "size %llu is over %llu for <%s>, the %s", (unsigned long long)size,
			    (unsigned long long)over->limit, over->address, over->limit_why);
		}
		if (found) {
			if (over == NULL)
				why(d, "DUNNO: size %llu is within the limits of the transaction's "
				    "recipients", (unsigned long long)size);
			tx_memory_forget(ctx->txs, instance);
			return DECIDE_DONE;
		}
	}
	/* a transaction not seen at RCPT: the one recipient Postfix names */
	const char *rcpt = policy_request_get(req, PA_RECIPIENT);
	struct db_resolution res;
	struct user_policy *up = NULL;
	char limit_why[300];
	int known = 0;

	if (!our_recipient(ctx, rcpt, &res, d, &known))
		return DECIDE_DONE;
	if (known && account_policy(ctx, &res, &up, d) >= 0) {
		uint64_t limit = recipient_limit(ctx, &res, up, limit_why, sizeof(limit_why));
		if (limit != 0 && size > limit) {
			answer(d, FPA_TOO_LARGE, "552 5.3.4 Message too big for recipient");
			why(d, "size %llu is over %llu for <%s>, the %s", (unsigned long long)size,
			    (unsigned long long)limit, rcpt, limit_why);
		} else {
			why(d, "DUNNO: size %llu is within <%s>'s limit", (unsigned long long)size,
			    rcpt);
		}
	} else if (!known) {
		why(d, "DUNNO: <%s> is not known (refused at RCPT)", rcpt);
	}
	if (up != NULL)
		user_policy_free(up);
	db_resolution_free(&res);
	return DECIDE_DONE;
}

enum decide_step decide(struct decide_ctx *ctx, const struct policy_request *req,
    time_t now, struct decision *d)
{
	const char *state = policy_request_get(req, PA_PROTOCOL_STATE);

	if (strcasecmp(state, "RCPT") == 0)
		return decide_rcpt(ctx, req, now, d);
	if (strcasecmp(state, "END-OF-MESSAGE") == 0)
		return decide_end_of_message(ctx, req, now, d);
	why(d, "DUNNO: nothing is checked at %s", *state ? state : "an unnamed state");
	return DECIDE_DONE;
}
