/*
 * members_data.c - the members of lists in memory (members_data.h).
 */
#include "lists/members_data.h"
#include "lib/xalloc.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void members_data_init(struct members_data *d)
{
	memset(d, 0, sizeof(*d));
}

void members_data_free(struct members_data *d)
{
	for (size_t i = 0; i < d->n; i++) {
		struct members_list *l = &d->lists[i];
		for (size_t j = 0; j < l->n; j++) {
			free(l->addrs[j]);
			free(l->roles[j]);
		}
		free(l->addrs);
		free(l->roles);
		free(l->address);
	}
	free(d->lists);
	memset(d, 0, sizeof(*d));
}

struct members_list *members_data_find(struct members_data *d, const char *address)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcasecmp(d->lists[i].address, address) == 0)
			return &d->lists[i];
	return NULL;
}

struct members_list *members_data_list(struct members_data *d, const char *address,
    time_t fetched)
{
	struct members_list *l = members_data_find(d, address);
	if (l != NULL)
		return l;
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 8;
		d->lists = xreallocarray(d->lists, d->cap, sizeof(*d->lists));
	}
	l = &d->lists[d->n++];
	memset(l, 0, sizeof(*l));
	l->address = xstrdup(address);
	for (char *p = l->address; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	l->fetched = fetched;
	return l;
}

void members_list_add(struct members_list *l, const char *normalised, const char *role)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->addrs = xreallocarray(l->addrs, l->cap, sizeof(*l->addrs));
		l->roles = xreallocarray(l->roles, l->cap, sizeof(*l->roles));
	}
	l->addrs[l->n] = xstrdup(normalised);
	l->roles[l->n] = xstrdup(role);
	l->n++;
}
