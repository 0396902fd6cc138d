/*
 * members_key.c - normalising members' addresses and the keys and values
 * of the members database (members_key.h).
 */
#include "lists/members_key.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int members_normalise(const char *address, char delimiter, struct buf *out)
{
	buf_reset(out);
	const char *at = strrchr(address, '@');
	size_t len = strlen(address);
	if (at == NULL || at == address || at[1] == '\0' || len > MEMBERS_ADDRESS_MAX)
		return -1;
	for (const char *p = address; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return -1;
	size_t local = (size_t)(at - address);
	if (delimiter != '\0') {
		const char *d = memchr(address, delimiter, local);
		if (d != NULL && d != address)
			local = (size_t)(d - address);
	}
	for (size_t i = 0; i < local; i++)
		buf_putc(out, (char)tolower((unsigned char)address[i]));
	for (const char *p = at; *p; p++)
		buf_putc(out, (char)tolower((unsigned char)*p));
	return 0;
}

int members_list_address_ok(const char *list)
{
	const char *at = strchr(list, '@');
	if (at == NULL || at == list || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
	    strlen(list) > MEMBERS_ADDRESS_MAX)
		return 0;
	for (const char *p = list; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return 0;
	return 1;
}

void members_list_key(const char *list, struct buf *out)
{
	buf_reset(out);
	for (const char *p = list; *p; p++)
		buf_putc(out, (char)tolower((unsigned char)*p));
}

void members_member_key(const char *list, const char *address, struct buf *out)
{
	members_list_key(list, out);
	buf_putc(out, '\t');
	buf_puts(out, address);
}

void members_list_value(time_t fetched, uint64_t count, struct buf *out)
{
	buf_reset(out);
	buf_printf(out, "%lld %" PRIu64, (long long)fetched, count);
}

int members_list_value_parse(const void *p, size_t len, time_t *fetched, uint64_t *count)
{
	char tmp[64];
	long long t;
	unsigned long long n;
	char extra;
	if (len == 0 || len >= sizeof(tmp))
		return -1;
	memcpy(tmp, p, len);
	tmp[len] = '\0';
	if (sscanf(tmp, "%lld %llu%c", &t, &n, &extra) != 2 || t < 0)
		return -1;
	*fetched = (time_t)t;
	*count = n;
	return 0;
}
