/*
 * receiver_figures.h - the figures the receiver owns (see metrics.h):
 * SMTP and LMTP sessions, messages accepted, rejections.  Rendered by
 * expose_receiver.c.
 */
#ifndef MP_RECEIVER_FIGURES_H
#define MP_RECEIVER_FIGURES_H

#include "metrics/metrics.h"

/* {protocol} */
enum fig_protocol { FP_SMTP, FP_LMTP, FP_COUNT };

/* mailprocd_rejections_total{reason,code}: each reason has one enhanced
 * code (fig_rejection_code in expose_receiver.c); a 4xx or 5xx reply the
 * receiver gives counts once, under the reason that made it. */
enum fig_rejection {
	FR_UNKNOWN_RECIPIENT,
	FR_MESSAGE_TOO_LARGE,
	FR_NOT_LIST_MEMBER,
	FR_TOO_MANY_RECIPIENTS,
	FR_SYNTAX,
	FR_BAD_SEQUENCE,
	FR_BAD_ADDRESS,
	FR_TOO_MANY_SESSIONS,
	FR_TOO_MANY_FROM_CLIENT,
	FR_TIMEOUT,
	FR_LOOKUP_FAILED,
	FR_QUEUE_ERROR,
	FR_SHUTTING_DOWN,
	FR_COUNT                /* the helper may add reasons before FR_COUNT */
};

struct metrics_receiver {
	struct metrics_region_header hdr;
	int64_t sessions[FP_COUNT];             /* mailprocd_sessions{protocol} */
	uint64_t sessions_total[FP_COUNT];      /* mailprocd_sessions_total{protocol} */
	uint64_t messages[FP_COUNT];            /* mailprocd_messages_received_total{protocol} */
	uint64_t bytes[FP_COUNT];               /* mailprocd_received_bytes_total{protocol} */
	uint64_t recipients[FP_COUNT];          /* mailprocd_recipients_accepted_total{protocol} */
	uint64_t rejections[FR_COUNT];
};

#endif
