/*
 * address.c - address normalisation and the key lookup order.
 */
#include "db/address.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int is_control(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

char *address_lower(const char *s)
{
	char *out = xstrdup(s);
	for (char *p = out; *p; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	return out;
}

/* Where the extension starts in local (the first delimiter), or NULL.  A
 * delimiter in first position splits nothing: the base would be empty. */
static const char *find_delimiter(const char *local, char delimiter)
{
	if (delimiter == '\0' || local[0] == '\0')
		return NULL;
	const char *p = strchr(local + 1, delimiter);
	return p;
}

int address_parse(const char *addr, char delimiter, struct address *out)
{
	memset(out, 0, sizeof(*out));
	size_t len = strlen(addr);
	if (len == 0 || len > ADDRESS_MAX)
		return -1;
	for (const char *p = addr; *p; p++) {
		if (is_control((unsigned char)*p))
			return -1;
	}
	const char *at = strrchr(addr, '@');
	if (at == NULL || at == addr || at[1] == '\0')
		return -1;

	out->full = address_lower(addr);
	char *local = xstrndup(out->full, (size_t)(at - addr));
	out->domain = xstrdup(out->full + (at - addr) + 1);
	const char *delim = find_delimiter(local, delimiter);
	if (delim != NULL) {
		out->extension = xstrdup(delim + 1);
		out->local = xstrndup(local, (size_t)(delim - local));
		free(local);
	} else {
		out->local = local;
	}
	return 0;
}

void address_free(struct address *a)
{
	free(a->full);
	free(a->local);
	free(a->domain);
	free(a->extension);
	memset(a, 0, sizeof(*a));
}

/* Append key to keys unless it is already there. */
static void add_key(char *keys[ADDRESS_KEYS_MAX], size_t *n, char *key)
{
	for (size_t i = 0; i < *n; i++) {
		if (strcmp(keys[i], key) == 0) {
			free(key);
			return;
		}
	}
	if (*n >= ADDRESS_KEYS_MAX) {
		free(key);
		return;
	}
	keys[(*n)++] = key;
}

size_t address_lookup_keys(const struct address *a, char *keys[ADDRESS_KEYS_MAX])
{
	size_t n = 0;
	add_key(keys, &n, xstrdup(a->full));
	if (a->extension != NULL)
		add_key(keys, &n, xasprintf("%s@%s", a->local, a->domain));
	add_key(keys, &n, xasprintf("%s@", a->local));
	add_key(keys, &n, xasprintf("@%s", a->domain));
	return n;
}

size_t address_key_lookup_keys(const char *key, char delimiter,
    char *keys[ADDRESS_KEYS_MAX])
{
	size_t n = 0;
	const char *at = strrchr(key, '@');
	if (at == NULL)
		return 0;
	if (at == key) {
		add_key(keys, &n, address_lower(key));
		return n;
	}
	if (at[1] != '\0') {
		struct address a;
		if (address_parse(key, delimiter, &a) < 0)
			return 0;
		n = address_lookup_keys(&a, keys);
		address_free(&a);
		return n;
	}
	/* local@: the key itself, then its base without the extension */
	char *local = xstrndup(key, (size_t)(at - key));
	char *lower = address_lower(local);
	free(local);
	add_key(keys, &n, xasprintf("%s@", lower));
	const char *delim = find_delimiter(lower, delimiter);
	if (delim != NULL)
		add_key(keys, &n, xasprintf("%.*s@", (int)(delim - lower), lower));
	free(lower);
	return n;
}

char *address_key_normalise(const char *key, char *err, size_t errlen)
{
	size_t len = strlen(key);
	if (len > ADDRESS_MAX) {
		snprintf(err, errlen, "key longer than %d characters", ADDRESS_MAX);
		return NULL;
	}
	for (const char *p = key; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (is_control(c) || c == ' ') {
			snprintf(err, errlen, "bad key \"%s\": space or control character", key);
			return NULL;
		}
	}
	const char *at = strchr(key, '@');
	if (at == NULL || strchr(at + 1, '@') != NULL) {
		snprintf(err, errlen, "bad key \"%s\": expected local@domain, @domain or local@", key);
		return NULL;
	}
	if (len == 1) {
		snprintf(err, errlen, "bad key \"@\": local part or domain needed");
		return NULL;
	}
	return address_lower(key);
}

int address_is_postmaster(const char *addr)
{
	return strncasecmp(addr, "postmaster", 10) == 0 && (addr[10] == '\0' || addr[10] == '@');
}
