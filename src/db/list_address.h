/*
 * list_address.h - which list an address may belong to: the list address
 * itself, or one of Mailman 3's own addresses of a list, NAME-SUFFIX@DOMAIN
 * (bounces, bounces+ANYTHING, confirm, confirm+ANYTHING, join, leave,
 * owner, request, subscribe, unsubscribe).
 */
#ifndef MP_LIST_ADDRESS_H
#define MP_LIST_ADDRESS_H

#include <stddef.h>

#define LIST_CANDIDATES_MAX 8

/* The list keys to look up for address (lower-cased, local@domain), in
 * order: the address itself with role LIST_ROLE_POST, then NAME@DOMAIN
 * with LIST_ROLE_MANAGER for each suffix that is one of Mailman 3's,
 * longest NAME first.  The keys are malloc'd; returns how many. */
size_t list_candidates(const char *address, char *keys[LIST_CANDIDATES_MAX],
    int roles[LIST_CANDIDATES_MAX]);

/* Whether suffix (after NAME-) is one of Mailman 3's. */
int list_suffix_known(const char *suffix);

#endif
