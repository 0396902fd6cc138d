/*
 * members_data.h - the members of some lists in memory, as a fetch or the
 * `members` source gathers them, before they are stored.
 */
#ifndef MP_MEMBERS_DATA_H
#define MP_MEMBERS_DATA_H

#include <stddef.h>
#include <time.h>

struct members_list {
	char *address;          /* the list's address, lower-case */
	time_t fetched;         /* 0: never gets old (the file source) */
	char **addrs;           /* normalised */
	char **roles;           /* "member", "owner", "moderator" */
	size_t n, cap;
};

struct members_data {
	struct members_list *lists;
	size_t n, cap;
};

void members_data_init(struct members_data *d);
void members_data_free(struct members_data *d);
/* The list of that address (lower-cased), added when it is not there. */
struct members_list *members_data_list(struct members_data *d, const char *address,
    time_t fetched);
/* The list with that address, or NULL. */
struct members_list *members_data_find(struct members_data *d, const char *address);
void members_list_add(struct members_list *l, const char *normalised, const char *role);

#endif
