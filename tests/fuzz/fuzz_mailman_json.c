/*
 * fuzz_mailman_json.c - libFuzzer target for the JSON of Mailman 3's REST
 * answers (src/lists/mailman_json.c), which comes over the network, with
 * property checks:
 *   - the body is read within its length (it is copied into a buffer of
 *     exactly that size, with no NUL after it);
 *   - an accepted page of GET /lists appended exactly `got` entries, as
 *     many as the answer's "entries" array has, each with a non-empty
 *     list_id and an fqdn_listname that can be the LIST of the members
 *     db's keys (LIST TAB ADDRESS, members_key.h): at most
 *     MEMBERS_ADDRESS_MAX (254) bytes, no white space or control
 *     characters, one '@' neither first nor last; and a second call
 *     appends the same again;
 *   - an accepted roster page added exactly `got` members, as many as the
 *     array has, each with the role asked for and an address that is
 *     NUL-terminated, at most MEMBERS_ADDRESS_MAX bytes, lower-case,
 *     without white space or control characters, with an '@' that is
 *     neither first nor last, and that normalises to itself;
 *   - a refused answer says why (a non-empty, NUL-terminated error);
 *   - no leak, accepted or not (ASan's leak check).
 *
 * Not part of the meson build.  Build and run by hand:
 *   clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Isrc \
 *     tests/fuzz/fuzz_mailman_json.c src/lists/mailman_json.c \
 *     src/lists/members_key.c src/lists/members_data.c src/lib/buf.c \
 *     src/lib/xalloc.c src/lib/log.c -ljansson -o /tmp/fuzz_mailman_json
 *   mkdir -p /tmp/corpus_mailman_json
 *   /tmp/fuzz_mailman_json -max_len=8192 -max_total_time=60 \
 *     /tmp/corpus_mailman_json tests/fuzz/seeds/mailman_json
 * The seeds are the real Mailman 3.3.8 answers of tests/unit/data/mailman3
 * (the .json files, recorded from a real Mailman), each twice: with a
 * first byte 0x00 (as GET /lists) and 0x03 (as a roster, delimiter '+').  The
 * first byte picks the mode: bit 0 clear = GET /lists, set = a roster;
 * bits 1-2 the recipient delimiter ('\0', '+', '-', '+'); bits 3-4 the
 * role.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lists/mailman_json.h"
#include "lists/members_key.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s\n", #c); abort(); } } while (0)

/* How many entries the answer's "entries" array has, read with jansson
 * directly: -1 when it is no object or the array is not there. */
static long count_entries(const char *body, size_t len)
{
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	long n = -1;
	if (root == NULL)
		return -1;
	json_t *e = json_object_get(root, "entries");
	if (json_is_array(e))
		n = (long)json_array_size(e);
	else if (e == NULL)
		n = 0;
	json_decref(root);
	return n;
}

static void check_error(const char *err, size_t errlen)
{
	CHECK(memchr(err, '\0', errlen) != NULL);
	CHECK(err[0] != '\0');
}

static void check_list_address(const char *a)
{
	CHECK(a != NULL);
	const char *at = strchr(a, '@');
	CHECK(strlen(a) <= MEMBERS_ADDRESS_MAX);
	CHECK(at != NULL && at != a && at[1] != '\0' && strchr(at + 1, '@') == NULL);
	for (const char *p = a; *p; p++)
		CHECK((unsigned char)*p > 0x20 && *p != 0x7f);
}

static void fuzz_lists(const char *body, size_t len)
{
	struct mailman_list_refs refs = { 0 };
	size_t total = 0, got = 12345;
	char err[256];

	memset(err, 'x', sizeof(err));
	if (mailman_json_lists(body, len, &refs, &total, &got, err, sizeof(err)) < 0) {
		check_error(err, sizeof(err));
		mailman_list_refs_free(&refs);
		return;
	}
	CHECK(refs.n == got && refs.n <= refs.cap);
	CHECK((long)got == count_entries(body, len));
	for (size_t i = 0; i < refs.n; i++) {
		CHECK(refs.v[i].list_id != NULL && refs.v[i].list_id[0] != '\0');
		check_list_address(refs.v[i].fqdn_listname);
	}
	size_t total2 = 0, got2 = 0;
	CHECK(mailman_json_lists(body, len, &refs, &total2, &got2, err, sizeof(err)) == 0);
	CHECK(total2 == total && got2 == got && refs.n == 2 * got);
	for (size_t i = 0; i < got; i++) {
		CHECK(strcmp(refs.v[i].list_id, refs.v[got + i].list_id) == 0);
		CHECK(strcmp(refs.v[i].fqdn_listname, refs.v[got + i].fqdn_listname) == 0);
	}
	mailman_list_refs_free(&refs);
	CHECK(refs.v == NULL && refs.n == 0);
}

static void check_address(const char *a, char delimiter)
{
	size_t len = strlen(a);
	const char *at = strrchr(a, '@');
	CHECK(len > 0 && len <= MEMBERS_ADDRESS_MAX);
	CHECK(at != NULL && at != a && at[1] != '\0');
	for (const char *p = a; *p; p++) {
		CHECK((unsigned char)*p > 0x20 && *p != 0x7f);
		CHECK(!(*p >= 'A' && *p <= 'Z'));
	}
	struct buf again = BUF_INIT;
	CHECK(members_normalise(a, delimiter, &again) == 0);
	CHECK(strcmp(again.data, a) == 0);
	buf_free(&again);
}

static void fuzz_roster(const char *body, size_t len, char delimiter, const char *role)
{
	struct members_data d;
	size_t total = 0, got = 12345;
	char err[256];

	members_data_init(&d);
	struct members_list *l = members_data_list(&d, "Devs@Lists.Example.TEST", 0);
	CHECK(strcmp(l->address, "devs@lists.example.test") == 0);
	memset(err, 'x', sizeof(err));
	if (mailman_json_roster(body, len, l, role, delimiter, &total, &got, err,
	    sizeof(err)) < 0) {
		check_error(err, sizeof(err));
		members_data_free(&d);
		return;
	}
	CHECK(l->n == got && l->n <= l->cap);
	CHECK((long)got == count_entries(body, len));
	for (size_t i = 0; i < l->n; i++) {
		CHECK(strcmp(l->roles[i], role) == 0);
		check_address(l->addrs[i], delimiter);
	}
	members_data_free(&d);
	CHECK(d.lists == NULL && d.n == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char delimiters[] = { '\0', '+', '-', '+' };
	static const char *const roles[] = { "member", "owner", "moderator", "member" };

	if (size == 0)
		return 0;
	uint8_t mode = data[0];
	size_t len = size - 1;
	/* exactly len bytes, not NUL-terminated: a read past them is caught */
	char *body = malloc(len ? len : 1);
	CHECK(body != NULL);
	memcpy(body, data + 1, len);
	if ((mode & 1) == 0)
		fuzz_lists(body, len);
	else
		fuzz_roster(body, len, delimiters[(mode >> 1) & 3], roles[(mode >> 3) & 3]);
	free(body);
	return 0;
}
