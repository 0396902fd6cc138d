/*
 * receiver_figures.h - the figures the receiver owns (see metrics.h):
 * SMTP and LMTP sessions, messages accepted, rejections.  Rendered by
 * expose_receiver.c.  Messages, bytes and recipients count once a message
 * is durable in the queue (its 250), even when the client left before the
 * reply; bytes are the queue file's message bytes (size= in the log).
 */
#ifndef MP_RECEIVER_FIGURES_H
#define MP_RECEIVER_FIGURES_H

#include "metrics/metrics.h"

/* {protocol} */
enum fig_protocol { FP_SMTP, FP_LMTP, FP_COUNT };

/* mailprocd_rejections_total{reason,code}: each reason has one enhanced
 * code (fig_rejection_code in expose_receiver.c); a 4xx or 5xx reply the
 * receiver gives counts once, under the reason that made it (an LMTP
 * reply per recipient counts once per recipient).  The receiver takes
 * the enhanced code of every refusal from fig_rejection_code, so the
 * reply and the label cannot differ. */
enum fig_rejection {
	FR_UNKNOWN_RECIPIENT,           /* 550 5.1.1 at RCPT */
	FR_MESSAGE_TOO_LARGE,           /* 552 5.3.4: SIZE=, DATA, a recipient's maxsize= */
	FR_NOT_LIST_MEMBER,             /* 550 5.7.1 members-only list */
	FR_TOO_MANY_RECIPIENTS,         /* 452 4.5.3 over max_recipients */
	FR_SYNTAX,                      /* 501/555 5.5.4 arguments, parameters */
	FR_BAD_SEQUENCE,                /* 503 5.5.1 command out of order */
	FR_BAD_ADDRESS,                 /* 501 5.1.3 recipient address */
	FR_TOO_MANY_SESSIONS,           /* 421 4.3.2 at connect, max_sessions */
	FR_TOO_MANY_FROM_CLIENT,        /* 421 4.7.0 at connect, max_sessions_per_client */
	FR_TIMEOUT,                     /* 421 4.4.2 session_timeout */
	FR_LOOKUP_FAILED,               /* 451 4.3.0 databases unreadable */
	FR_QUEUE_ERROR,                 /* 451 4.3.0 queue file not written */
	FR_SHUTTING_DOWN,               /* 421 4.3.2 stop */
	FR_BAD_SENDER_ADDRESS,          /* 501 5.1.7 sender address */
	FR_UNKNOWN_COMMAND,             /* 500 5.5.2 not a command, or a NUL in it */
	FR_LINE_TOO_LONG,               /* 500 5.5.2 command line too long */
	FR_WRONG_PROTOCOL,              /* 500 5.5.1 HELO/EHLO in LMTP, LHLO in SMTP */
	FR_NO_VALID_RECIPIENTS,         /* 554 (LMTP 503) 5.5.1 DATA without a recipient */
	FR_QUEUE_FULL,                  /* 452 4.3.1 disk or quota full */
	FR_COUNT                        /* the helper may add reasons before FR_COUNT */
};

/* The label values of each reason (expose_receiver.c): its name
 * ("unknown_recipient") and its enhanced code ("5.1.1"). */
extern const char *const fig_rejection_name[FR_COUNT];
extern const char *const fig_rejection_code[FR_COUNT];

struct metrics_receiver {
	struct metrics_region_header hdr;
	int64_t sessions[FP_COUNT];             /* mailprocd_sessions{protocol} */
	uint64_t sessions_total[FP_COUNT];      /* mailprocd_sessions_started_total{protocol} */
	uint64_t messages[FP_COUNT];            /* mailprocd_messages_received_total{protocol} */
	uint64_t bytes[FP_COUNT];               /* mailprocd_received_bytes_total{protocol} */
	uint64_t recipients[FP_COUNT];          /* mailprocd_recipients_accepted_total{protocol}:
	                                         * of committed messages, the RCPTs accepted
	                                         * and not over their maxsize= */
	uint64_t rejections[FR_COUNT];
};

#endif
