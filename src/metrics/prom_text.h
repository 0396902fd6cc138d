/*
 * prom_text.h - writing the Prometheus text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/): one
 * family header (# HELP, # TYPE), then its samples.  Used by mailprocd's
 * metrics and by mailmond.
 */
#ifndef MP_PROM_TEXT_H
#define MP_PROM_TEXT_H

#include "metrics/metrics.h"

struct buf;

/* "# HELP name help\n# TYPE name type\n"; type is "counter", "gauge" or
 * "histogram".  help is escaped as the format wants (\\ and \n). */
void prom_family(struct buf *out, const char *name, const char *type, const char *help);

/* One sample line.  labels is NULL or a list of name, value pairs ended by
 * NULL: prom_sample(out, "x_total", (const char *[]){ "status", "sent",
 * NULL }, 3).  Values are escaped (\\, \" and \n). */
void prom_sample(struct buf *out, const char *name, const char *const *labels, double value);
void prom_sample_u64(struct buf *out, const char *name, const char *const *labels,
    uint64_t value);

/* A histogram's samples: name_bucket{...,le="..."} (cumulative, +Inf last),
 * name_sum (seconds) and name_count, with the extra labels. */
void prom_histogram(struct buf *out, const char *name, const char *const *labels,
    const struct metrics_hist *h, const struct metrics_bounds *b);

#endif
