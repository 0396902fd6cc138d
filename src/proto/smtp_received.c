/*
 * smtp_received.c - the Received: header and the RFC 5322 date.
 */
#include "proto/smtp_received.h"

#include <stdio.h>
#include <stdlib.h>

void rfc5322_date(char out[40], time_t t)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL && gmtime_r(&t, &tm) == NULL) {
		snprintf(out, 40, "Thu, 1 Jan 1970 00:00:00 +0000");
		return;
	}
	long off = tm.tm_gmtoff / 60;
	char sign = off < 0 ? '-' : '+';
	off = labs(off);
	snprintf(out, 40, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld",
	    days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
	    sign, (off / 60) % 100, off % 60);
}

void smtp_received_format(struct buf *b, const struct smtp_received *r)
{
	char date[40];

	rfc5322_date(date, r->when);
	buf_printf(b, "Received: from %s (%s)\n", r->helo, r->client);
	buf_printf(b, "\tby %s (mailprocd) with %s id %s", r->hostname,
	    r->protocol, r->qid);
	if (r->rcpt != NULL)
		buf_printf(b, "\n\tfor <%s>; %s\n", r->rcpt, date);
	else
		buf_printf(b, ";\n\t%s\n", date);
}
