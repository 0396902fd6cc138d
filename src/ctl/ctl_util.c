/*
 * ctl_util.c - output helpers shared by the mailprocctl commands.
 */
#include "ctl/ctl.h"
#include "conf/config.h"
#include "lib/buf.h"
#include "lib/privsep.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

char *ctl_read_message(const char *cmd, uint64_t max, size_t *len)
{
	struct buf b = BUF_INIT;
	char chunk[65536];
	size_t n;

	while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
		buf_append(&b, chunk, n);
		if (b.len > max + max / 8 + 1024) {     /* CRLF may shrink it a little */
			buf_free(&b);
			ctl_error("%s: the message is larger than max_message_size", cmd);
			return NULL;
		}
	}
	if (ferror(stdin)) {
		buf_free(&b);
		ctl_error("%s: reading the message: %s", cmd, strerror(errno));
		return NULL;
	}
	size_t o = 0;
	for (size_t i = 0; i < b.len; i++)
		if (!(b.data[i] == '\r' && i + 1 < b.len && b.data[i + 1] == '\n'))
			b.data[o++] = b.data[i];
	if (o > max) {
		buf_free(&b);
		ctl_error("%s: the message is larger than max_message_size", cmd);
		return NULL;
	}
	b.len = o;
	buf_putc(&b, '\0');
	*len = o;
	return b.data;
}

int ctl_become_daemon_user(const struct config *cfg, const char *what)
{
	uid_t uid;
	gid_t gid;
	char err[512];

	if (geteuid() != 0 || cfg->user == NULL)
		return 0;
	if (privsep_lookup_user(cfg->user, &uid, &gid, NULL, NULL) < 0) {
		ctl_error("%s: unknown user \"%s\"", what, cfg->user);
		return -1;
	}
	if (privsep_become(uid, gid, cfg->user, err, sizeof(err)) < 0) {
		ctl_error("%s: %s", what, err);
		return -1;
	}
	return 0;
}
