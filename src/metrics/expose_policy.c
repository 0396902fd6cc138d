/*
 * expose_policy.c - the policy service's figures (policy_figures.h) as
 * exposition text: answers by action and reason, bad requests.  Its
 * sessions are rendered with the receiver's by expose.c.
 */
#include "metrics/expose.h"
#include "metrics/policy_figures.h"
#include "metrics/prom_text.h"

/* The answer's kind: DUNNO, or a reply code's class (5xx reject, 4xx
 * defer), as Postfix acts on it. */
const char *const fig_policy_action[FPA_COUNT] = {
	[FPA_DUNNO_UNKNOWN_DOMAIN] = "dunno",
	[FPA_DUNNO] = "dunno",
	[FPA_UNKNOWN_RECIPIENT] = "reject",
	[FPA_TOO_LARGE] = "reject",
	[FPA_NOT_MEMBER] = "reject",
	[FPA_USER_BLOCK] = "reject",
	[FPA_GREYLIST] = "defer",
	[FPA_USER_ALLOW] = "dunno",
	[FPA_TEMPORARY] = "dunno",
};

/* Why (the rejections share the receiver's reason names). */
const char *const fig_policy_reason[FPA_COUNT] = {
	[FPA_DUNNO_UNKNOWN_DOMAIN] = "unknown_domain",
	[FPA_DUNNO] = "none",
	[FPA_UNKNOWN_RECIPIENT] = "unknown_recipient",
	[FPA_TOO_LARGE] = "message_too_large",
	[FPA_NOT_MEMBER] = "not_list_member",
	[FPA_USER_BLOCK] = "user_block",
	[FPA_GREYLIST] = "greylist",
	[FPA_USER_ALLOW] = "user_allow",
	[FPA_TEMPORARY] = "temporary_failure",
};

void expose_policy(struct buf *out, const struct metrics_policy *p, uint64_t now_usec)
{
	prom_family(out, "mailprocd_policy_answers_total", "counter",
	    "Answers the policy service gave, by action (dunno, reject for 5xx, defer "
	    "for 4xx) and reason.");
	for (int i = 0; i < FPA_COUNT; i++)
		prom_sample_u64(out, "mailprocd_policy_answers_total", (const char *[]){
		    "action", fig_policy_action[i], "reason", fig_policy_reason[i], NULL },
		    metrics_read(&p->answers[i]));
	prom_family(out, "mailprocd_policy_bad_requests_total", "counter",
	    "Policy requests that could not be parsed (each closes its connection).");
	prom_sample_u64(out, "mailprocd_policy_bad_requests_total", NULL,
	    metrics_read(&p->bad_requests));
}
