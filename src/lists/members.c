/*
 * members.c - the members check (members.h) over a members_reader.
 */
#include "lists/members.h"
#include "lists/members_key.h"
#include "lists/members_store.h"
#include "conf/config.h"
#include "db/db.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct members {
	const struct config *cfg;
	struct members_reader *reader;
};

struct members *members_open(const struct config *cfg, char *err, size_t errlen)
{
	char *path;
	switch (cfg->members_source) {
	case MEMBERS_FILE:
		path = xasprintf("%s/%s", cfg->db_dir, DB_CURRENT_LINK);
		break;
	case MEMBERS_MAILMAN3:
		path = xasprintf("%s/%s", cfg->state_dir, MEMBERS_STORE_FILE);
		break;
	default:
		snprintf(err, errlen, "members_source is none");
		return NULL;
	}
	struct members *m = xcalloc(1, sizeof(*m));
	m->cfg = cfg;
	m->reader = members_reader_new(path);
	free(path);
	return m;
}

void members_close(struct members *m)
{
	if (m == NULL)
		return;
	members_reader_free(m->reader);
	free(m);
}

/* The list's record: 1 and its time, 0 none, -1 unreadable (why). */
static int list_record(struct members *m, const char *list, time_t *fetched,
    char *why, size_t whylen)
{
	struct buf key = BUF_INIT;
	char *val = NULL, err[300] = "";
	size_t len;
	uint64_t count;

	members_list_key(list, &key);
	int r = members_reader_get(m->reader, key.data, key.len, &val, &len, err, sizeof(err));
	if (r < 0)
		snprintf(why, whylen, "the members cannot be read: %s", err);
	else if (r == 0)
		snprintf(why, whylen, "no members data for <%s>", key.data);
	else if (members_list_value_parse(val, len, fetched, &count) < 0) {
		snprintf(why, whylen, "malformed members record for <%s>", key.data);
		r = -1;
	}
	free(val);
	buf_free(&key);
	return r;
}

enum members_answer members_check(struct members *m, const char *list_address,
    const char *sender, char *why, size_t whylen)
{
	const struct config *cfg = m->cfg;
	time_t fetched;
	struct buf addr = BUF_INIT, key = BUF_INIT;
	char *val = NULL, err[300] = "";
	size_t len;
	enum members_answer a;

	snprintf(why, whylen, "?");
	if (list_record(m, list_address, &fetched, why, whylen) <= 0)
		return MEMBERS_UNKNOWN;
	time_t now = time(NULL);
	uint64_t max_age = (uint64_t)MEMBERS_STALE_INTERVALS * cfg->members_sync_interval;
	if (fetched != 0 && cfg->members_source == MEMBERS_MAILMAN3 && max_age > 0 &&
	    now > fetched && (uint64_t)(now - fetched) > max_age) {
		snprintf(why, whylen, "the members of <%s> were fetched %lld s ago, more than "
		    "%d x members_sync_interval", list_address, (long long)(now - fetched),
		    MEMBERS_STALE_INTERVALS);
		return MEMBERS_UNKNOWN;
	}
	if (sender == NULL || sender[0] == '\0') {
		snprintf(why, whylen, "the null sender is no member of <%s>", list_address);
		return MEMBERS_NOT_MEMBER;
	}
	if (members_normalise(sender, cfg->recipient_delimiter, &addr) < 0) {
		snprintf(why, whylen, "<%s> is no address a member could have", sender);
		buf_free(&addr);
		return MEMBERS_NOT_MEMBER;
	}
	members_member_key(list_address, addr.data, &key);
	int r = members_reader_get(m->reader, key.data, key.len, &val, &len, err, sizeof(err));
	if (r < 0) {
		snprintf(why, whylen, "the members cannot be read: %s", err);
		a = MEMBERS_UNKNOWN;
	} else if (r == 0) {
		snprintf(why, whylen, "<%s> is no member, owner or moderator of <%s>",
		    addr.data, list_address);
		a = MEMBERS_NOT_MEMBER;
	} else {
		snprintf(why, whylen, "<%s> is a%s %s of <%s>", addr.data,
		    strcmp(val, "owner") == 0 ? "n" : "", val, list_address);
		a = MEMBERS_IS_MEMBER;
	}
	free(val);
	buf_free(&addr);
	buf_free(&key);
	return a;
}
