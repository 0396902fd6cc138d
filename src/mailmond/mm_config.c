/*
 * mm_config.c - the strict mailmond.conf parser (see mm_config.h).
 *
 * A line is split into words; a word may be written in double quotes (with
 * \" and \\ inside) to hold blanks, and `#` outside a word starts a
 * comment.  Each key has a handler; every problem is reported as
 * `file:line: message` and parsing goes on so that one run shows them all.
 */
#include "mailmond/mm_config.h"
#include "lib/fsutil.h"
#include "lib/xalloc.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_WORDS 16
#define MAX_LINE 4096
#define MAX_FILE (1024 * 1024)
#define TEN_YEARS_USEC (10ULL * 365 * 86400 * 1000000)

struct parse_ctx {
	struct mm_config *c;
	const char *file;
	int line;
	int errors;
	void (*report)(const char *msg);
	unsigned char seen[16];
};

static void perr(struct parse_ctx *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void perr(struct parse_ctx *p, const char *fmt, ...)
{
	char msg[1024], line[1400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (p->line > 0)
		snprintf(line, sizeof(line), "%s:%d: %s", p->file, p->line, msg);
	else
		snprintf(line, sizeof(line), "%s: %s", p->file, msg);
	p->report(line);
	p->errors++;
}

void mm_config_defaults(struct mm_config *c)
{
	memset(c, 0, sizeof(*c));
	c->interval_usec = 60ULL * 1000000;
	c->late_after_usec = 300ULL * 1000000;
	c->lost_after_usec = 3600ULL * 1000000;
	c->timeout_usec = 30ULL * 1000000;
	c->alert_timeout_usec = 60ULL * 1000000;
}

int mm_parse_duration(const char *s, uint64_t *usec)
{
	uint64_t whole = 0, frac = 0, frac_scale = 1;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		whole = whole * 10 + (uint64_t)(*p - '0');
		if (whole > 10ULL * 365 * 86400 * 1000)
			return -1;
	}
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -1;
		for (; isdigit((unsigned char)*p); p++) {
			if (frac_scale < 1000000) {       /* microseconds at most */
				frac = frac * 10 + (uint64_t)(*p - '0');
				frac_scale *= 10;
			}
		}
	}
	uint64_t unit;  /* microseconds */
	if (*p == '\0' || strcmp(p, "s") == 0)
		unit = 1000000;
	else if (strcmp(p, "ms") == 0)
		unit = 1000;
	else if (strcmp(p, "m") == 0)
		unit = 60ULL * 1000000;
	else if (strcmp(p, "h") == 0)
		unit = 3600ULL * 1000000;
	else if (strcmp(p, "d") == 0)
		unit = 86400ULL * 1000000;
	else
		return -1;
	/* whole <= 3.65e12 and unit <= 8.64e10 could overflow: check first */
	if (whole > TEN_YEARS_USEC / unit)
		return -1;
	uint64_t v = whole * unit + frac * unit / frac_scale;
	if (v > TEN_YEARS_USEC)
		return -1;
	*usec = v;
	return 0;
}

int mm_probe_name_ok(const char *name, size_t len)
{
	if (len == 0 || len > MM_PROBE_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (!isalnum(ch) && ch != '_' && ch != '-' && ch != '.')
			return 0;
	}
	return 1;
}

/* An address as it goes into MAIL FROM/RCPT TO and a header: local@domain
 * of printable characters without blanks, brackets or quotes. */
static int address_ok(const char *a)
{
	const char *at = strrchr(a, '@');
	if (at == NULL || at == a || at[1] == '\0' || strlen(a) > 254)
		return 0;
	for (const char *s = a; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch <= ' ' || ch >= 0x7f || ch == '<' || ch == '>' || ch == '"' || ch == '\\' ||
		    ch == ',' || ch == ';')
			return 0;
	}
	return 1;
}

/* A host name for EHLO: letters, digits, '-', '.'. */
static int helo_ok(const char *h)
{
	if (*h == '\0' || strlen(h) > 255)
		return 0;
	for (; *h; h++) {
		if (!isalnum((unsigned char)*h) && *h != '-' && *h != '.')
			return 0;
	}
	return 1;
}

static void set_string(char **field, const char *v)
{
	free(*field);
	*field = xstrdup(v);
}

/* ---- handlers ---- */

typedef void (*handler_fn)(struct parse_ctx *p, char **w, int n);

static int want_one(struct parse_ctx *p, char **w, int n)
{
	if (n != 2) {
		perr(p, "%s takes 1 value", w[0]);
		return 0;
	}
	return 1;
}

/* probe NAME TARGET to ADDRESS maildir DIR */
static void h_probe(struct parse_ctx *p, char **w, int n)
{
	struct mm_config *c = p->c;
	struct mm_probe_conf pr = { 0 };
	char err[400];

	if (n != 7 || strcmp(w[3], "to") != 0 || strcmp(w[5], "maildir") != 0) {
		perr(p, "probe takes NAME TARGET to ADDRESS maildir DIR");
		return;
	}
	if (!mm_probe_name_ok(w[1], strlen(w[1]))) {
		perr(p, "probe: bad name \"%s\" (letters, digits, '_', '-', '.'; at most %d)",
		    w[1], MM_PROBE_NAME_MAX);
		return;
	}
	for (int i = 0; i < c->nprobe; i++) {
		if (strcmp(c->probe[i].name, w[1]) == 0) {
			perr(p, "probe %s is defined twice (first on line %d)", w[1], c->probe[i].line);
			return;
		}
	}
	if (c->nprobe >= MM_MAX_PROBES) {
		perr(p, "probe: at most %d probes", MM_MAX_PROBES);
		return;
	}
	const char *target = w[2];
	if (strncmp(target, "smtp:", 5) == 0)
		pr.lmtp = 0;
	else if (strncmp(target, "lmtp:", 5) == 0)
		pr.lmtp = 1;
	else {
		perr(p, "probe %s: bad target \"%s\" (smtp:HOST:PORT, lmtp:HOST:PORT, "
		    "smtp:unix:/PATH or lmtp:unix:/PATH)", w[1], target);
		return;
	}
	/* lmtp_dest_parse reads the part after the protocol the same way */
	char *as_lmtp = xasprintf("lmtp:%s", target + 5);
	int r = lmtp_dest_parse(as_lmtp, &pr.dest, err, sizeof(err));
	free(as_lmtp);
	if (r < 0) {
		perr(p, "probe %s: bad target \"%s\" (smtp:HOST:PORT, lmtp:HOST:PORT, "
		    "smtp:unix:/PATH or lmtp:unix:/PATH)", w[1], target);
		return;
	}
	if (!address_ok(w[4])) {
		perr(p, "probe %s: bad address \"%s\" (local@domain)", w[1], w[4]);
		return;
	}
	if (w[6][0] != '/') {
		perr(p, "probe %s: maildir must be an absolute path: \"%s\"", w[1], w[6]);
		return;
	}
	pr.name = xstrdup(w[1]);
	pr.target = xstrdup(target);
	pr.to = xstrdup(w[4]);
	size_t len = strlen(w[6]);
	while (len > 1 && w[6][len - 1] == '/')
		len--;
	pr.maildir = xstrndup(w[6], len);
	pr.line = p->line;
	c->probe[c->nprobe++] = pr;
}

static void h_duration(struct parse_ctx *p, char **w, int n, uint64_t *field)
{
	uint64_t v;
	if (!want_one(p, w, n))
		return;
	if (mm_parse_duration(w[1], &v) < 0 || v == 0)
		perr(p, "%s: bad duration \"%s\" (a positive number with ms, s, m, h or d)",
		    w[0], w[1]);
	else
		*field = v;
}

static void h_interval(struct parse_ctx *p, char **w, int n)
{
	h_duration(p, w, n, &p->c->interval_usec);
}

static void h_late_after(struct parse_ctx *p, char **w, int n)
{
	h_duration(p, w, n, &p->c->late_after_usec);
}

static void h_lost_after(struct parse_ctx *p, char **w, int n)
{
	h_duration(p, w, n, &p->c->lost_after_usec);
}

static void h_timeout(struct parse_ctx *p, char **w, int n)
{
	h_duration(p, w, n, &p->c->timeout_usec);
}

/* listen metrics HOST:PORT | [IPV6]:PORT */
static void h_listen(struct parse_ctx *p, char **w, int n)
{
	struct mm_config *c = p->c;
	struct lmtp_dest d;
	char err[400];

	if (n != 3 || strcmp(w[1], "metrics") != 0) {
		perr(p, "listen takes `metrics` and an address HOST:PORT");
		return;
	}
	char *as_lmtp = xasprintf("lmtp:%s", w[2]);
	int r = strncmp(w[2], "unix:", 5) == 0 ? -1 : lmtp_dest_parse(as_lmtp, &d, err, sizeof(err));
	free(as_lmtp);
	if (r < 0) {
		perr(p, "listen metrics: bad address \"%s\" (HOST:PORT or [IPV6]:PORT)", w[2]);
		return;
	}
	if (c->nlisten >= MM_MAX_LISTEN) {
		perr(p, "listen: at most %d listeners", MM_MAX_LISTEN);
		return;
	}
	c->listen[c->nlisten].host = xstrdup(d.host);
	c->listen[c->nlisten].port = xstrdup(d.port);
	c->listen[c->nlisten].line = p->line;
	c->nlisten++;
}

static void h_alert_command(struct parse_ctx *p, char **w, int n)
{
	if (!want_one(p, w, n))
		return;
	if (w[1][0] == '\0') {
		perr(p, "alert_command is empty");
		return;
	}
	set_string(&p->c->alert_command, w[1]);
}

static void h_alert_timeout(struct parse_ctx *p, char **w, int n)
{
	h_duration(p, w, n, &p->c->alert_timeout_usec);
}

static void h_from(struct parse_ctx *p, char **w, int n)
{
	if (!want_one(p, w, n))
		return;
	if (!address_ok(w[1])) {
		perr(p, "from: bad address \"%s\" (local@domain)", w[1]);
		return;
	}
	set_string(&p->c->from, w[1]);
}

static void h_helo(struct parse_ctx *p, char **w, int n)
{
	if (!want_one(p, w, n))
		return;
	if (!helo_ok(w[1])) {
		perr(p, "helo: bad host name \"%s\"", w[1]);
		return;
	}
	set_string(&p->c->helo, w[1]);
}

static void h_user(struct parse_ctx *p, char **w, int n)
{
	if (!want_one(p, w, n))
		return;
	set_string(&p->c->user, w[1]);
	p->c->user_line = p->line;
}

static const struct {
	const char *name;
	handler_fn fn;
	int repeatable;
} keys[] = {
	{ "probe", h_probe, 1 },
	{ "interval", h_interval, 0 },
	{ "late_after", h_late_after, 0 },
	{ "lost_after", h_lost_after, 0 },
	{ "timeout", h_timeout, 0 },
	{ "listen", h_listen, 1 },
	{ "alert_command", h_alert_command, 0 },
	{ "alert_timeout", h_alert_timeout, 0 },
	{ "from", h_from, 0 },
	{ "helo", h_helo, 0 },
	{ "user", h_user, 0 },
};

_Static_assert(sizeof(keys) / sizeof(keys[0]) <= 16, "seen[] too small");

/* Split a line into words in place.  Returns the number of words, or -1
 * with *why set. */
static int split_words(char *s, char **w, const char **why)
{
	int n = 0;
	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0' || *s == '#')
			return n;
		if (n == MAX_WORDS) {
			*why = "too many words on one line";
			return -1;
		}
		if (*s == '"') {
			char *out = ++s;
			w[n++] = out;
			for (;;) {
				if (*s == '\0') {
					*why = "unterminated quoted string";
					return -1;
				}
				if (*s == '"')
					break;
				if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
					s++;
				*out++ = *s++;
			}
			s++;
			if (*s != '\0' && *s != ' ' && *s != '\t') {
				*why = "a quoted string must be followed by a blank";
				return -1;
			}
			*out = '\0';
			if (*s)
				s++;
			continue;
		}
		w[n++] = s;
		while (*s && *s != ' ' && *s != '\t')
			s++;
		if (*s)
			*s++ = '\0';
	}
}

static void parse_line(struct parse_ctx *p, char *line)
{
	char *w[MAX_WORDS];
	const char *why = NULL;
	int n = split_words(line, w, &why);

	if (n < 0) {
		perr(p, "%s", why);
		return;
	}
	if (n == 0)
		return;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (strcmp(keys[i].name, w[0]) != 0)
			continue;
		if (p->seen[i] && !keys[i].repeatable) {
			perr(p, "%s is set twice", w[0]);
			return;
		}
		p->seen[i] = 1;
		keys[i].fn(p, w, n);
		return;
	}
	perr(p, "unknown setting \"%s\"", w[0]);
}

static void check_whole(struct parse_ctx *p)
{
	struct mm_config *c = p->c;
	p->line = 0;
	if (c->nprobe == 0)
		perr(p, "no probe: nothing to watch");
	if (c->late_after_usec >= c->lost_after_usec)
		perr(p, "lost_after must be longer than late_after");
	if (c->from == NULL || c->helo == NULL) {
		char host[256] = "localhost";
		if (gethostname(host, sizeof(host) - 1) < 0 || !helo_ok(host))
			strcpy(host, "localhost");
		if (c->helo == NULL)
			c->helo = xstrdup(host);
		if (c->from == NULL)
			c->from = xasprintf("mailmond@%s", host);
	}
}

static void default_report(const char *msg)
{
	fprintf(stderr, "%s\n", msg);
}

int mm_config_parse_text(struct mm_config *c, const char *path, const char *text,
    void (*report)(const char *msg))
{
	struct parse_ctx p = { .c = c, .file = path, .report = report ? report : default_report };
	const char *s = text;

	c->path = path;
	while (*s) {
		const char *end = strchr(s, '\n');
		size_t len = end ? (size_t)(end - s) : strlen(s);
		p.line++;
		if (len > MAX_LINE) {
			perr(&p, "line longer than %d bytes", MAX_LINE);
		} else {
			char line[MAX_LINE + 1];
			memcpy(line, s, len);
			line[len] = '\0';
			if (len > 0 && line[len - 1] == '\r')
				line[len - 1] = '\0';
			parse_line(&p, line);
		}
		if (end == NULL)
			break;
		s = end + 1;
	}
	check_whole(&p);
	return p.errors;
}

int mm_config_load(struct mm_config *c, const char *path, void (*report)(const char *msg))
{
	size_t len;
	char *text = read_file(path, MAX_FILE, &len);
	if (text == NULL) {
		char msg[1200];
		snprintf(msg, sizeof(msg), "%s: cannot read: %m", path);
		(report ? report : default_report)(msg);
		c->path = path;
		return 1;
	}
	int errors = 0;
	if (strlen(text) != len) {
		char msg[1200];
		snprintf(msg, sizeof(msg), "%s: contains a NUL byte", path);
		(report ? report : default_report)(msg);
		errors++;
	} else {
		errors = mm_config_parse_text(c, path, text, report);
	}
	free(text);
	return errors;
}

void mm_config_free(struct mm_config *c)
{
	for (int i = 0; i < c->nprobe; i++) {
		free(c->probe[i].name);
		free(c->probe[i].target);
		free(c->probe[i].to);
		free(c->probe[i].maildir);
	}
	for (int i = 0; i < c->nlisten; i++) {
		free(c->listen[i].host);
		free(c->listen[i].port);
	}
	free(c->alert_command);
	free(c->from);
	free(c->helo);
	free(c->user);
	memset(c, 0, sizeof(*c));
}
