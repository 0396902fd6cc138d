/*
 * mailman_json.h - the answers of Mailman 3's REST API (3.1) that the
 * members sync reads, parsed with jansson.
 *
 * A collection is {"start": N, "total_size": N, "entries": [...]}; an
 * empty one has no "entries".  GET /lists gives entries with "list_id"
 * and "fqdn_listname"; GET /lists/ID/roster/ROLE entries with "email".
 */
#ifndef MP_MAILMAN_JSON_H
#define MP_MAILMAN_JSON_H

#include <stddef.h>

#include "lists/members_data.h"

struct mailman_list_ref {
	char *list_id;          /* "devs.lists.example.test" */
	char *fqdn_listname;    /* "devs@lists.example.test" */
};

struct mailman_list_refs {
	struct mailman_list_ref *v;
	size_t n, cap;
};

void mailman_list_refs_free(struct mailman_list_refs *r);
/* One page of GET /lists: its entries appended to out, the collection's
 * total_size in *total, the page's entry count in *got.  0, or -1 with err
 * (out may have grown; the caller drops it). */
int mailman_json_lists(const char *body, size_t len, struct mailman_list_refs *out,
    size_t *total, size_t *got, char *err, size_t errlen);
/* One page of GET /lists/ID/roster/ROLE: each entry's email, normalised,
 * added to l with role.  0, or -1 with err. */
int mailman_json_roster(const char *body, size_t len, struct members_list *l,
    const char *role, char delimiter, size_t *total, size_t *got, char *err, size_t errlen);

#endif
