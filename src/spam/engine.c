/*
 * engine.c - the spam engine's C interface (spam.h) over the Perl code of
 * engine.pl: argument checks, calls through perl_embed, verdicts.
 */
#include "spam/spam.h"
#include "spam/perl_embed.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* engine.pl as a C string, generated at build time by embed_pl.py. */
extern const char spam_engine_pl[];
extern const size_t spam_engine_pl_len;

#define PL_NAME "spam/engine.pl"

static int loaded;

static unsigned long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long)ts.tv_sec * 1000 + (unsigned long)ts.tv_nsec / 1000000;
}

static int need_loaded(char *err, size_t errlen)
{
	if (loaded)
		return 0;
	snprintf(err, errlen, "SpamAssassin is not loaded");
	return -1;
}

int spam_engine_loaded(void)
{
	return loaded;
}

/* A site config directory, checked here for a clear message (and before
 * Perl spends a second loading SpamAssassin). */
static int check_dir(const char *dir, char *err, size_t errlen)
{
	struct stat st;

	if (stat(dir, &st) < 0) {
		snprintf(err, errlen, "site config directory %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "site config directory %s: not a directory", dir);
		return -1;
	}
	return 0;
}

int spam_engine_load(const struct spam_settings *s, char *err, size_t errlen)
{
	struct pl_results r;
	char timeout[32];

	if (loaded || pl_started()) {
		snprintf(err, errlen, "SpamAssassin is loaded already");
		return -1;
	}
	if (s == NULL) {
		snprintf(err, errlen, "no settings");
		return -1;
	}
	if (s->site_config_dir != NULL && check_dir(s->site_config_dir, err, errlen) < 0)
		return -1;
	if (pl_start(spam_engine_pl, spam_engine_pl_len, PL_NAME, err, errlen) < 0)
		return -1;
	snprintf(timeout, sizeof(timeout), "%u", s->timeout_s);
	struct pl_arg args[] = {
		{ s->network_tests ? "1" : "0", 1 },
		{ timeout, strlen(timeout) },
		{ s->site_config_dir, s->site_config_dir ? strlen(s->site_config_dir) : 0 },
	};
	if (pl_call("Mailprocd::Spam::load", args, 3, &r, err, errlen) < 0) {
		pl_stop(0);
		return -1;
	}
	pl_results_free(&r);
	loaded = 1;
	return 0;
}

int spam_engine_user(const char *user, const char *home, char *err, size_t errlen)
{
	struct pl_results r;

	if (need_loaded(err, errlen) < 0)
		return -1;
	if (user == NULL || user[0] == '\0' || home == NULL || home[0] != '/') {
		snprintf(err, errlen, "spam_engine_user: need a user name and an absolute home");
		return -1;
	}
	struct pl_arg args[] = { { user, strlen(user) }, { home, strlen(home) } };
	if (pl_call("Mailprocd::Spam::user", args, 2, &r, err, errlen) < 0)
		return -1;
	pl_results_free(&r);
	return 0;
}

/* "A,B,C" into dst, cut after the last name that fits whole. */
static void copy_tests(char *dst, size_t dstlen, const char *src)
{
	size_t len = strlen(src);

	if (len >= dstlen) {
		len = dstlen - 1;
		while (len > 0 && src[len] != ',')
			len--;
	}
	memcpy(dst, src, len);
	dst[len] = '\0';
}

static int parse_number(const char *s, double *out)
{
	static locale_t c_locale;
	char *end;

	if (s == NULL)
		return -1;
	if (c_locale == (locale_t)0)
		c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
	if (c_locale == (locale_t)0)
		return -1;
	*out = strtod_l(s, &end, c_locale);
	return end != s && *end == '\0' ? 0 : -1;
}

int spam_engine_check(const char *msg, size_t len, struct spam_verdict *v, char *err, size_t errlen)
{
	struct pl_results r;

	if (v != NULL)
		memset(v, 0, sizeof(*v));       /* spam_verdict_free is safe on it */
	if (v == NULL || (msg == NULL && len > 0)) {
		snprintf(err, errlen, "spam_engine_check: no message or no verdict");
		return -1;
	}
	if (need_loaded(err, errlen) < 0)
		return -1;
	unsigned long t0 = now_ms();
	struct timespec c0, c1;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
	struct pl_arg arg = { msg ? msg : "", len };
	if (pl_call("Mailprocd::Spam::check", &arg, 1, &r, err, errlen) < 0)
		return -1;
	if (r.n != 7 || r.v[0] == NULL || parse_number(r.v[1], &v->score) < 0 ||
	    parse_number(r.v[2], &v->required) < 0) {
		snprintf(err, errlen, "SpamAssassin check returned an unexpected result");
		pl_results_free(&r);
		return -1;
	}
	v->is_spam = strcmp(r.v[0], "1") == 0;
	copy_tests(v->tests, sizeof(v->tests), r.v[3] ? r.v[3] : "");
	v->headers = r.v[4] ? r.v[4] : xstrdup("");
	r.v[4] = NULL;
	v->timed_out = r.v[5] != NULL && strcmp(r.v[5], "1") == 0;
	v->autolearned = r.v[6] != NULL && strcmp(r.v[6], "1") == 0;
	pl_results_free(&r);
	v->ms = (unsigned)(now_ms() - t0);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
	v->cpu_ms = (unsigned)((c1.tv_sec - c0.tv_sec) * 1000 + (c1.tv_nsec - c0.tv_nsec) / 1000000);
	return 0;
}

void spam_verdict_free(struct spam_verdict *v)
{
	if (v == NULL)
		return;
	free(v->headers);
	v->headers = NULL;
}

int spam_engine_learn(const char *msg, size_t len, int is_spam, char *err, size_t errlen)
{
	struct pl_results r;

	if (msg == NULL && len > 0) {
		snprintf(err, errlen, "spam_engine_learn: no message");
		return -1;
	}
	if (need_loaded(err, errlen) < 0)
		return -1;
	struct pl_arg args[] = { { msg ? msg : "", len }, { is_spam ? "1" : "0", 1 } };
	if (pl_call("Mailprocd::Spam::learn", args, 2, &r, err, errlen) < 0)
		return -1;
	pl_results_free(&r);
	return 0;
}

int spam_engine_sync(char *err, size_t errlen)
{
	struct pl_results r;

	if (need_loaded(err, errlen) < 0)
		return -1;
	if (pl_call("Mailprocd::Spam::sync", NULL, 0, &r, err, errlen) < 0)
		return -1;
	pl_results_free(&r);
	return 0;
}

void spam_engine_shutdown(void)
{
	struct pl_results r;
	char err[256];

	if (!pl_started())
		return;
	if (loaded) {
		if (pl_call("Mailprocd::Spam::finish", NULL, 0, &r, err, sizeof(err)) == 0)
			pl_results_free(&r);
		else
			log_warn("spam: finishing SpamAssassin: %s", err);
	}
	loaded = 0;
	pl_stop(1);
}
