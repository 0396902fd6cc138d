/*
 * status_table.c - the figures of an exposition as the short table that
 * `mailprocctl status` prints: one line a sample that is not zero, the
 * name without its mailprocd_ prefix, labels as name=value, histograms as
 * their count and average (the buckets are left out).
 */
#include "metrics/expose.h"
#include "lib/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_WIDTH 56

/* One sample line taken apart: its name, its labels as "a=x b=y", its
 * value.  0 if the line is not a sample this table can show. */
static int parse_sample(const char *line, size_t len, struct buf *name, struct buf *labels,
    double *value)
{
	size_t i = 0;

	while (i < len && line[i] != '{' && line[i] != ' ')
		i++;
	if (i == 0 || i == len)
		return 0;
	buf_append(name, line, i);
	if (line[i] == '{') {
		i++;
		while (i < len && line[i] != '}') {
			size_t start = i;
			while (i < len && line[i] != '=')
				i++;
			if (i + 1 >= len || line[i + 1] != '"')
				return 0;
			if (labels->len)
				buf_putc(labels, ' ');
			buf_append(labels, line + start, i - start);
			buf_putc(labels, '=');
			for (i += 2; i < len && line[i] != '"'; i++) {
				if (line[i] == '\\' && i + 1 < len) {
					i++;
					buf_putc(labels, line[i] == 'n' ? ' ' : line[i]);
				} else {
					buf_putc(labels, line[i]);
				}
			}
			if (i >= len)
				return 0;
			i++;    /* the closing quote */
			if (i < len && line[i] == ',')
				i++;
		}
		if (i >= len)
			return 0;
		i++;    /* } */
	}
	if (i >= len || line[i] != ' ')
		return 0;
	char num[64];
	size_t n = len - i - 1;
	if (n == 0 || n >= sizeof(num))
		return 0;
	memcpy(num, line + i + 1, n);
	num[n] = '\0';
	char *end;
	*value = strtod(num, &end);
	return *end == '\0';
}

static int ends_with(const struct buf *b, const char *suffix)
{
	size_t n = strlen(suffix);
	return b->len >= n && memcmp(b->data + b->len - n, suffix, n) == 0;
}

static void put_row(struct buf *out, const struct buf *name, size_t cut, const struct buf *labels,
    const char *value)
{
	const char *shown = name->data;
	size_t shown_len = cut;
	size_t before = out->len;

	if (shown_len > 10 && strncmp(shown, "mailprocd_", 10) == 0) {
		shown += 10;
		shown_len -= 10;
	}
	buf_printf(out, "  %.*s%s%s", (int)shown_len, shown, labels->len ? " " : "",
	    labels->len ? labels->data : "");
	size_t width = out->len - before;
	buf_printf(out, "%*s %s\n", width < NAME_WIDTH ? (int)(NAME_WIDTH - width) : 0, "", value);
}

void status_table(struct buf *out, const char *exposition)
{
	struct buf name = BUF_INIT, labels = BUF_INIT, sum_of = BUF_INIT;
	double sum = 0;
	int rows = 0;

	buf_puts(out, "figures (zeros left out):\n");
	for (const char *line = exposition; *line != '\0';) {
		const char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		double v;

		buf_reset(&name);
		buf_reset(&labels);
		if (len > 0 && line[0] != '#' && parse_sample(line, len, &name, &labels, &v)) {
			char value[64];
			if (ends_with(&name, "_bucket")) {
				/* the buckets are left out */
			} else if (ends_with(&name, "_sum")) {
				/* kept for the _count that follows */
				sum = v;
				buf_reset(&sum_of);
				buf_append(&sum_of, name.data, name.len - 4);
				buf_putc(&sum_of, '{');
				if (labels.len)
					buf_append(&sum_of, labels.data, labels.len);
			} else if (ends_with(&name, "_count") && v > 0) {
				/* a histogram: with its sum, the average */
				int same = sum_of.len == name.len - 6 + 1 + labels.len &&
				    memcmp(sum_of.data, name.data, name.len - 6) == 0 &&
				    (labels.len == 0 ||
				    memcmp(sum_of.data + name.len - 5, labels.data, labels.len) == 0);
				if (same)
					snprintf(value, sizeof(value), "count=%.0f avg=%.3gs", v, sum / v);
				else
					snprintf(value, sizeof(value), "%.15g", v);
				put_row(out, &name, same ? name.len - 6 : name.len, &labels, value);
				rows++;
			} else if (v != 0 && !ends_with(&name, "_count")) {
				snprintf(value, sizeof(value), "%.15g", v);
				put_row(out, &name, name.len, &labels, value);
				rows++;
			}
		}
		line += len;
		if (*line == '\n')
			line++;
	}
	if (rows == 0)
		buf_puts(out, "  (none)\n");
	buf_free(&name);
	buf_free(&labels);
	buf_free(&sum_of);
}
