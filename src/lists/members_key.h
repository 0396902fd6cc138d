/*
 * members_key.h - how addresses of list members are compared and stored.
 *
 * An address is normalised before it is stored or looked up: lower-case,
 * and the +detail (from the recipient delimiter to the '@') removed.  The
 * `members` database (in state_dir/members.mdb for mailman3, in the main
 * environment for `members_source file`) holds, per list:
 *   key LIST                -> value "TIME COUNT" (decimal: when the
 *                              members were fetched, 0 for a file source
 *                              that never gets old; how many addresses)
 *   key LIST "\t" ADDRESS   -> value the role: member, owner, moderator
 */
#ifndef MP_MEMBERS_KEY_H
#define MP_MEMBERS_KEY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/buf.h"

#define MEMBERS_DB_NAME "members"
#define MEMBERS_STORE_FILE "members.mdb"

/* The longest list or member address (RFC 5321's 256-byte path less the
 * angle brackets): LIST TAB ADDRESS then fits an LMDB key (511 bytes). */
#define MEMBERS_ADDRESS_MAX 254

/* The normalised form of address in out (lower-case, +detail removed when
 * delimiter is not '\0').  0, or -1 when it is no address (no '@', empty
 * parts, white space or control characters, too long). */
int members_normalise(const char *address, char delimiter, struct buf *out);
/* 1 when list can be the LIST of the keys: one '@', neither first nor
 * last, no white space (a tab would make another list's member key) or
 * control characters, at most MEMBERS_ADDRESS_MAX bytes; else 0. */
int members_list_address_ok(const char *list);
/* Keys and the list record's value. */
void members_list_key(const char *list, struct buf *out);
void members_member_key(const char *list, const char *address, struct buf *out);
void members_list_value(time_t fetched, uint64_t count, struct buf *out);
/* 0, or -1 when the value is malformed. */
int members_list_value_parse(const void *p, size_t len, time_t *fetched, uint64_t *count);

#endif
