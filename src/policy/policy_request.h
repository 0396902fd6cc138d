/*
 * policy_request.h - Postfix policy delegation requests (SMTPD_POLICY_README):
 * `name=value` lines ended by LF, a request ended by an empty line.
 *
 * The parser is incremental: bytes are fed as they arrive, in any chunks,
 * and it says when a request is complete.  It is strict, because whatever
 * it cannot read closes the connection: at most POLICY_MAX_ATTRS
 * attributes, a line at most POLICY_LINE_MAX bytes, no NUL or other
 * control byte but the LF that ends a line (and a CR just before it), a
 * line without '=' or with an empty name, a known attribute twice, or a
 * request that is not request=smtpd_access_policy.  Unknown names are
 * counted and dropped.
 */
#ifndef MP_POLICY_REQUEST_H
#define MP_POLICY_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#define POLICY_MAX_ATTRS 100
#define POLICY_LINE_MAX 4096    /* bytes of a line, without CR LF */

/* The attributes the decisions, the logs and `policy check` use. */
enum policy_attr {
	PA_REQUEST,
	PA_PROTOCOL_STATE,
	PA_PROTOCOL_NAME,
	PA_HELO_NAME,
	PA_QUEUE_ID,
	PA_SENDER,
	PA_RECIPIENT,
	PA_RECIPIENT_COUNT,
	PA_CLIENT_ADDRESS,
	PA_CLIENT_NAME,
	PA_REVERSE_CLIENT_NAME,
	PA_INSTANCE,
	PA_SIZE,
	PA_ETRN_DOMAIN,
	PA_SASL_USERNAME,
	PA_COUNT
};

struct policy_request {
	char *attr[PA_COUNT];   /* malloc'd values; NULL when absent */
	int nattrs;             /* lines, known or not */
};

/* A value, "" when the attribute was not sent. */
const char *policy_request_get(const struct policy_request *r, enum policy_attr a);
const char *policy_attr_name(enum policy_attr a);
/* A decimal attribute (size, recipient_count): its value, or 0 when
 * absent or not a number. */
uint64_t policy_request_number(const struct policy_request *r, enum policy_attr a);
void policy_request_free(struct policy_request *r);

struct policy_parser {
	struct policy_request req;      /* the request being read */
	char line[POLICY_LINE_MAX + 2]; /* the line being read (and a CR) */
	size_t linelen;
	const char *error;              /* after POLICY_PARSE_ERROR: why */
};

enum policy_parse_status {
	POLICY_PARSE_MORE,      /* every byte used, no request complete yet */
	POLICY_PARSE_DONE,      /* a request is complete: policy_parser_take */
	POLICY_PARSE_ERROR,     /* a protocol error (p->error); close */
};

void policy_parser_init(struct policy_parser *p);
/* Read from data until a request is complete, all of it is used, or an
 * error; *used says how many bytes were consumed. */
enum policy_parse_status policy_parser_feed(struct policy_parser *p,
    const char *data, size_t len, size_t *used);
/* After POLICY_PARSE_DONE: move the request to *out (the caller frees it
 * with policy_request_free); the parser starts the next one. */
void policy_parser_take(struct policy_parser *p, struct policy_request *out);
/* Whether a request is partly read (bytes since the last complete one). */
int policy_parser_pending(const struct policy_parser *p);
void policy_parser_free(struct policy_parser *p);

#endif
