/*
 * parse_util.h - parsing of the value syntaxes shared by the config file and
 * the database sources: sizes with K/M/G, durations with s/m/h/d.
 */
#ifndef MP_PARSE_UTIL_H
#define MP_PARSE_UTIL_H

#include <stdint.h>

/* "512K" -> 524288.  0 on success, -1 on syntax error or overflow. */
int parse_size(const char *s, uint64_t *out);
/* "300s", "5m", "4h", "5d"; a bare number is seconds.  Result in seconds. */
int parse_duration(const char *s, uint64_t *out);
/* Decimal unsigned integer without sign or suffix. */
int parse_uint(const char *s, uint64_t max, uint64_t *out);

#endif
