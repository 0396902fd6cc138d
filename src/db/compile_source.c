/*
 * compile_source.c - reading database sources line by line, the record
 * tables, and error reporting for the compiler.
 */
#include "db/compile_private.h"
#include "lib/strmap.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE 65536

void compile_error(struct compile *c, const char *file, int line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (c->stopped)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	char *full = line > 0 ? xasprintf("%s:%d: %s", file, line, msg)
	    : xasprintf("%s: %s", file, msg);
	c->report(c->ctx, full);
	free(full);
	if (++c->errors >= COMPILE_MAX_ERRORS) {
		c->report(c->ctx, "too many errors, stopping");
		c->stopped = 1;
	}
}

void compile_warning(struct compile *c, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	char *full = xasprintf("warning: %s", msg);
	c->report(c->ctx, full);
	free(full);
}

/* ---- tables ---- */

void table_init(struct table *t)
{
	memset(t, 0, sizeof(*t));
	t->index = strmap_new();
}

void table_free(struct table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		struct rec *r = t->items[i];
		free(r->key);
		db_account_free(&r->account);
		rules_entry_free(&r->entry);
		db_list_free(&r->list);
		free(r);
	}
	free(t->items);
	if (t->index)
		strmap_free(t->index);
	memset(t, 0, sizeof(*t));
}

struct rec *table_get(const struct table *t, const char *key)
{
	return strmap_get(t->index, key);
}

struct rec *table_add_orphan(struct table *t, int line)
{
	struct rec *r = xcalloc(1, sizeof(*r));
	r->line = line;
	r->entry.spam = -1;
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->items = xreallocarray(t->items, t->cap, sizeof(*t->items));
	}
	t->items[t->n++] = r;
	return r;
}

struct rec *table_add(struct compile *c, struct table *t, const char *file,
    int line, const char *key)
{
	struct rec *first = table_get(t, key);
	struct rec *r = table_add_orphan(t, line);
	r->key = xstrdup(key);
	if (first != NULL) {
		compile_error(c, file, line, "duplicate key \"%s\" (first at line %d)",
		    key, first->line);
		return r;
	}
	r->valid = 1;
	strmap_put(t->index, key, r);
	return r;
}

/* ---- lines ---- */

int compile_split_words(char *text, char **words, int max)
{
	int n = 0;
	char *p = text;
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			return n;
		if (n == max)
			return -1;
		words[n++] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		if (*p)
			*p++ = '\0';
	}
}

/* Cut a `#` comment: at the start of the line or after white space, and
 * not inside a "quoted string".  Then trim trailing white space. */
static void strip_comment(char *s)
{
	int quoted = 0;
	for (char *p = s; *p; p++) {
		if (quoted && *p == '\\' && p[1] != '\0') {
			p++;
		} else if (*p == '"') {
			quoted = !quoted;
		} else if (!quoted && *p == '#' && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			break;
		}
	}
	size_t len = strlen(s);
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r'))
		s[--len] = '\0';
}

static int check_line(struct compile *c, const char *path, int lineno,
    const char *text, size_t len)
{
	if (len > MAX_LINE) {
		compile_error(c, path, lineno, "line longer than %d bytes", MAX_LINE);
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)text[i];
		if ((ch < 0x20 && ch != '\t' && !(ch == '\r' && i + 1 == len)) || ch == 0x7f) {
			compile_error(c, path, lineno, "control character in line");
			return -1;
		}
	}
	return 0;
}

static void read_lines(struct compile *c, const char *path, FILE *f, source_line_fn fn)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int lineno = 0;

	while (!c->stopped && (len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			line[--len] = '\0';
		if (check_line(c, path, lineno, line, (size_t)len) < 0)
			continue;
		strip_comment(line);
		char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			continue;
		fn(c, path, lineno, line, p != line);
	}
	if (ferror(f))
		compile_error(c, path, 0, "read error: %s", strerror(errno));
	free(line);
}

int compile_read_source(struct compile *c, const char *path, source_line_fn fn)
{
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		if (errno == ENOENT)
			return 0;
		compile_error(c, path, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	read_lines(c, path, f, fn);
	fclose(f);
	return 1;
}
