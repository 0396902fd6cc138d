/*
 * db_record.c - encoding of uid records, gid values and list records.
 *
 * uid record: 'A' version(1) flags(u8: 1 virtual) uid(u32) gid(u32)
 *             namelen(u32) name homelen(u32) home      (big-endian)
 * gid value:  gid(u32)
 * list record: 'L' version(1) flags(u8: 1 members-only)
 *             managerlen(u32) manager destlen(u32) dest
 */
#include "db/db_record.h"
#include "lib/xalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ACCOUNT_MAGIC 'A'
#define ACCOUNT_VERSION 1
#define FLAG_VIRTUAL 1
#define LIST_MAGIC 'L'
#define LIST_VERSION 1
#define FLAG_MEMBERS_ONLY 1
#define MAX_FIELD 4096

static void put_u32(struct buf *b, uint32_t v)
{
	unsigned char c[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
		(unsigned char)(v >> 8), (unsigned char)v };
	buf_append(b, c, 4);
}

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_string(struct buf *b, const char *s)
{
	size_t len = strlen(s);
	put_u32(b, (uint32_t)len);
	buf_append(b, s, len);
}

void db_account_encode(const struct db_account *a, struct buf *out)
{
	unsigned char head[3] = { ACCOUNT_MAGIC, ACCOUNT_VERSION,
		a->is_virtual ? FLAG_VIRTUAL : 0 };
	buf_append(out, head, sizeof(head));
	put_u32(out, (uint32_t)a->uid);
	put_u32(out, (uint32_t)a->gid);
	put_string(out, a->name);
	put_string(out, a->home);
}

/* A length-prefixed string without NUL bytes; advances *p and *left. */
static char *get_string(const unsigned char **p, size_t *left)
{
	if (*left < 4)
		return NULL;
	uint32_t len = get_u32(*p);
	if (len > MAX_FIELD || len > *left - 4 || memchr(*p + 4, '\0', len) != NULL)
		return NULL;
	char *s = xstrndup((const char *)*p + 4, len);
	*p += 4 + len;
	*left -= 4 + (size_t)len;
	return s;
}

int db_account_decode(const void *blob, size_t len, struct db_account *out)
{
	const unsigned char *p = blob;
	size_t left = len;

	memset(out, 0, sizeof(*out));
	if (blob == NULL || left < 11 || p[0] != ACCOUNT_MAGIC || p[1] != ACCOUNT_VERSION ||
	    (p[2] & ~FLAG_VIRTUAL) != 0)
		return -1;
	out->is_virtual = (p[2] & FLAG_VIRTUAL) != 0;
	out->uid = (uid_t)get_u32(p + 3);
	out->gid = (gid_t)get_u32(p + 7);
	p += 11;
	left -= 11;
	out->name = get_string(&p, &left);
	if (out->name != NULL)
		out->home = get_string(&p, &left);
	if (out->name == NULL || out->home == NULL || out->name[0] == '\0' || left != 0) {
		db_account_free(out);
		return -1;
	}
	return 0;
}

void db_account_free(struct db_account *a)
{
	free(a->name);
	free(a->home);
	memset(a, 0, sizeof(*a));
}

void db_gid_encode(gid_t gid, unsigned char out[DB_GID_LEN])
{
	uint32_t v = (uint32_t)gid;
	out[0] = (unsigned char)(v >> 24);
	out[1] = (unsigned char)(v >> 16);
	out[2] = (unsigned char)(v >> 8);
	out[3] = (unsigned char)v;
}

int db_gid_decode(const void *p, size_t len, gid_t *out)
{
	if (p == NULL || len != DB_GID_LEN)
		return -1;
	*out = (gid_t)get_u32(p);
	return 0;
}

void db_list_encode(const struct db_list *l, struct buf *out)
{
	unsigned char head[3] = { LIST_MAGIC, LIST_VERSION,
		l->members_only ? FLAG_MEMBERS_ONLY : 0 };
	buf_append(out, head, sizeof(head));
	put_string(out, l->manager);
	put_string(out, l->dest);
}

int db_list_decode(const void *blob, size_t len, struct db_list *out)
{
	const unsigned char *p = blob;
	size_t left = len;

	memset(out, 0, sizeof(*out));
	if (blob == NULL || left < 3 || p[0] != LIST_MAGIC || p[1] != LIST_VERSION ||
	    (p[2] & ~FLAG_MEMBERS_ONLY) != 0)
		return -1;
	out->members_only = (p[2] & FLAG_MEMBERS_ONLY) != 0;
	p += 3;
	left -= 3;
	out->manager = get_string(&p, &left);
	if (out->manager != NULL)
		out->dest = get_string(&p, &left);
	if (out->manager == NULL || out->dest == NULL || out->dest[0] == '\0' || left != 0) {
		db_list_free(out);
		return -1;
	}
	return 0;
}

void db_list_free(struct db_list *l)
{
	free(l->manager);
	free(l->dest);
	memset(l, 0, sizeof(*l));
}
