/*
 * ctl_util.c - output helpers shared by the mailprocctl commands.
 */
#include "ctl/ctl.h"

#include <stdarg.h>
#include <stdio.h>

void ctl_error(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fputs("mailprocctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void ctl_format_age(int64_t s, char *out, size_t outlen)
{
	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(out, outlen, "%llds", (long long)s);
	else if (s < 3600)
		snprintf(out, outlen, "%lldm", (long long)(s / 60));
	else if (s < 86400)
		snprintf(out, outlen, "%lldh%lldm", (long long)(s / 3600),
		    (long long)(s % 3600 / 60));
	else
		snprintf(out, outlen, "%lldd%lldh", (long long)(s / 86400),
		    (long long)(s % 86400 / 3600));
}

void ctl_print_quoted(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			printf("\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			printf("\\x%02x", *p);
		else
			putchar(*p);
	}
	putchar('"');
}
