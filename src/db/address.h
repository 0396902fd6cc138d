/*
 * address.h - addresses as database keys: normalisation (lower case),
 * splitting off the +extension, and the lookup order of SPEC.md.
 *
 * Keys are `local@domain`, `@domain` (catch-all) or `local@` (any domain).
 * For user+detail@domain the order is: user+detail@domain, user@domain,
 * user@, @domain.  Addresses are never used to build paths here.
 */
#ifndef MP_ADDRESS_H
#define MP_ADDRESS_H

#include <stddef.h>

#define ADDRESS_MAX 254         /* longest address or key we accept */
#define ADDRESS_KEYS_MAX 4      /* most keys one lookup tries */

struct address {
	char *full;             /* the whole address, lower-cased */
	char *local;            /* local part without the extension */
	char *domain;
	char *extension;        /* the part after the delimiter, or NULL */
};

/* Split an address for lookup (at the last '@').  Returns 0, or -1 when the
 * address can never be found: empty, no '@', an empty side, longer than
 * ADDRESS_MAX, or containing control characters. */
int address_parse(const char *addr, char delimiter, struct address *out);
void address_free(struct address *a);

/* The keys to look up for a, in order (malloc'd; the caller frees each).
 * Returns how many. */
size_t address_lookup_keys(const struct address *a, char *keys[ADDRESS_KEYS_MAX]);

/* The keys that give an account to a database key (rules compile check):
 * `local@domain` as an address; `local@` -> local@, base@; `@domain` ->
 * @domain only. */
size_t address_key_lookup_keys(const char *key, char delimiter,
    char *keys[ADDRESS_KEYS_MAX]);

/* Check a source key and return it lower-cased (malloc'd), or NULL with a
 * reason in err. */
char *address_key_normalise(const char *key, char *err, size_t errlen);

/* Whether addr is `postmaster` or `postmaster@DOMAIN`, in any case (RFC
 * 5321 4.5.1: always accepted).  No +extension. */
int address_is_postmaster(const char *addr);

/* A lower-cased copy (ASCII only; other bytes are kept). */
char *address_lower(const char *s);

#endif
