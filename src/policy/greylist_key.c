/*
 * greylist_key.c - the pure parts of greylisting: client networks, keys,
 * the records' text form and the decision.  No I/O here, so that the
 * LMDB store, the Redis store and the dry run answer alike.
 */
#include "policy/greylist_key.h"
#include "lib/buf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void greylist_client_net(const char *client_address, struct buf *out)
{
	const char *a = client_address;
	unsigned char in6[16];
	struct in_addr in4;
	char text[INET6_ADDRSTRLEN];

	if (strncasecmp(a, "ipv6:", 5) == 0)
		a += 5;
	if (inet_pton(AF_INET, a, &in4) == 1) {
		in4.s_addr &= htonl(0xffffff00u);
		inet_ntop(AF_INET, &in4, text, sizeof(text));
		buf_printf(out, "%s/24", text);
		return;
	}
	if (inet_pton(AF_INET6, a, in6) == 1) {
		static const unsigned char mapped[12] = { 0,0,0,0,0,0,0,0,0,0,0xff,0xff };
		if (memcmp(in6, mapped, sizeof(mapped)) == 0) {
			memcpy(&in4.s_addr, in6 + 12, 4);
			in4.s_addr &= htonl(0xffffff00u);
			inet_ntop(AF_INET, &in4, text, sizeof(text));
			buf_printf(out, "%s/24", text);
			return;
		}
		memset(in6 + 8, 0, 8);
		inet_ntop(AF_INET6, in6, text, sizeof(text));
		buf_printf(out, "%s/64", text);
		return;
	}
	buf_puts(out, client_address);
}

static void put_lower(struct buf *b, const char *s)
{
	for (; *s != '\0'; s++)
		buf_putc(b, (char)tolower((unsigned char)*s));
}

static uint64_t fnv1a(const char *s, size_t len, uint64_t h)
{
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Keep long keys under GREYLIST_KEY_MAX: a prefix of the key and 128 bits
 * of hashes of all of it. */
static void bound_key(struct buf *k)
{
	if (k->len <= GREYLIST_KEY_MAX)
		return;
	uint64_t h1 = fnv1a(k->data, k->len, 0xcbf29ce484222325ULL);
	uint64_t h2 = fnv1a(k->data, k->len, 0x84222325cbf29ce4ULL);
	k->len = GREYLIST_KEY_MAX - 34;
	k->data[k->len] = '\0';
	buf_printf(k, "#%016" PRIx64 "%016" PRIx64, h1, h2);
}

/* Fields are joined by NUL bytes: no address holds one, so no two
 * triplets share a key. */
void greylist_keys(const char *client_address, const char *sender, const char *recipient,
    struct buf *triplet_key, struct buf *client_key)
{
	struct buf net = BUF_INIT;
	greylist_client_net(client_address, &net);

	buf_puts(triplet_key, GREYLIST_TRIPLET_PREFIX);
	buf_append(triplet_key, net.data, net.len);
	buf_putc(triplet_key, '\0');
	put_lower(triplet_key, sender);
	buf_putc(triplet_key, '\0');
	put_lower(triplet_key, recipient);
	bound_key(triplet_key);

	buf_puts(client_key, GREYLIST_CLIENT_PREFIX);
	buf_append(client_key, net.data, net.len);
	bound_key(client_key);
	buf_free(&net);
}

void greylist_triplet_encode(const struct greylist_triplet *t, struct buf *out)
{
	buf_printf(out, "%lld %lld %d", (long long)t->first, (long long)t->last, t->passed ? 1 : 0);
}

void greylist_client_encode(const struct greylist_client *c, struct buf *out)
{
	buf_printf(out, "%ld %lld", c->count, (long long)c->last);
}

/* n decimal numbers separated by single spaces, nothing else. */
static int decode_numbers(const void *data, size_t len, long long *v, int n)
{
	char text[96];
	char *p = text, *end;

	if (len == 0 || len >= sizeof(text) || memchr(data, '\0', len) != NULL)
		return -1;
	memcpy(text, data, len);
	text[len] = '\0';
	for (int i = 0; i < n; i++) {
		if (i > 0 && *p++ != ' ')
			return -1;
		if (!isdigit((unsigned char)*p))
			return -1;
		errno = 0;
		v[i] = strtoll(p, &end, 10);
		if (errno != 0)
			return -1;
		p = end;
	}
	return *p == '\0' ? 0 : -1;
}

int greylist_triplet_decode(const void *data, size_t len, struct greylist_triplet *t)
{
	long long v[3];
	memset(t, 0, sizeof(*t));
	if (decode_numbers(data, len, v, 3) < 0 || v[2] > 1)
		return -1;
	t->present = 1;
	t->first = (time_t)v[0];
	t->last = (time_t)v[1];
	t->passed = (int)v[2];
	return 0;
}

int greylist_client_decode(const void *data, size_t len, struct greylist_client *c)
{
	long long v[2];
	memset(c, 0, sizeof(*c));
	if (decode_numbers(data, len, v, 2) < 0 || v[0] > 1000000000LL)
		return -1;
	c->present = 1;
	c->count = (long)v[0];
	c->last = (time_t)v[1];
	return 0;
}

int greylist_triplet_expired(const struct greylist_params *p, time_t now,
    const struct greylist_triplet *t)
{
	time_t since = t->passed ? t->last : t->first;
	return now - since > p->max_age;
}

int greylist_client_expired(const struct greylist_params *p, time_t now,
    const struct greylist_client *c)
{
	return now - c->last > p->max_age;
}

static long ttl_from(const struct greylist_params *p, time_t now, time_t since)
{
	long left = (long)(since + p->max_age - now) + 1;
	return left < 1 ? 1 : left;
}

long greylist_triplet_ttl(const struct greylist_params *p, time_t now,
    const struct greylist_triplet *t)
{
	return ttl_from(p, now, t->passed ? t->last : t->first);
}

long greylist_client_ttl(const struct greylist_params *p, time_t now,
    const struct greylist_client *c)
{
	return ttl_from(p, now, c->last);
}

int greylist_decide(const struct greylist_params *p, time_t now, struct greylist_client *c,
    struct greylist_triplet *t, struct greylist_answer *out)
{
	memset(out, 0, sizeof(*out));
	if (c->present && greylist_client_expired(p, now, c))
		memset(c, 0, sizeof(*c));
	if (t->present && greylist_triplet_expired(p, now, t))
		memset(t, 0, sizeof(*t));

	if (p->auto_allow > 0 && c->present && c->count >= p->auto_allow) {
		c->last = now;
		out->verdict = GREYLIST_PASS;
		out->auto_allowed = 1;
		return GREYLIST_WRITE_CLIENT;
	}
	if (!t->present) {
		t->present = 1;
		t->first = t->last = now;
		t->passed = 0;
		if (p->delay > 0) {
			out->verdict = GREYLIST_DEFER;
			out->retry_in = p->delay;
			return GREYLIST_WRITE_TRIPLET;
		}
	}
	if (!t->passed) {
		long waited = now > t->first ? (long)(now - t->first) : 0;
		if (waited < p->delay) {
			out->verdict = GREYLIST_DEFER;
			out->retry_in = p->delay - waited;
			return 0;
		}
		t->passed = 1;
		if (!c->present) {
			c->present = 1;
			c->count = 0;
		}
		c->count++;
	}
	t->last = now;
	out->verdict = GREYLIST_PASS;
	if (!c->present)
		return GREYLIST_WRITE_TRIPLET;
	c->last = now;
	return GREYLIST_WRITE_TRIPLET | GREYLIST_WRITE_CLIENT;
}
