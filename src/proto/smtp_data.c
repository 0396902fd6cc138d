/*
 * smtp_data.c - end-of-data detection, dot-unstuffing and CRLF -> LF
 * conversion for message data (see smtp_data.h for the rules).
 *
 * Security: this decides where a message ends.  It must agree with every
 * other strict implementation, so it accepts only CR LF . CR LF and treats
 * every other combination of CR, LF and dot as data.
 */
#include "proto/smtp_data.h"

void smtp_data_init(struct smtp_data *d)
{
	d->state = SMTP_DATA_BOL;
}

/* One byte in the middle of a line (or the first byte after a dropped
 * stuffing dot). */
static enum smtp_data_state text_byte(char c, char *out, size_t *o)
{
	if (c == '\r')
		return SMTP_DATA_CR;
	out[(*o)++] = c;
	return SMTP_DATA_TEXT;
}

size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t n,
    char *out, size_t *outlen, int *done)
{
	enum smtp_data_state st = d->state;
	size_t i = 0, o = 0;

	*done = 0;
	while (i < n && st != SMTP_DATA_END) {
		char c = in[i++];
		switch (st) {
		case SMTP_DATA_BOL:
			st = c == '.' ? SMTP_DATA_DOT : text_byte(c, out, &o);
			break;
		case SMTP_DATA_DOT:
			/* the dot is dropped: either the end or a stuffing dot */
			st = c == '\r' ? SMTP_DATA_DOT_CR : text_byte(c, out, &o);
			break;
		case SMTP_DATA_DOT_CR:
			if (c == '\n') {
				st = SMTP_DATA_END;
				break;
			}
			out[o++] = '\r';
			st = text_byte(c, out, &o);
			break;
		case SMTP_DATA_TEXT:
			st = text_byte(c, out, &o);
			break;
		case SMTP_DATA_CR:
			if (c == '\n') {
				out[o++] = '\n';
				st = SMTP_DATA_BOL;
			} else {
				out[o++] = '\r';
				st = text_byte(c, out, &o);
			}
			break;
		case SMTP_DATA_END:
			break;
		}
	}
	d->state = st;
	*outlen = o;
	*done = st == SMTP_DATA_END;
	return i;
}
