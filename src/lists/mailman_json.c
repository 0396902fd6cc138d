/*
 * mailman_json.c - parsing Mailman 3's REST collections (mailman_json.h).
 * Anything not as documented is an error: the sync then keeps the old
 * data rather than store half a list.
 */
#include "lists/mailman_json.h"
#include "lists/members_key.h"
#include "lib/xalloc.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mailman_list_refs_free(struct mailman_list_refs *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->v[i].list_id);
		free(r->v[i].fqdn_listname);
	}
	free(r->v);
	memset(r, 0, sizeof(*r));
}

/* The collection's entries (NULL when empty) and total_size.  The root is
 * returned for json_decref. */
static json_t *collection(const char *body, size_t len, json_t **entries, size_t *total,
    char *err, size_t errlen)
{
	json_error_t je;
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL) {
		snprintf(err, errlen, "bad JSON at line %d column %d: %s", je.line, je.column,
		    je.text);
		return NULL;
	}
	json_t *ts = json_object_get(root, "total_size");
	if (!json_is_object(root) || !json_is_integer(ts) || json_integer_value(ts) < 0) {
		snprintf(err, errlen, "not a collection (no total_size)");
		json_decref(root);
		return NULL;
	}
	*total = (size_t)json_integer_value(ts);
	*entries = json_object_get(root, "entries");
	if (*entries != NULL && !json_is_array(*entries)) {
		snprintf(err, errlen, "entries is not an array");
		json_decref(root);
		return NULL;
	}
	return root;
}

static const char *string_member(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

int mailman_json_lists(const char *body, size_t len, struct mailman_list_refs *out,
    size_t *total, size_t *got, char *err, size_t errlen)
{
	json_t *entries = NULL;
	json_t *root = collection(body, len, &entries, total, err, errlen);
	if (root == NULL)
		return -1;
	size_t i;
	json_t *e;
	*got = 0;
	json_array_foreach(entries, i, e) {
		const char *id = json_is_object(e) ? string_member(e, "list_id") : NULL;
		const char *name = json_is_object(e) ? string_member(e, "fqdn_listname") : NULL;
		if (id == NULL || name == NULL || id[0] == '\0') {
			snprintf(err, errlen, "list entry %zu has no list_id or fqdn_listname", i);
			json_decref(root);
			return -1;
		}
		/* it becomes LIST in the keys LIST TAB ADDRESS: a tab in it
		 * would make a member of another list */
		if (!members_list_address_ok(name)) {
			snprintf(err, errlen, "list entry %zu: fqdn_listname is no list address "
			    "(LIST@DOMAIN, at most %d bytes, no white space)", i, MEMBERS_ADDRESS_MAX);
			json_decref(root);
			return -1;
		}
		if (out->n == out->cap) {
			out->cap = out->cap ? out->cap * 2 : 16;
			out->v = xreallocarray(out->v, out->cap, sizeof(*out->v));
		}
		out->v[out->n].list_id = xstrdup(id);
		out->v[out->n].fqdn_listname = xstrdup(name);
		out->n++;
		(*got)++;
	}
	json_decref(root);
	return 0;
}

int mailman_json_roster(const char *body, size_t len, struct members_list *l,
    const char *role, char delimiter, size_t *total, size_t *got, char *err, size_t errlen)
{
	json_t *entries = NULL;
	json_t *root = collection(body, len, &entries, total, err, errlen);
	if (root == NULL)
		return -1;
	struct buf norm = BUF_INIT;
	size_t i;
	json_t *e;
	int r = 0;
	*got = 0;
	json_array_foreach(entries, i, e) {
		const char *email = json_is_object(e) ? string_member(e, "email") : NULL;
		if (email == NULL || members_normalise(email, delimiter, &norm) < 0) {
			snprintf(err, errlen, "%s entry %zu has no valid email", role, i);
			r = -1;
			break;
		}
		members_list_add(l, norm.data, role);
		(*got)++;
	}
	buf_free(&norm);
	json_decref(root);
	return r;
}
