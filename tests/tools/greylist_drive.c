/*
 * greylist_drive.c - test driver for the greylisting state (greylist.h):
 * runs greylist_open on a libevent loop and takes commands on stdin, one
 * a line, so that a test can stop and start Redis between them while the
 * loop (and its reconnecting) runs on.
 *
 *   check CLIENT SENDER RCPT [NOW]      -> answer ID VERDICT RETRY_IN AUTO MS SYNC
 *   cancel CLIENT SENDER RCPT [NOW]     -> cancelled ID  (check, then cancel at once;
 *                                          "BUG done after cancel ID" if done comes)
 *   peek CLIENT SENDER RCPT [NOW]       -> peek VERDICT RETRY_IN AUTO  |  peek-error TEXT
 *   quit
 *
 * SENDER "<>" is the null sender; NOW defaults to time(NULL).  VERDICT is
 * PASS, DEFER or UNAVAILABLE; MS the time from greylist_check to done;
 * SYNC 1 when done came before greylist_check returned.
 *
 * usage: greylist_drive (-r HOST:PORT | -s STATE_DIR) [-d DELAY] [-m MAX_AGE]
 *            [-a AUTO_ALLOW] [-v]
 */
#include "conf/config.h"
#include "lib/log.h"
#include "policy/greylist.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct pending {
	int id;
	int cancelled;
	int in_check;           /* done came before greylist_check returned */
	double start;
};

static struct config cfg;
static struct greylist *gl;
static struct event_base *base;
static int next_id;
static struct pending *cancelled[64];   /* done must never come: freed at exit */
static int ncancelled;

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *verdict_name(enum greylist_verdict v)
{
	return v == GREYLIST_PASS ? "PASS" : v == GREYLIST_DEFER ? "DEFER" : "UNAVAILABLE";
}

static void done(void *arg, const struct greylist_answer *a)
{
	struct pending *p = arg;
	if (p->cancelled) {
		printf("BUG done after cancel %d\n", p->id);
		fflush(stdout);
		return;
	} else {
		printf("answer %d %s %ld %d %.1f %d\n", p->id, verdict_name(a->verdict), a->retry_in,
		    a->auto_allowed, (mono() - p->start) * 1000, p->in_check);
	}
	fflush(stdout);
	if (!p->in_check)
		free(p);
	else
		p->in_check = 2;        /* answered synchronously: freed by the caller */
}

static void command(char *line)
{
	char *w[6];
	int n = 0;
	time_t now;

	for (char *tok = strtok(line, " \t"); tok != NULL && n < 6; tok = strtok(NULL, " \t"))
		w[n++] = tok;
	if (n == 0)
		return;
	if (strcmp(w[0], "quit") == 0) {
		event_base_loopbreak(base);
		return;
	}
	if (n < 4 || n > 5) {
		printf("error usage\n");
		fflush(stdout);
		return;
	}
	now = n == 5 ? (time_t)strtoll(w[4], NULL, 10) : time(NULL);
	const char *sender = strcmp(w[2], "<>") == 0 ? "" : w[2];
	if (strcmp(w[0], "peek") == 0) {
		struct greylist_answer a;
		char err[512];
		if (greylist_peek(&cfg, w[1], sender, w[3], now, &a, err, sizeof(err)) < 0)
			printf("peek-error %s\n", err);
		else
			printf("peek %s %ld %d\n", verdict_name(a.verdict), a.retry_in, a.auto_allowed);
		fflush(stdout);
		return;
	}
	if (strcmp(w[0], "check") != 0 && strcmp(w[0], "cancel") != 0) {
		printf("error unknown command %s\n", w[0]);
		fflush(stdout);
		return;
	}
	struct pending *p = calloc(1, sizeof(*p));
	p->id = ++next_id;
	p->in_check = 1;
	p->start = mono();
	struct greylist_req *req = greylist_check(gl, w[1], sender, w[3], now, done, p);
	if (req == NULL) {
		if (p->in_check != 2)
			printf("BUG no handle and no answer %d\n", p->id);
		fflush(stdout);
		free(p);
		return;
	}
	if (p->in_check == 2)
		printf("BUG answered and a handle %d\n", p->id);
	p->in_check = 0;
	if (strcmp(w[0], "cancel") == 0) {
		greylist_cancel(req);
		p->cancelled = 1;
		if (ncancelled < 64)
			cancelled[ncancelled++] = p;
		printf("cancelled %d\n", p->id);
		fflush(stdout);
	}
}

static void stdin_cb(evutil_socket_t fd, short what, void *arg)
{
	static char buf[8192];
	static size_t len;
	ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
	char *nl;

	if (r <= 0) {
		event_base_loopbreak(base);
		return;
	}
	len += (size_t)r;
	while ((nl = memchr(buf, '\n', len)) != NULL) {
		*nl = '\0';
		size_t used = (size_t)(nl - buf) + 1;
		char line[8192];
		memcpy(line, buf, used);
		memmove(buf, buf + used, len - used);
		len -= used;
		command(line);
	}
	if (len == sizeof(buf) - 1)
		len = 0;
}

int main(int argc, char **argv)
{
	char err[512];
	int opt, verbose = 0;
	struct event *in;

	config_defaults(&cfg);
	cfg.greylist_delay = 1;
	cfg.greylist_max_age = 3600;
	while ((opt = getopt(argc, argv, "r:s:d:m:a:v")) != -1) {
		switch (opt) {
		case 'r': {
			char *colon = strrchr(optarg, ':');
			if (colon == NULL) {
				fprintf(stderr, "-r HOST:PORT\n");
				return 2;
			}
			cfg.redis_host = strndup(optarg, (size_t)(colon - optarg));
			cfg.redis_port = strdup(colon + 1);
			break;
		}
		case 's': cfg.state_dir = strdup(optarg); break;
		case 'd': cfg.greylist_delay = strtoull(optarg, NULL, 10); break;
		case 'm': cfg.greylist_max_age = strtoull(optarg, NULL, 10); break;
		case 'a': cfg.greylist_auto_allow = strtoull(optarg, NULL, 10); break;
		case 'v': verbose = 1; break;
		default: return 2;
		}
	}
	if (cfg.redis_host == NULL && cfg.state_dir == NULL) {
		fprintf(stderr, "usage: greylist_drive (-r HOST:PORT | -s STATE_DIR) [-d DELAY] "
		    "[-m MAX_AGE] [-a AUTO_ALLOW] [-v]\n");
		return 2;
	}
	log_init("greylist_drive", 1, verbose);
	base = event_base_new();
	gl = greylist_open(&cfg, base, err, sizeof(err));
	if (gl == NULL) {
		fprintf(stderr, "greylist_open: %s\n", err);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	in = event_new(base, 0, EV_READ | EV_PERSIST, stdin_cb, NULL);
	event_add(in, NULL);
	event_base_dispatch(base);
	event_free(in);
	greylist_close(gl);
	for (int i = 0; i < ncancelled; i++)
		free(cancelled[i]);
	event_base_free(base);
	config_free(&cfg);
	return 0;
}
