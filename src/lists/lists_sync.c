/*
 * lists_sync.c - fetching the lists and their rosters from Mailman 3
 * (lists_sync.h): GET /lists, then per list GET /lists/ID/roster/ROLE for
 * member, owner and moderator, each page by page (count, page).
 */
#include "lists/lists_sync.h"
#include "lists/mailman_json.h"
#include "lists/mailman_rest.h"
#include "lists/members_store.h"
#include "conf/config.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const roster_roles[] = { "member", "owner", "moderator" };

/* The pages of one collection; parse gets each body.  0, or -1. */
typedef int (*page_fn)(void *arg, const struct buf *body, size_t *total, size_t *got,
    char *err, size_t errlen);

static int page_size(void)
{
	const char *s = getenv("MAILPROCD_LISTS_PAGE_SIZE");
	char *end;
	long n = s != NULL ? strtol(s, &end, 10) : 0;
	if (s == NULL || *s == '\0' || *end != '\0' || n < 1 || n > LISTS_SYNC_PAGE)
		return LISTS_SYNC_PAGE;
	return (int)n;
}

static int get_collection(struct mailman_rest *rest, const char *path, page_fn parse,
    void *arg, char *err, size_t errlen)
{
	struct buf body = BUF_INIT;
	size_t seen = 0, total = 0, got;
	int r = 0;
	for (unsigned page = 1;; page++) {
		char *p = xasprintf("%s?count=%d&page=%u", path, page_size(), page);
		r = mailman_rest_get(rest, p, &body, err, errlen);
		free(p);
		if (r == 0 && (r = parse(arg, &body, &total, &got, err, errlen)) < 0) {
			char tmp[400];
			snprintf(tmp, sizeof(tmp), "%s", err);
			snprintf(err, errlen, "GET %s page %u: %s", path, page, tmp);
		}
		if (r < 0)
			break;
		seen += got;
		if (got == 0 || seen >= total)
			break;
	}
	buf_free(&body);
	return r;
}

static int lists_page(void *arg, const struct buf *body, size_t *total, size_t *got,
    char *err, size_t errlen)
{
	return mailman_json_lists(body->data, body->len, arg, total, got, err, errlen);
}

struct roster_arg {
	struct members_list *list;
	const char *role;
	char delimiter;
};

static int roster_page(void *arg, const struct buf *body, size_t *total, size_t *got,
    char *err, size_t errlen)
{
	struct roster_arg *a = arg;
	return mailman_json_roster(body->data, body->len, a->list, a->role, a->delimiter,
	    total, got, err, errlen);
}

int lists_sync_fetch(const struct config *cfg, struct members_data *out,
    const volatile sig_atomic_t *stop, char *err, size_t errlen)
{
	if (cfg->members_source != MEMBERS_MAILMAN3 || cfg->members_url == NULL) {
		snprintf(err, errlen, "members_source is not mailman3");
		return -1;
	}
	struct mailman_rest *rest = mailman_rest_new(cfg->members_url, cfg->members_credentials,
	    stop);
	struct mailman_list_refs refs = { 0 };
	int r = get_collection(rest, "/lists", lists_page, &refs, err, errlen);
	for (size_t i = 0; r == 0 && i < refs.n; i++) {
		struct members_list *l = members_data_list(out, refs.v[i].fqdn_listname, 0);
		char *id = mailman_rest_escape(refs.v[i].list_id);
		for (size_t k = 0; r == 0 && k < sizeof(roster_roles) / sizeof(*roster_roles); k++) {
			struct roster_arg a = { l, roster_roles[k], cfg->recipient_delimiter };
			char *path = xasprintf("/lists/%s/roster/%s", id, roster_roles[k]);
			r = get_collection(rest, path, roster_page, &a, err, errlen);
			free(path);
		}
		free(id);
		l->fetched = time(NULL);
	}
	mailman_list_refs_free(&refs);
	mailman_rest_free(rest);
	return r;
}

int lists_sync_run(const struct config *cfg, struct members_data *out,
    const volatile sig_atomic_t *stop, char *err, size_t errlen)
{
	struct members_data d;
	members_data_init(&d);
	int r = lists_sync_fetch(cfg, &d, stop, err, errlen);
	if (r == 0)
		r = members_store_write(cfg->state_dir, &d, err, errlen);
	if (r == 0 && out != NULL) {
		*out = d;
		return 0;
	}
	members_data_free(&d);
	return r;
}
