/*
 * list_address.c - the list an address may belong to (list_address.h).
 */
#include "db/list_address.h"
#include "db/db.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

static const char *const plain_suffixes[] = {
	"bounces", "confirm", "join", "leave", "owner", "request", "subscribe", "unsubscribe",
};
/* these also take +ANYTHING (VERP bounces, confirmation cookies) */
static const char *const plus_suffixes[] = { "bounces+", "confirm+" };

int list_suffix_known(const char *suffix)
{
	for (size_t i = 0; i < sizeof(plain_suffixes) / sizeof(plain_suffixes[0]); i++)
		if (strcmp(suffix, plain_suffixes[i]) == 0)
			return 1;
	for (size_t i = 0; i < sizeof(plus_suffixes) / sizeof(plus_suffixes[0]); i++) {
		size_t len = strlen(plus_suffixes[i]);
		if (strncmp(suffix, plus_suffixes[i], len) == 0 && suffix[len] != '\0')
			return 1;
	}
	return 0;
}

size_t list_candidates(const char *address, char *keys[LIST_CANDIDATES_MAX],
    int roles[LIST_CANDIDATES_MAX])
{
	const char *at = strrchr(address, '@');
	if (at == NULL || at == address || at[1] == '\0')
		return 0;
	size_t n = 0;
	keys[n] = xstrdup(address);
	roles[n++] = LIST_ROLE_POST;
	/* NAME-SUFFIX: NAME is never empty; the suffix runs to the '@' */
	for (const char *dash = address + 1; dash < at && n < LIST_CANDIDATES_MAX; dash++) {
		if (*dash != '-')
			continue;
		char *suffix = xstrndup(dash + 1, (size_t)(at - dash - 1));
		if (list_suffix_known(suffix)) {
			keys[n] = xasprintf("%.*s%s", (int)(dash - address), address, at);
			roles[n++] = LIST_ROLE_MANAGER;
		}
		free(suffix);
	}
	return n;
}
