/*
 * policy_figures.h - the figures the policy service owns (see metrics.h):
 * its sessions and its answers.  Rendered by expose_policy.c.
 */
#ifndef MP_POLICY_FIGURES_H
#define MP_POLICY_FIGURES_H

#include "metrics/metrics.h"

/* mailprocd_policy_answers_total{action,reason}: action is the answer's
 * kind in lower case (dunno; reject for a 5xx, defer for a 4xx), reason
 * why (fig_policy_action and fig_policy_reason in expose_policy.c).  Each
 * answer written to a client counts once; decide.c says which it is. */
enum fig_policy_answer {
	FPA_DUNNO_UNKNOWN_DOMAIN,       /* dunno: not a domain the databases know */
	FPA_DUNNO,                      /* dunno: nothing against it */
	FPA_UNKNOWN_RECIPIENT,          /* reject 5.1.1 */
	FPA_TOO_LARGE,                  /* reject 5.3.4 */
	FPA_NOT_MEMBER,                 /* reject 5.7.1 */
	FPA_USER_BLOCK,                 /* reject 5.7.1 */
	FPA_GREYLIST,                   /* defer 4.7.1 */
	FPA_USER_ALLOW,                 /* dunno: a user's allow */
	FPA_TEMPORARY,                  /* dunno: something cannot be read (logged) */
	FPA_COUNT                       /* the helper may add answers before FPA_COUNT */
};

/* The label values of each answer (expose_policy.c). */
extern const char *const fig_policy_action[FPA_COUNT];
extern const char *const fig_policy_reason[FPA_COUNT];

struct metrics_policy {
	struct metrics_region_header hdr;
	int64_t sessions;                       /* mailprocd_sessions{protocol="policy"} */
	uint64_t sessions_total;                /* mailprocd_sessions_started_total{protocol="policy"} */
	uint64_t answers[FPA_COUNT];
	uint64_t bad_requests;                  /* mailprocd_policy_bad_requests_total:
	                                         * requests that could not be parsed
	                                         * (the connection is closed) */
};

#endif
