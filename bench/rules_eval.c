/*
 * rules_eval.c - the rules evaluator alone, for bench/rules_bench.py: runs
 * one rules entry over many messages the way a worker does (message read,
 * parsed as far as the conditions need, entry walked top to bottom) and
 * counts which instruction each message ends at.
 *
 *   rules_eval ENTRYFILE SENDERLIST MSG...
 *
 * ENTRYFILE holds the instruction lines of one entry (as in the rules
 * source, without the key line); SENDERLIST one envelope sender per
 * message, in order.  Prints "line N: COUNT" for every instruction line
 * that held, "default: COUNT", then "evaluated M messages in S s" on
 * stderr (file reading excluded from the time, parsing included).
 */
#include "db/rules_entry.h"
#include "lib/buf.h"
#include "lib/fsutil.h"
#include "lib/xalloc.h"
#include "mime/mime.h"
#include "rules/walk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BODY_LIMIT (1024 * 1024)
#define MAX_LINES 4096

struct tally {
	int held_line;          /* the line of the instruction the message ended at */
};

static void visit(const struct rule_instruction *in, int index, int holds, const char *warn,
    void *arg)
{
	struct tally *t = arg;
	if (warn[0])
		fprintf(stderr, "warning: %s\n", warn);
	if (holds && t->held_line == 0 && in->action != ACT_STOP)
		t->held_line = in->line;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The message as the queue stores it: CRLF made LF. */
static char *load_message(const char *path, size_t *len)
{
	size_t n;
	char *raw = read_file(path, 64 * 1024 * 1024, &n);
	if (raw == NULL) {
		perror(path);
		exit(1);
	}
	size_t o = 0;
	for (size_t i = 0; i < n; i++)
		if (!(raw[i] == '\r' && i + 1 < n && raw[i + 1] == '\n'))
			raw[o++] = raw[i];
	*len = o;
	return raw;
}

int main(int argc, char **argv)
{
	char err[512];
	struct rules_entry parsed = { .spam = -1 }, e;

	if (argc < 4) {
		fprintf(stderr, "usage: rules_eval ENTRYFILE SENDERLIST MSG...\n");
		return 2;
	}
	FILE *f = fopen(argv[1], "r");
	if (f == NULL) {
		perror(argv[1]);
		return 1;
	}
	char line[65536];
	for (int lineno = 1; fgets(line, sizeof(line), f) != NULL; lineno++) {
		line[strcspn(line, "\n")] = '\0';
		const char *p = line + strspn(line, " \t");
		if (*p == '\0' || *p == '#')
			continue;
		if (rules_parse_line(p, 0, lineno, &parsed, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s:%d: %s\n", argv[1], lineno, err);
			return 1;
		}
	}
	fclose(f);
	/* what the worker gets: the stored, encoded form */
	struct buf blob = BUF_INIT;
	rules_entry_encode(&parsed, &blob);
	if (rules_entry_decode(blob.data, blob.len, &e) < 0) {
		fprintf(stderr, "the encoded entry does not decode\n");
		return 1;
	}
	int needs = rules_entry_needs(&e);

	int nmsg = argc - 3;
	char **msgs = xcalloc((size_t)nmsg, sizeof(*msgs));
	size_t *lens = xcalloc((size_t)nmsg, sizeof(*lens));
	char **senders = xcalloc((size_t)nmsg, sizeof(*senders));
	FILE *sf = fopen(argv[2], "r");
	if (sf == NULL) {
		perror(argv[2]);
		return 1;
	}
	for (int i = 0; i < nmsg; i++) {
		msgs[i] = load_message(argv[3 + i], &lens[i]);
		if (fgets(line, sizeof(line), sf) == NULL)
			line[0] = '\0';
		line[strcspn(line, "\n")] = '\0';
		senders[i] = xstrdup(line);
	}
	fclose(sf);

	static long counts[MAX_LINES];
	long fallback = 0;
	double t0 = now();
	for (int i = 0; i < nmsg; i++) {
		struct mime_message mm = { 0 };
		if (needs != 0)
			mime_parse(msgs[i], lens[i], BODY_LIMIT,
			    (needs & RULES_NEED_BODY) ? 0 : MIME_HEADERS_ONLY, &mm);
		struct rule_context ctx = {
			.sender = senders[i], .rcpt = "bench@example.test", .extension = "",
			.size = lens[i], .msg = needs ? &mm : NULL,
		};
		struct tally t = { 0 };
		rules_walk(&e, &ctx, visit, &t);
		if (t.held_line > 0 && t.held_line < MAX_LINES)
			counts[t.held_line]++;
		else
			fallback++;
		mime_message_free(&mm);
	}
	double secs = now() - t0;
	for (int l = 0; l < MAX_LINES; l++)
		if (counts[l])
			printf("line %d: %ld\n", l, counts[l]);
	printf("default: %ld\n", fallback);
	fprintf(stderr, "evaluated %d messages in %.3f s\n", nmsg, secs);
	return 0;
}
