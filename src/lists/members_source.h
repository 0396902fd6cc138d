/*
 * members_source.h - the parser of the `members` text source (for
 * `members_source file`), one line at a time; the compiler (src/db)
 * reads the file and stores the result.
 *
 * Format (mailprocd.rules(5)): a line `LIST@DOMAIN  ADDRESS...` starts a
 * list and names some of its members; indented lines that follow name
 * more (`ADDRESS...`).  A list may have no address at all (then no one may
 * post).  Addresses are stored normalised (lower-case, +detail removed).
 */
#ifndef MP_MEMBERS_SOURCE_H
#define MP_MEMBERS_SOURCE_H

#include <stddef.h>

#include "lists/members_data.h"

struct members_source {
	struct members_data data;
	struct members_list *cur;       /* the list indented lines add to */
	char delimiter;
};

void members_source_init(struct members_source *s, char delimiter);
void members_source_free(struct members_source *s);
/* One line (comments and trailing space removed, text modified).  0, or
 * -1 with a message in err (the line is skipped; parsing may go on). */
int members_source_line(struct members_source *s, char *text, int indented,
    char *err, size_t errlen);

#endif
