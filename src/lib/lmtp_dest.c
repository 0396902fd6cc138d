/*
 * lmtp_dest.c - parsing `lmtp:HOST:PORT` and `lmtp:unix:/path` (see
 * lmtp_dest.h).
 */
#include "lib/lmtp_dest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE "expected lmtp:HOST:PORT or lmtp:unix:/absolute/path"

static int host_char_ok(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == ':' || ch == '_';
}

static int parse_unix(const char *path, struct lmtp_dest *out, char *err, size_t errlen)
{
	if (path[0] != '/') {
		snprintf(err, errlen, "unix socket path \"%s\" must be absolute", path);
		return -1;
	}
	if (strlen(path) >= sizeof(out->path)) {
		snprintf(err, errlen, "unix socket path too long (at most %zu bytes)",
		    sizeof(out->path) - 1);
		return -1;
	}
	out->is_unix = 1;
	strcpy(out->path, path);
	return 0;
}

static int parse_port(const char *port, struct lmtp_dest *out, char *err, size_t errlen)
{
	char *end;
	long n = *port >= '0' && *port <= '9' ? strtol(port, &end, 10) : -1;
	if (n < 1 || n > 65535 || *end != '\0') {
		snprintf(err, errlen, "bad port \"%s\" (1-65535)", port);
		return -1;
	}
	snprintf(out->port, sizeof(out->port), "%ld", n);
	return 0;
}

static int parse_inet(const char *rest, struct lmtp_dest *out, char *err, size_t errlen)
{
	const char *host = rest, *colon;
	size_t hostlen;
	if (*rest == '[') {
		const char *close = strchr(rest, ']');
		if (close == NULL || close[1] != ':') {
			snprintf(err, errlen, "bad address \"%s\" (%s)", rest, USAGE);
			return -1;
		}
		host = rest + 1;
		hostlen = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(rest, ':');
		if (colon == NULL) {
			snprintf(err, errlen, "no port in \"%s\" (%s)", rest, USAGE);
			return -1;
		}
		hostlen = (size_t)(colon - rest);
		if (memchr(rest, ':', hostlen) != NULL) {
			snprintf(err, errlen, "bad host in \"%s\" (write an IPv6 address as [ADDR])",
			    rest);
			return -1;
		}
	}
	if (hostlen == 0 || hostlen >= sizeof(out->host)) {
		snprintf(err, errlen, "bad host in \"%s\"", rest);
		return -1;
	}
	for (size_t i = 0; i < hostlen; i++) {
		if (!host_char_ok(host[i])) {
			snprintf(err, errlen, "bad host in \"%s\"", rest);
			return -1;
		}
	}
	memcpy(out->host, host, hostlen);
	out->host[hostlen] = '\0';
	return parse_port(colon + 1, out, err, errlen);
}

int lmtp_dest_parse(const char *text, struct lmtp_dest *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (strncmp(text, "lmtp:", 5) != 0) {
		snprintf(err, errlen, "bad destination \"%s\" (%s)", text, USAGE);
		return -1;
	}
	const char *rest = text + 5;
	int r = strncmp(rest, "unix:", 5) == 0 ? parse_unix(rest + 5, out, err, errlen)
	    : parse_inet(rest, out, err, errlen);
	if (r < 0) {
		char why[256];
		snprintf(why, sizeof(why), "%s", err);
		snprintf(err, errlen, "bad destination \"%s\": %s", text, why);
	}
	return r;
}
