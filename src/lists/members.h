/*
 * members.h - is a sender a member of a list?  The check before the queue
 * for members-only lists (the receiver at RCPT, the policy service).
 *
 * members_source file: the `members` db of the main environment
 * (db_dir/current.mdb, from the `members` source); mailman3:
 * state_dir/members.mdb, which "mailprocd: lists sync" and `mailprocctl
 * lists sync` write.  Either is followed to a new file at the next check.
 */
#ifndef MP_MEMBERS_H
#define MP_MEMBERS_H

#include <stddef.h>

struct config;

enum members_answer { MEMBERS_IS_MEMBER, MEMBERS_NOT_MEMBER, MEMBERS_UNKNOWN };
struct members;

/* Open per the config (file: the main db; mailman3: state_dir/members.mdb).
 * NULL with err when members_source is none. */
struct members *members_open(const struct config *cfg, char *err, size_t errlen);
/* Is sender (any case, +detail ignored on both sides) a member, owner or
 * moderator of list_address?  MEMBERS_UNKNOWN when there is no data for
 * the list, it is older than 10 x members_sync_interval, or it cannot be
 * read: the caller lets the mail through and logs why (in why).  The null
 * sender is no member.  cfg is read at each check (a reload may change
 * the delimiter or the interval). */
enum members_answer members_check(struct members *m, const char *list_address,
    const char *sender, char *why, size_t whylen);
void members_close(struct members *m);

/* Data older than this many sync intervals is not trusted. */
#define MEMBERS_STALE_INTERVALS 10

#endif
