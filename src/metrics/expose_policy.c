/*
 * expose_policy.c - the policy service's figures (policy_figures.h) as
 * exposition text: answers by action and reason, bad requests.  Its
 * sessions are rendered with the receiver's by expose.c.
 */
#include "metrics/expose.h"
#include "metrics/policy_figures.h"
#include "metrics/prom_text.h"

/* Each answer: the action (its first word, lower case) and why. */
static const struct {
	const char *action;
	const char *reason;
} answers[FPA_COUNT] = {
	[FPA_DUNNO_UNKNOWN_DOMAIN] = { "dunno", "unknown_domain" },
	[FPA_DUNNO] = { "dunno", "none" },
	[FPA_UNKNOWN_RECIPIENT] = { "reject", "unknown_recipient" },
	[FPA_TOO_LARGE] = { "reject", "message_too_large" },
	[FPA_NOT_MEMBER] = { "reject", "not_list_member" },
	[FPA_USER_BLOCK] = { "reject", "user_block" },
	[FPA_GREYLIST] = { "defer_if_permit", "greylist" },
};

void expose_policy(struct buf *out, const struct metrics_policy *p, uint64_t now_usec)
{
	prom_family(out, "mailprocd_policy_answers_total", "counter",
	    "Answers of the policy service, by action and reason.");
	for (int i = 0; i < FPA_COUNT; i++)
		prom_sample_u64(out, "mailprocd_policy_answers_total", (const char *[]){
		    "action", answers[i].action, "reason", answers[i].reason, NULL },
		    metrics_read(&p->answers[i]));
	prom_family(out, "mailprocd_policy_bad_requests_total", "counter",
	    "Policy requests that could not be parsed.");
	prom_sample_u64(out, "mailprocd_policy_bad_requests_total", NULL,
	    metrics_read(&p->bad_requests));
}
