/*
 * expose_receiver.c - the receiver's figures (receiver_figures.h) as
 * exposition text: messages, bytes and recipients accepted by protocol,
 * rejections by reason and enhanced code.  Also the label values of each
 * rejection reason, which the receiver's replies take their enhanced code
 * from.  The sessions families are expose.c's (they include the policy
 * service's sessions).
 */
#include "metrics/expose.h"
#include "metrics/prom_text.h"
#include "metrics/receiver_figures.h"

static const char *const protocol_names[FP_COUNT] = {
	[FP_SMTP] = "smtp",
	[FP_LMTP] = "lmtp",
};

const char *const fig_rejection_name[FR_COUNT] = {
	[FR_UNKNOWN_RECIPIENT] = "unknown_recipient",
	[FR_MESSAGE_TOO_LARGE] = "message_too_large",
	[FR_NOT_LIST_MEMBER] = "not_list_member",
	[FR_TOO_MANY_RECIPIENTS] = "too_many_recipients",
	[FR_SYNTAX] = "syntax",
	[FR_BAD_SEQUENCE] = "bad_sequence",
	[FR_BAD_ADDRESS] = "bad_address",
	[FR_TOO_MANY_SESSIONS] = "too_many_sessions",
	[FR_TOO_MANY_FROM_CLIENT] = "too_many_from_client",
	[FR_TIMEOUT] = "timeout",
	[FR_LOOKUP_FAILED] = "lookup_failed",
	[FR_QUEUE_ERROR] = "queue_error",
	[FR_SHUTTING_DOWN] = "shutting_down",
	[FR_BAD_SENDER_ADDRESS] = "bad_sender_address",
	[FR_UNKNOWN_COMMAND] = "unknown_command",
	[FR_LINE_TOO_LONG] = "line_too_long",
	[FR_WRONG_PROTOCOL] = "wrong_protocol",
	[FR_NO_VALID_RECIPIENTS] = "no_valid_recipients",
	[FR_QUEUE_FULL] = "queue_full",
};

const char *const fig_rejection_code[FR_COUNT] = {
	[FR_UNKNOWN_RECIPIENT] = "5.1.1",
	[FR_MESSAGE_TOO_LARGE] = "5.3.4",
	[FR_NOT_LIST_MEMBER] = "5.7.1",
	[FR_TOO_MANY_RECIPIENTS] = "4.5.3",
	[FR_SYNTAX] = "5.5.4",
	[FR_BAD_SEQUENCE] = "5.5.1",
	[FR_BAD_ADDRESS] = "5.1.3",
	[FR_TOO_MANY_SESSIONS] = "4.3.2",
	[FR_TOO_MANY_FROM_CLIENT] = "4.7.0",
	[FR_TIMEOUT] = "4.4.2",
	[FR_LOOKUP_FAILED] = "4.3.0",
	[FR_QUEUE_ERROR] = "4.3.0",
	[FR_SHUTTING_DOWN] = "4.3.2",
	[FR_BAD_SENDER_ADDRESS] = "5.1.7",
	[FR_UNKNOWN_COMMAND] = "5.5.2",
	[FR_LINE_TOO_LONG] = "5.5.2",
	[FR_WRONG_PROTOCOL] = "5.5.1",
	[FR_NO_VALID_RECIPIENTS] = "5.5.1",
	[FR_QUEUE_FULL] = "4.3.1",
};

static void per_protocol(struct buf *out, const char *name, const char *help,
    const uint64_t *values)
{
	prom_family(out, name, "counter", help);
	for (int p = 0; p < FP_COUNT; p++)
		prom_sample_u64(out, name, (const char *[]){ "protocol", protocol_names[p], NULL },
		    metrics_read(&values[p]));
}

void expose_receiver(struct buf *out, const struct metrics_receiver *r, uint64_t now_usec)
{
	per_protocol(out, "mailprocd_messages_received_total",
	    "Messages accepted: durable in the queue and acknowledged, by protocol.",
	    r->messages);
	per_protocol(out, "mailprocd_received_bytes_total",
	    "Bytes of the messages accepted (as stored, with the Received: header), "
	    "by protocol.", r->bytes);
	per_protocol(out, "mailprocd_recipients_accepted_total",
	    "Recipients of the messages accepted (RCPTs accepted and not over their "
	    "size limit), by protocol.", r->recipients);
	prom_family(out, "mailprocd_rejections_total", "counter",
	    "4xx and 5xx replies of the SMTP and LMTP receiver (an LMTP reply per "
	    "recipient counts once each), by reason and enhanced status code.");
	for (int i = 0; i < FR_COUNT; i++)
		prom_sample_u64(out, "mailprocd_rejections_total", (const char *[]){
		    "reason", fig_rejection_name[i], "code", fig_rejection_code[i], NULL },
		    metrics_read(&r->rejections[i]));
}
