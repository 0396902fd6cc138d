/*
 * parse_util.c - sizes, durations, unsigned integers.
 */
#include "lib/parse_util.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>

static int parse_scaled(const char *s, const char *suffixes, const uint64_t *scale,
    int bare_ok, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		uint64_t d = (uint64_t)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	uint64_t mul = 1;
	if (*p != '\0') {
		const char *hit = strchr(suffixes, toupper((unsigned char)*p));
		if (hit == NULL || p[1] != '\0')
			return -1;
		mul = scale[hit - suffixes];
	} else if (!bare_ok) {
		return -1;
	}
	if (mul && v > UINT64_MAX / mul)
		return -1;
	*out = v * mul;
	return 0;
}

int parse_size(const char *s, uint64_t *out)
{
	static const uint64_t scale[] = { 1, 1024, 1024 * 1024, 1024ULL * 1024 * 1024 };
	return parse_scaled(s, "BKMG", scale, 1, out);
}

int parse_duration(const char *s, uint64_t *out)
{
	static const uint64_t scale[] = { 1, 60, 3600, 86400, 7 * 86400 };
	return parse_scaled(s, "SMHDW", scale, 1, out);
}

int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	static const uint64_t none[] = { 1 };
	uint64_t v;
	if (parse_scaled(s, "", none, 1, &v) < 0 || v > max)
		return -1;
	*out = v;
	return 0;
}
