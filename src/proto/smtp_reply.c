/*
 * smtp_reply.c - one SMTP reply line, safe to send whatever the text holds.
 */
#include "proto/smtp_reply.h"
#include "lib/log.h"

#include <stdio.h>
#include <string.h>

static int enh_valid(const char *enh)
{
	/* class "." subject "." detail: [245].1*3DIGIT.1*3DIGIT */
	const char *p = enh;
	if (*p != '2' && *p != '4' && *p != '5')
		return 0;
	p++;
	for (int part = 0; part < 2; part++) {
		if (*p++ != '.')
			return 0;
		int digits = 0;
		while (*p >= '0' && *p <= '9' && digits < 4) {
			p++;
			digits++;
		}
		if (digits < 1 || digits > 3)
			return 0;
	}
	return *p == '\0';
}

size_t smtp_reply_line(char *out, int code, int more, const char *enh,
    const char *text)
{
	if (code < 200 || code > 599)
		panic("smtp_reply_line: bad code %d", code);
	if (enh != NULL && (!enh_valid(enh) || enh[0] != '0' + code / 100))
		panic("smtp_reply_line: bad enhanced code %s for %d", enh, code);

	int n = snprintf(out, SMTP_REPLY_MAX, "%03d%c%s%s", code, more ? '-' : ' ',
	    enh ? enh : "", enh && *text ? " " : "");
	size_t len = (size_t)n;
	for (const unsigned char *t = (const unsigned char *)text;
	    *t && len < SMTP_REPLY_MAX - 3; t++)
		out[len++] = (*t >= 0x20 && *t < 0x7f) ? (char)*t : '?';
	memcpy(out + len, "\r\n", 3);
	return len + 2;
}
