/*
 * expose_receiver.c - the receiver's figures (receiver_figures.h) as
 * exposition text: messages, bytes and recipients accepted by protocol,
 * rejections by reason and enhanced code.  The sessions families are
 * expose.c's (they include the policy service's sessions).
 */
#include "metrics/expose.h"
#include "metrics/prom_text.h"
#include "metrics/receiver_figures.h"

static const char *const protocol_names[FP_COUNT] = { "smtp", "lmtp" };

/* Each reason: its label and the enhanced status code of its reply. */
static const struct {
	const char *reason;
	const char *code;
} rejections[FR_COUNT] = {
	[FR_UNKNOWN_RECIPIENT] = { "unknown_recipient", "5.1.1" },
	[FR_MESSAGE_TOO_LARGE] = { "message_too_large", "5.3.4" },
	[FR_NOT_LIST_MEMBER] = { "not_list_member", "5.7.1" },
	[FR_TOO_MANY_RECIPIENTS] = { "too_many_recipients", "4.5.3" },
	[FR_SYNTAX] = { "syntax", "5.5.2" },
	[FR_BAD_SEQUENCE] = { "bad_sequence", "5.5.1" },
	[FR_BAD_ADDRESS] = { "bad_address", "5.1.3" },
	[FR_TOO_MANY_SESSIONS] = { "too_many_sessions", "4.3.2" },
	[FR_TOO_MANY_FROM_CLIENT] = { "too_many_from_client", "4.7.0" },
	[FR_TIMEOUT] = { "timeout", "4.4.2" },
	[FR_LOOKUP_FAILED] = { "lookup_failed", "4.3.0" },
	[FR_QUEUE_ERROR] = { "queue_error", "4.3.0" },
	[FR_SHUTTING_DOWN] = { "shutting_down", "4.3.2" },
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
	    "Messages accepted (queued), by protocol.", r->messages);
	per_protocol(out, "mailprocd_received_bytes_total",
	    "Bytes of the messages accepted, by protocol.", r->bytes);
	per_protocol(out, "mailprocd_recipients_accepted_total",
	    "Recipients accepted, by protocol.", r->recipients);
	prom_family(out, "mailprocd_rejections_total", "counter",
	    "Replies 4xx and 5xx the receiver gave, by reason and enhanced status code.");
	for (int i = 0; i < FR_COUNT; i++)
		prom_sample_u64(out, "mailprocd_rejections_total", (const char *[]){
		    "reason", rejections[i].reason, "code", rejections[i].code, NULL },
		    metrics_read(&r->rejections[i]));
}
