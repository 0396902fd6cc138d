/*
 * members_source.c - parsing the `members` text source (members_source.h).
 */
#include "lists/members_source.h"
#include "lists/members_key.h"

#include <stdio.h>
#include <string.h>

void members_source_init(struct members_source *s, char delimiter)
{
	memset(s, 0, sizeof(*s));
	members_data_init(&s->data);
	s->delimiter = delimiter;
}

void members_source_free(struct members_source *s)
{
	members_data_free(&s->data);
	memset(s, 0, sizeof(*s));
}

/* Each word of text is an address for l; the first bad one is an error. */
static int add_addresses(struct members_source *s, struct members_list *l, char *text,
    char *err, size_t errlen)
{
	struct buf norm = BUF_INIT;
	int r = 0;
	for (char *save = NULL, *w = strtok_r(text, " \t", &save); w != NULL;
	     w = strtok_r(NULL, " \t", &save)) {
		if (members_normalise(w, s->delimiter, &norm) < 0) {
			snprintf(err, errlen, "\"%s\" is no address (LOCAL@DOMAIN)", w);
			r = -1;
			break;
		}
		members_list_add(l, norm.data, "member");
	}
	buf_free(&norm);
	return r;
}

int members_source_line(struct members_source *s, char *text, int indented,
    char *err, size_t errlen)
{
	if (indented) {
		if (s->cur == NULL) {
			snprintf(err, errlen, "an indented line must follow a LIST@DOMAIN line");
			return -1;
		}
		return add_addresses(s, s->cur, text, err, errlen);
	}
	s->cur = NULL;
	char *rest = text + strcspn(text, " \t");
	if (*rest != '\0')
		*rest++ = '\0';
	if (!members_list_address_ok(text)) {
		snprintf(err, errlen, "\"%.*s\" is no list address (LIST@DOMAIN, at most %d bytes)",
		    MEMBERS_ADDRESS_MAX + 10, text, MEMBERS_ADDRESS_MAX);
		return -1;
	}
	if (members_data_find(&s->data, text) != NULL) {
		snprintf(err, errlen, "the list %s is named twice (indent lines to go on)", text);
		return -1;
	}
	s->cur = members_data_list(&s->data, text, 0);
	return add_addresses(s, s->cur, rest, err, errlen);
}
