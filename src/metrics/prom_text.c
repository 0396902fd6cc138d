/*
 * prom_text.c - writing the Prometheus text exposition format 0.0.4: family
 * headers, samples with escaped label values, histograms.  See prom_text.h.
 */
#include "metrics/prom_text.h"
#include "lib/buf.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>

/* s with \ and newline escaped (and " too for label values). */
static void put_escaped(struct buf *out, const char *s, int quote)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			buf_puts(out, "\\\\");
		else if (*s == '\n')
			buf_puts(out, "\\n");
		else if (*s == '"' && quote)
			buf_puts(out, "\\\"");
		else
			buf_putc(out, *s);
	}
}

void prom_family(struct buf *out, const char *name, const char *type, const char *help)
{
	buf_printf(out, "# HELP %s ", name);
	put_escaped(out, help, 0);
	buf_printf(out, "\n# TYPE %s %s\n", name, type);
}

/* name{a="x",b="y"} or name, then a space; le (may be NULL) goes last. */
static void put_name(struct buf *out, const char *name, const char *const *labels,
    const char *le)
{
	int n = 0;

	buf_puts(out, name);
	if (labels != NULL) {
		for (; labels[0] != NULL && labels[1] != NULL; labels += 2, n++) {
			buf_printf(out, "%s%s=\"", n ? "," : "{", labels[0]);
			put_escaped(out, labels[1], 1);
			buf_putc(out, '"');
		}
	}
	if (le != NULL) {
		buf_printf(out, "%sle=\"%s\"", n ? "," : "{", le);
		n++;
	}
	buf_puts(out, n ? "} " : " ");
}

static void put_value(struct buf *out, double v)
{
	if (isnan(v))
		buf_puts(out, "NaN\n");
	else if (isinf(v))
		buf_puts(out, v > 0 ? "+Inf\n" : "-Inf\n");
	else if (v == floor(v) && fabs(v) < 9007199254740992.0)
		buf_printf(out, "%.0f\n", v);
	else {
		/* the shortest of %.15g .. %.17g that reads back as v:
		 * 0.0026, not 0.0025899999999999999 */
		char text[40];
		for (int digits = 15; digits <= 17; digits++) {
			snprintf(text, sizeof(text), "%.*g", digits, v);
			if (strtod(text, NULL) == v)
				break;
		}
		buf_printf(out, "%s\n", text);
	}
}

void prom_sample(struct buf *out, const char *name, const char *const *labels, double value)
{
	put_name(out, name, labels, NULL);
	put_value(out, value);
}

void prom_sample_u64(struct buf *out, const char *name, const char *const *labels,
    uint64_t value)
{
	put_name(out, name, labels, NULL);
	buf_printf(out, "%llu\n", (unsigned long long)value);
}

void prom_histogram(struct buf *out, const char *name, const char *const *labels,
    const struct metrics_hist *h, const struct metrics_bounds *b)
{
	char sample[256], le[32];
	uint64_t cumulative = 0;

	snprintf(sample, sizeof(sample), "%s_bucket", name);
	for (int i = 0; i < b->n && i < METRICS_MAX_BUCKETS; i++) {
		cumulative += metrics_read(&h->bucket[i]);
		snprintf(le, sizeof(le), "%g", b->le[i]);
		put_name(out, sample, labels, le);
		buf_printf(out, "%llu\n", (unsigned long long)cumulative);
	}
	/* read after the buckets: an observation made meanwhile must not
	 * leave +Inf below the last finite bucket */
	uint64_t count = metrics_read(&h->count);
	if (count < cumulative)
		count = cumulative;
	put_name(out, sample, labels, "+Inf");
	buf_printf(out, "%llu\n", (unsigned long long)count);
	snprintf(sample, sizeof(sample), "%s_sum", name);
	prom_sample(out, sample, labels, (double)metrics_read(&h->sum_usec) / 1e6);
	snprintf(sample, sizeof(sample), "%s_count", name);
	prom_sample_u64(out, sample, labels, count);
}
