/*
 * config.c - the strict mailprocd.conf parser.
 *
 * Each key has a handler in a table; a line is split into words (a `#`
 * starts a comment anywhere outside a word), the key is looked up, and the
 * handler checks its arguments.  Every problem is reported as
 * `file:line: message` and parsing goes on so that one run shows them all.
 */
#include "conf/config.h"
#include "lib/buf.h"
#include "lib/parse_util.h"
#include "lib/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_WORDS 40
#define MAX_LINE 4096

struct parse_ctx {
	struct config *c;
	const char *file;
	int line;
	int errors;
	void (*report)(const char *msg);
	unsigned char seen[64];
};

static void default_report(const char *msg)
{
	fprintf(stderr, "%s\n", msg);
}

static void perr(struct parse_ctx *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void perr(struct parse_ctx *p, const char *fmt, ...)
{
	char msg[1024], line[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(line, sizeof(line), "%s:%d: %s", p->file, p->line, msg);
	p->report(line);
	p->errors++;
}

void config_defaults(struct config *c)
{
	static const uint64_t retries[] = { 60, 300, 900, 3600, 14400 };

	memset(c, 0, sizeof(*c));
	c->hostname = NULL;     /* filled from gethostname() by config_load */
	c->user = NULL;
	c->queue_dir = xstrdup("/var/spool/mailprocd");
	c->db_dir = xstrdup("/var/lib/mailprocd/db");
	c->db_source_dir = xstrdup("/etc/mailprocd");
	c->run_dir = xstrdup("/run/mailprocd");
	c->max_message_size = 50ULL * 1024 * 1024;
	c->max_sessions = 1000;
	c->max_sessions_per_client = 50;
	c->max_recipients = 1000;
	c->session_timeout = 300;
	c->default_delivery = xstrdup("maildir ~/Maildir/");
	c->workers_per_user = 1;
	c->worker_batch_size = WORKER_BATCH_DEFAULT;
	c->worker_idle_timeout = 300;
	c->delivery_nice = 10;
	c->relay_host = xstrdup("127.0.0.1:10025");
	c->nretry = (int)(sizeof(retries) / sizeof(retries[0]));
	memcpy(c->retry_schedule, retries, sizeof(retries));
	c->max_queue_lifetime = 5 * 86400;
	c->recipient_delimiter = '+';
	c->max_workers = 200;
	c->minimum_uid = 100;
	c->max_active_messages = 20000;
	c->pipe_timeout = 600;
	c->delay_warning_time = 4 * 3600;
	c->spam_engine = 0;
	c->spam_network_tests = 0;
	c->spam_max_size = 512 * 1024;
	c->body_match_limit = 1024 * 1024;
	c->spam_timeout = 60;
	c->spam_max_checks = 1000;
	c->spam_learn_sync = 60;
	c->spam_concurrency = 0;
	c->mail_spool_group = xstrdup("mail");
	c->mbox_lock_timeout = 30;
	c->stop_grace_time = 30;
	c->queue_scan_interval = 60;
	c->relay_idle_timeout = 30;
	c->state_dir = NULL;    /* db_dir/state, filled by config_load */
	c->policy_sync_interval = 60;
	c->greylist_delay = 300;
	c->greylist_max_age = 2 * 86400;
	c->greylist_auto_allow = 5;
	c->redis_host = NULL;
	c->redis_port = NULL;
	c->members_source = MEMBERS_NONE;
	c->members_sync_interval = 300;
}

/* ---- value handlers ---- */

typedef void (*handler_fn)(struct parse_ctx *p, char **w, int n, void *field);

static int want_args(struct parse_ctx *p, const char *key, int n, int min, int max)
{
	if (n < min || n > max) {
		if (min == max)
			perr(p, "%s takes %d value%s", key, min, min == 1 ? "" : "s");
		else
			perr(p, "%s takes %d to %d values", key, min, max);
		return 0;
	}
	return 1;
}

static void set_string(char **field, const char *v)
{
	free(*field);
	*field = xstrdup(v);
}

static void h_path(struct parse_ctx *p, char **w, int n, void *field)
{
	if (!want_args(p, w[0], n - 1, 1, 1))
		return;
	if (w[1][0] != '/') {
		perr(p, "%s must be an absolute path: \"%s\"", w[0], w[1]);
		return;
	}
	set_string(field, w[1]);
}

static void h_size(struct parse_ctx *p, char **w, int n, void *field)
{
	uint64_t v;
	if (!want_args(p, w[0], n - 1, 1, 1))
		return;
	if (parse_size(w[1], &v) < 0)
		perr(p, "%s: bad size \"%s\" (use a number with K, M or G)", w[0], w[1]);
	else
		*(uint64_t *)field = v;
}

static void h_duration(struct parse_ctx *p, char **w, int n, void *field)
{
	uint64_t v;
	if (!want_args(p, w[0], n - 1, 1, 1))
		return;
	if (parse_duration(w[1], &v) < 0 || v > 10ULL * 365 * 86400)
		perr(p, "%s: bad duration \"%s\" (use a number with s, m, h, d or w)", w[0], w[1]);
	else
		*(uint64_t *)field = v;
}

static void h_count(struct parse_ctx *p, char **w, int n, void *field)
{
	uint64_t v;
	if (!want_args(p, w[0], n - 1, 1, 1))
		return;
	if (parse_uint(w[1], 1000000000, &v) < 0 || v == 0)
		perr(p, "%s: bad number \"%s\" (a positive integer)", w[0], w[1]);
	else
		*(uint64_t *)field = v;
}

/* worker_batch_size: 1 to WORKER_BATCH_MAX. */
static void h_batch_size(struct parse_ctx *p, char **w, int n, void *field)
{
	uint64_t v;
	if (!want_args(p, w[0], n - 1, 1, 1))
		return;
	if (parse_uint(w[1], WORKER_BATCH_MAX, &v) < 0 || v == 0)
		perr(p, "%s: bad number \"%s\" (1 to %d)", w[0], w[1], WORKER_BATCH_MAX);
	else
		*(uint64_t *)field = v;
}

/* delivery_nice: a nice(2) increment, 0 to 19. */
static void h_nice(struct parse_ctx *p, char **w, int n, void *field)
{
	uint64_t v;
	if (!want_args(p, w[0], n - 1, 1, 1))
		return;
	if (parse_uint(w[1], 19, &v) < 0)
		perr(p, "%s: bad number \"%s\" (0 to 19)", w[0], w[1]);
	else
		*(int *)field = (int)v;
}

/* A count where 0 means "no limit". */
static void h_limit(struct parse_ctx *p, char **w, int n, void *field)
{
	uint64_t v;
	if (!want_args(p, w[0], n - 1, 1, 1))
		return;
	if (parse_uint(w[1], 1000000000, &v) < 0)
		perr(p, "%s: bad number \"%s\" (a non-negative integer, 0 = no limit)", w[0], w[1]);
	else
		*(uint64_t *)field = v;
}

/* A uid: 1 and up (uid 0 is refused anyway). */
static void h_minimum_uid(struct parse_ctx *p, char **w, int n, void *field)
{
	uint64_t v;
	if (!want_args(p, w[0], n - 1, 1, 1))
		return;
	if (parse_uint(w[1], 4294967294ULL, &v) < 0 || v == 0)
		perr(p, "%s: bad uid \"%s\" (1 to 4294967294)", w[0], w[1]);
	else
		*(uint64_t *)field = v;
}

static void h_bool(struct parse_ctx *p, char **w, int n, void *field)
{
	if (!want_args(p, w[0], n - 1, 1, 1))
		return;
	if (strcmp(w[1], "yes") == 0)
		*(int *)field = 1;
	else if (strcmp(w[1], "no") == 0)
		*(int *)field = 0;
	else
		perr(p, "%s: expected yes or no, not \"%s\"", w[0], w[1]);
}

static void h_hostname(struct parse_ctx *p, char **w, int n, void *field)
{
	if (!want_args(p, w[0], n - 1, 1, 1))
		return;
	for (const char *s = w[1]; *s; s++) {
		if (!isalnum((unsigned char)*s) && *s != '.' && *s != '-' && *s != '_') {
			perr(p, "hostname: bad character in \"%s\"", w[1]);
			return;
		}
	}
	set_string(field, w[1]);
}

static void h_user(struct parse_ctx *p, char **w, int n, void *field)
{
	if (!want_args(p, w[0], n - 1, 1, 1))
		return;
	for (const char *s = w[1]; *s; s++) {
		if (!isalnum((unsigned char)*s) && !strchr("._-", *s)) {
			perr(p, "user: bad account name \"%s\"", w[1]);
			return;
		}
	}
	set_string(field, w[1]);
}

/* mail_spool_group NAME|NUMBER|none (whether it exists is seen at start) */
static void h_spool_group(struct parse_ctx *p, char **w, int n, void *field)
{
	if (!want_args(p, w[0], n - 1, 1, 1))
		return;
	if (strcmp(w[1], "none") == 0) {
		free(*(char **)field);
		*(char **)field = NULL;
		return;
	}
	for (const char *s = w[1]; *s; s++) {
		if (!isalnum((unsigned char)*s) && !strchr("._-", *s)) {
			perr(p, "%s: bad group name \"%s\"", w[0], w[1]);
			return;
		}
	}
	if (strcmp(w[1], "0") == 0 || strcmp(w[1], "root") == 0) {
		perr(p, "%s: not the root group", w[0]);
		return;
	}
	set_string(field, w[1]);
}

/* A duration from 1s to 1h: mbox_lock_timeout (a worker waits that long
 * per mbox), queue_scan_interval, relay_idle_timeout. */
static void h_duration_1s_1h(struct parse_ctx *p, char **w, int n, void *field)
{
	uint64_t old = *(uint64_t *)field;
	h_duration(p, w, n, field);
	if (*(uint64_t *)field == 0 || *(uint64_t *)field > 3600) {
		perr(p, "%s: between 1s and 1h, not \"%s\"", w[0], w[1]);
		*(uint64_t *)field = old;
	}
}

static void h_delimiter(struct parse_ctx *p, char **w, int n, void *field)
{
	if (!want_args(p, w[0], n - 1, 0, 1))
		return;
	if (n == 1 || strcmp(w[1], "none") == 0) {
		*(char *)field = '\0';
		return;
	}
	if (strlen(w[1]) != 1 || w[1][0] == '@' || !isgraph((unsigned char)w[1][0])) {
		perr(p, "recipient_delimiter: one character other than @, not \"%s\"", w[1]);
		return;
	}
	*(char *)field = w[1][0];
}

static void h_retry(struct parse_ctx *p, char **w, int n, void *field)
{
	struct config *c = p->c;
	if (n < 2 || n - 1 > CONFIG_MAX_RETRIES) {
		perr(p, "retry_schedule takes 1 to %d durations", CONFIG_MAX_RETRIES);
		return;
	}
	for (int i = 1; i < n; i++) {
		uint64_t v;
		if (parse_duration(w[i], &v) < 0 || v == 0) {
			perr(p, "retry_schedule: bad duration \"%s\"", w[i]);
			return;
		}
		c->retry_schedule[i - 1] = v;
	}
	c->nretry = n - 1;
}

static void h_spam_engine(struct parse_ctx *p, char **w, int n, void *field)
{
	if (!want_args(p, w[0], n - 1, 1, 1))
		return;
	if (strcmp(w[1], "none") == 0)
		p->c->spam_engine = 0;
	else if (strcmp(w[1], "spamassassin") == 0)
		p->c->spam_engine = 1;
	else
		perr(p, "spam_engine: expected spamassassin or none, not \"%s\"", w[1]);
}

static void h_spam_concurrency(struct parse_ctx *p, char **w, int n, void *field)
{
	if (!want_args(p, w[0], n - 1, 1, 1))
		return;
	if (strcmp(w[1], "auto") == 0)
		p->c->spam_concurrency = 0;
	else
		h_count(p, w, n, field);
}

static void h_default_delivery(struct parse_ctx *p, char **w, int n, void *field)
{
	struct buf b = BUF_INIT;
	if (n < 2) {
		perr(p, "default_delivery needs an instruction, e.g. \"maildir ~/Maildir/\"");
		return;
	}
	/* The instruction itself is checked by the rules parser at start-up
	 * (mailprocd -n); here we only keep its words. */
	for (int i = 1; i < n; i++) {
		if (i > 1)
			buf_putc(&b, ' ');
		buf_puts(&b, w[i]);
	}
	free(p->c->default_delivery);
	p->c->default_delivery = buf_steal(&b);
}

static void h_relay(struct parse_ctx *p, char **w, int n, void *field)
{
	if (!want_args(p, w[0], n - 1, 1, 1))
		return;
	const char *colon = strrchr(w[1], ':');
	uint64_t port;
	if (colon == NULL || colon == w[1] || parse_uint(colon + 1, 65535, &port) < 0 || port == 0) {
		perr(p, "relay_host: expected HOST:PORT, not \"%s\"", w[1]);
		return;
	}
	set_string(field, w[1]);
}

/* policy_state lmdb | redis:HOST:PORT (HOST may be [IPv6]) */
static void h_policy_state(struct parse_ctx *p, char **w, int n, void *field)
{
	struct config *c = p->c;
	if (!want_args(p, w[0], n - 1, 1, 1))
		return;
	free(c->redis_host);
	free(c->redis_port);
	c->redis_host = c->redis_port = NULL;
	if (strcmp(w[1], "lmdb") == 0)
		return;
	if (strncmp(w[1], "redis:", 6) == 0) {
		const char *hp = w[1] + 6;
		const char *colon = strrchr(hp, ':');
		uint64_t port;
		if (colon != NULL && colon > hp && parse_uint(colon + 1, 65535, &port) == 0 && port > 0) {
			size_t hl = (size_t)(colon - hp);
			if (hp[0] == '[' && hl > 2 && hp[hl - 1] == ']') {
				hp++;
				hl -= 2;
			}
			c->redis_host = xstrndup(hp, hl);
			c->redis_port = xstrdup(colon + 1);
			return;
		}
	}
	perr(p, "policy_state: expected lmdb or redis:HOST:PORT, not \"%s\"", w[1]);
}

/* members_source file | mailman3 URL USER:PASSWORD */
static void h_members_source(struct parse_ctx *p, char **w, int n, void *field)
{
	struct config *c = p->c;
	if (n == 2 && strcmp(w[1], "file") == 0) {
		c->members_source = MEMBERS_FILE;
		return;
	}
	if (n == 4 && strcmp(w[1], "mailman3") == 0) {
		if (strncmp(w[2], "http://", 7) != 0 && strncmp(w[2], "https://", 8) != 0) {
			perr(p, "members_source: the URL must start with http:// or https://, not \"%s\"",
			    w[2]);
			return;
		}
		const char *colon = strchr(w[3], ':');
		if (colon == NULL || colon == w[3]) {
			perr(p, "members_source: expected USER:PASSWORD after the URL");
			return;
		}
		c->members_source = MEMBERS_MAILMAN3;
		set_string(&c->members_url, w[2]);
		set_string(&c->members_credentials, w[3]);
		return;
	}
	perr(p, "members_source: expected \"file\" or \"mailman3 URL USER:PASSWORD\"");
}

/* The owner= of a unix listener: an account that must exist now, so a
 * typo is a file:line error and not a failed start. */
static int listen_owner(struct parse_ctx *p, struct listen_spec *l, const char *name)
{
	struct passwd *pw;

	errno = 0;
	pw = getpwnam(name);
	if (pw == NULL) {
		perr(p, "listen: owner=%s: unknown user%s%s", name, errno ? ": " : "",
		    errno ? strerror(errno) : "");
		return -1;
	}
	free(l->owner);
	l->owner = xstrdup(name);
	l->owner_uid = pw->pw_uid;
	return 0;
}

/* listen PROTO ADDRESS [mode=0660] [group=NAME] [owner=NAME] */
static void h_listen(struct parse_ctx *p, char **w, int n, void *field)
{
	struct config *c = p->c;
	struct listen_spec l = { 0 };

	if (n < 3) {
		perr(p, "listen takes a protocol (smtp, lmtp, policy, metrics) and an address");
		return;
	}
	if (strcmp(w[1], "smtp") == 0)
		l.proto = LISTEN_SMTP;
	else if (strcmp(w[1], "lmtp") == 0)
		l.proto = LISTEN_LMTP;
	else if (strcmp(w[1], "policy") == 0)
		l.proto = LISTEN_POLICY;
	else if (strcmp(w[1], "metrics") == 0)
		l.proto = LISTEN_METRICS;
	else {
		perr(p, "listen: unknown protocol \"%s\" (smtp, lmtp, policy or metrics)", w[1]);
		return;
	}
	if (c->nlisten >= CONFIG_MAX_LISTEN) {
		perr(p, "listen: at most %d listeners", CONFIG_MAX_LISTEN);
		return;
	}
	l.mode = 0666;
	l.line = p->line;
	if (strncmp(w[2], "unix:", 5) == 0) {
		l.is_unix = 1;
		if (w[2][5] != '/' || strlen(w[2] + 5) >= 108) {
			perr(p, "listen: unix socket path must be absolute and under 108 bytes: \"%s\"", w[2]);
			return;
		}
		l.path = xstrdup(w[2] + 5);
	} else {
		const char *addr = w[2];
		const char *colon;
		size_t hostlen;
		if (addr[0] == '[') {
			const char *close = strchr(addr, ']');
			if (close == NULL || close[1] != ':') {
				perr(p, "listen: expected [IPV6]:PORT, not \"%s\"", addr);
				return;
			}
			colon = close + 1;
			addr++;
			hostlen = (size_t)(close - addr);
		} else {
			colon = strrchr(addr, ':');
			if (colon == NULL || strchr(addr, ':') != colon) {
				perr(p, "listen: expected HOST:PORT or unix:/PATH, not \"%s\"", w[2]);
				return;
			}
			hostlen = (size_t)(colon - addr);
		}
		uint64_t port;
		if (parse_uint(colon + 1, 65535, &port) < 0 || port == 0 || hostlen == 0) {
			perr(p, "listen: bad port or host in \"%s\"", w[2]);
			return;
		}
		l.host = xstrndup(addr, hostlen);
		l.port = xstrdup(colon + 1);
	}
	for (int i = 3; i < n; i++) {
		if (l.is_unix && strncmp(w[i], "mode=", 5) == 0) {
			char *end;
			errno = 0;
			unsigned long m = strtoul(w[i] + 5, &end, 8);
			if (errno || *end || end == w[i] + 5 || m > 0777) {
				perr(p, "listen: bad mode \"%s\" (octal, e.g. mode=0660)", w[i]);
				goto bad;
			}
			l.mode = (mode_t)m;
		} else if (l.is_unix && strncmp(w[i], "group=", 6) == 0 && w[i][6]) {
			free(l.group);
			l.group = xstrdup(w[i] + 6);
		} else if (l.is_unix && strncmp(w[i], "owner=", 6) == 0 && w[i][6]) {
			if (listen_owner(p, &l, w[i] + 6) < 0)
				goto bad;
		} else {
			perr(p, "listen: unknown option \"%s\"%s", w[i],
			    l.is_unix ? "" : " (mode=, group= and owner= are for unix sockets)");
			goto bad;
		}
	}
	c->listen[c->nlisten++] = l;
	return;
bad:
	free(l.host);
	free(l.port);
	free(l.path);
	free(l.group);
	free(l.owner);
}

#define F(member) offsetof(struct config, member)

static const struct key {
	const char *name;
	handler_fn fn;
	size_t offset;
	int repeatable;
} keys[] = {
	{ "hostname", h_hostname, F(hostname), 0 },
	{ "listen", h_listen, 0, 1 },
	{ "user", h_user, F(user), 0 },
	{ "queue_dir", h_path, F(queue_dir), 0 },
	{ "db_dir", h_path, F(db_dir), 0 },
	{ "db_source_dir", h_path, F(db_source_dir), 0 },
	{ "run_dir", h_path, F(run_dir), 0 },
	{ "home_base", h_path, F(home_base), 0 },
	{ "max_message_size", h_size, F(max_message_size), 0 },
	{ "max_sessions", h_count, F(max_sessions), 0 },
	{ "max_sessions_per_client", h_limit, F(max_sessions_per_client), 0 },
	{ "max_recipients", h_count, F(max_recipients), 0 },
	{ "session_timeout", h_duration, F(session_timeout), 0 },
	{ "default_delivery", h_default_delivery, 0, 0 },
	{ "workers_per_user", h_count, F(workers_per_user), 0 },
	{ "worker_batch_size", h_batch_size, F(worker_batch_size), 0 },
	{ "worker_idle_timeout", h_duration, F(worker_idle_timeout), 0 },
	{ "delivery_nice", h_nice, F(delivery_nice), 0 },
	{ "relay_host", h_relay, F(relay_host), 0 },
	{ "retry_schedule", h_retry, 0, 0 },
	{ "max_queue_lifetime", h_duration, F(max_queue_lifetime), 0 },
	{ "recipient_delimiter", h_delimiter, F(recipient_delimiter), 0 },
	{ "max_workers", h_count, F(max_workers), 0 },
	{ "minimum_uid", h_minimum_uid, F(minimum_uid), 0 },
	{ "max_active_messages", h_count, F(max_active_messages), 0 },
	{ "pipe_timeout", h_duration, F(pipe_timeout), 0 },
	{ "delay_warning_time", h_duration, F(delay_warning_time), 0 },
	{ "spam_engine", h_spam_engine, 0, 0 },
	{ "spam_network_tests", h_bool, F(spam_network_tests), 0 },
	{ "spam_max_size", h_size, F(spam_max_size), 0 },
	{ "body_match_limit", h_size, F(body_match_limit), 0 },
	{ "spam_timeout", h_duration, F(spam_timeout), 0 },
	{ "spam_max_checks", h_count, F(spam_max_checks), 0 },
	{ "spam_learn_sync", h_duration, F(spam_learn_sync), 0 },
	{ "spam_concurrency", h_spam_concurrency, F(spam_concurrency), 0 },
	{ "mail_spool_group", h_spool_group, F(mail_spool_group), 0 },
	{ "mbox_lock_timeout", h_duration_1s_1h, F(mbox_lock_timeout), 0 },
	{ "stop_grace_time", h_duration, F(stop_grace_time), 0 },
	{ "queue_scan_interval", h_duration_1s_1h, F(queue_scan_interval), 0 },
	{ "relay_idle_timeout", h_duration_1s_1h, F(relay_idle_timeout), 0 },
	{ "state_dir", h_path, F(state_dir), 0 },
	{ "policy_sync_interval", h_duration, F(policy_sync_interval), 0 },
	{ "greylist_delay", h_duration, F(greylist_delay), 0 },
	{ "greylist_max_age", h_duration, F(greylist_max_age), 0 },
	{ "greylist_auto_allow", h_limit, F(greylist_auto_allow), 0 },
	{ "policy_state", h_policy_state, 0, 0 },
	{ "members_source", h_members_source, 0, 0 },
	{ "members_sync_interval", h_duration, F(members_sync_interval), 0 },
};

_Static_assert(sizeof(keys) / sizeof(keys[0]) <= 64, "seen[] too small");
_Static_assert(sizeof(keys) / sizeof(keys[0]) <= sizeof(((struct config *)0)->set_line) /
    sizeof(int), "set_line[] too small");

int config_line(const struct config *c, const char *key)
{
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(keys[i].name, key) == 0)
			return c->set_line[i];
	return 0;
}

/* Split a line into words; `#` outside a word starts a comment.  Returns the
 * number of words or -1 when there are too many. */
static int split_words(char *s, char **w)
{
	int n = 0;
	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0' || *s == '#')
			return n;
		if (n == MAX_WORDS)
			return -1;
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
	int n = split_words(line, w);

	if (n == 0)
		return;
	if (n < 0) {
		perr(p, "too many words on one line");
		return;
	}
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (strcmp(keys[i].name, w[0]) != 0)
			continue;
		if (p->seen[i] && !keys[i].repeatable) {
			perr(p, "%s is set twice", w[0]);
			return;
		}
		p->seen[i] = 1;
		p->c->set_line[i] = p->line;
		keys[i].fn(p, w, n, (char *)p->c + keys[i].offset);
		return;
	}
	perr(p, "unknown setting \"%s\"", w[0]);
}

/* Errors about the file as a whole carry no line number. */
static void file_error(struct parse_ctx *p, const char *msg)
{
	char *m = xasprintf("%s: %s", p->file, msg);
	p->report(m);
	free(m);
	p->errors++;
}

static void check_whole(struct parse_ctx *p)
{
	struct config *c = p->c;
	if (c->nlisten == 0)
		file_error(p, "no listen setting: nothing to accept mail on");
	if (c->home_base != NULL && c->user != NULL) {
		int hl = config_line(c, "home_base"), ul = config_line(c, "user");
		p->line = hl > ul ? hl : ul;
		perr(p, "home_base (single-user mode, line %d) and user (root mode, line %d) "
		    "exclude each other", hl, ul);
	}
	if (c->greylist_max_age <= c->greylist_delay) {
		int al = config_line(c, "greylist_max_age"), dl = config_line(c, "greylist_delay");
		p->line = al > dl ? al : dl;    /* both default cannot happen */
		perr(p, "greylist_max_age must be longer than greylist_delay");
	}
}

/* Parse the lines of f (closed here) into p->c. */
static void parse_stream(struct parse_ctx *p, FILE *f)
{
	struct config *c = p->c;
	char line[MAX_LINE + 2];

	while (fgets(line, sizeof(line), f) != NULL) {
		p->line++;
		size_t len = strlen(line);
		if (len > 0 && line[len - 1] == '\n') {
			line[--len] = '\0';
		} else if (!feof(f)) {
			perr(p, "line longer than %d bytes", MAX_LINE);
			int ch;
			while ((ch = fgetc(f)) != EOF && ch != '\n')
				;
			continue;
		}
		if (memchr(line, '\0', len) != NULL || strlen(line) != len) {
			perr(p, "NUL byte in line");
			continue;
		}
		parse_line(p, line);
	}
	if (ferror(f)) {
		perr(p, "read error: %s", strerror(errno));
	}
	fclose(f);
	if (c->hostname == NULL) {
		char host[256];
		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		c->hostname = xstrdup(host);
	}
	if (c->state_dir == NULL && c->db_dir != NULL)
		c->state_dir = xasprintf("%s/state", c->db_dir);
	check_whole(p);
}

int config_load(struct config *c, const char *path, void (*report)(const char *msg))
{
	struct parse_ctx p = { .c = c, .file = path, .report = report ? report : default_report };
	FILE *f = fopen(path, "re");

	free(c->path);
	c->path = xstrdup(path);
	if (f == NULL) {
		char reason[300];
		snprintf(reason, sizeof(reason), "cannot open: %s", strerror(errno));
		file_error(&p, reason);
		return p.errors;
	}
	parse_stream(&p, f);
	return p.errors;
}

/* The whole text of fd, read with pread (the descriptor's offset may be
 * shared with other processes); NULL with errno set. */
static char *read_whole(int fd, size_t *len)
{
	struct buf b = BUF_INIT;
	char chunk[8192];
	off_t off = 0;

	for (;;) {
		ssize_t n = pread(fd, chunk, sizeof(chunk), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			buf_free(&b);
			errno = e;
			return NULL;
		}
		if (n == 0)
			break;
		if (b.len + (size_t)n > CONFIG_MAX_SIZE) {
			buf_free(&b);
			errno = EFBIG;
			return NULL;
		}
		buf_append(&b, chunk, (size_t)n);
		off += n;
	}
	*len = b.len;
	return buf_steal(&b);
}

int config_load_fd(struct config *c, int fd, const char *name, void (*report)(const char *msg))
{
	struct parse_ctx p = { .c = c, .file = name, .report = report ? report : default_report };
	size_t len = 0;
	char *text = read_whole(fd, &len);
	FILE *f = NULL;

	free(c->path);
	c->path = xstrdup(name);
	if (text != NULL)
		f = len > 0 ? fmemopen(text, len, "r") : fopen("/dev/null", "re");
	if (f == NULL) {
		char reason[300];
		snprintf(reason, sizeof(reason), "cannot read: %s", strerror(errno));
		file_error(&p, reason);
		free(text);
		return p.errors;
	}
	parse_stream(&p, f);
	free(text);
	return p.errors;
}

void config_free_listen(struct config *c)
{
	for (int i = 0; i < c->nlisten; i++) {
		free(c->listen[i].host);
		free(c->listen[i].port);
		free(c->listen[i].path);
		free(c->listen[i].group);
		free(c->listen[i].owner);
	}
	memset(c->listen, 0, sizeof(c->listen));
	c->nlisten = 0;
}

void config_free(struct config *c)
{
	config_free_listen(c);
	free(c->path);
	free(c->hostname);
	free(c->user);
	free(c->queue_dir);
	free(c->db_dir);
	free(c->db_source_dir);
	free(c->run_dir);
	free(c->home_base);
	free(c->default_delivery);
	free(c->relay_host);
	free(c->mail_spool_group);
	free(c->state_dir);
	free(c->redis_host);
	free(c->redis_port);
	free(c->members_url);
	free(c->members_credentials);
	memset(c, 0, sizeof(*c));
}
