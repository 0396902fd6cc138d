/*
 * qfile.c - reading a queue file, and appending per-recipient state records.
 *
 * The reader uses pread(2) only (the descriptor may be shared with another
 * process), through a 64 KiB window so that a typical file costs two reads:
 * one for the envelope, one for 'E' and the state records.  The message is
 * not read: only its offset and size are noted.  Every length is checked
 * against the file size and a per-record cap before anything is allocated.
 *
 * The committed part (up to 'E') must be complete and well formed, or the
 * file is refused with EBADMSG.  After 'E' only 'D', 'F', 'P', 'W' and 'Z' may follow; a
 * record cut short by the end of the file (a crash while appending) is
 * ignored, and so is a tail of NUL bytes (a crash on a file system that
 * extended the file before writing the data).
 */
#include "queue/qfile.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define QR_HDR 5                        /* type byte + u32 length */
#define QR_WINDOW (QFILE_MAX_FIELD + QR_HDR)
#define QR_MAX_STATE 4096               /* payload of a 'D', 'F', 'P', 'W' or 'Z' record */
#define QR_MAX_INSTR 100000             /* an instruction number in a 'P' list */

/* ---- reading through a window of the file ---- */

struct qreader {
	int fd;
	off_t size;
	off_t win_off;
	size_t win_len;
	unsigned char *win;
};

/* pread exactly len bytes; a file that shrank under us is malformed. */
static int pread_exact(int fd, unsigned char *p, size_t len, off_t off)
{
	while (len > 0) {
		ssize_t n = pread(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EBADMSG;
			return -1;
		}
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Point at len (<= QR_WINDOW) bytes at off, which the caller checked are
 * inside the file.  Valid until the next call. */
static const unsigned char *qr_view(struct qreader *r, off_t off, size_t len)
{
	if (len > QR_WINDOW)
		panic("qr_view: %zu bytes do not fit the window", len);
	if (off >= r->win_off && (size_t)(off - r->win_off) + len <= r->win_len)
		return r->win + (off - r->win_off);
	off_t left = r->size - off;
	size_t want = left < QR_WINDOW ? (size_t)left : QR_WINDOW;
	if (pread_exact(r->fd, r->win, want, off) < 0) {
		r->win_len = 0;
		return NULL;
	}
	r->win_off = off;
	r->win_len = want;
	return r->win;
}

static uint32_t get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

struct qrec {
	char type;
	uint32_t len;
	off_t payload;                  /* offset of the payload */
};

/* The header at pos; 1 if present, 0 if the file ends inside it. */
static int qr_header(struct qreader *r, off_t pos, struct qrec *rec)
{
	if (r->size - pos < QR_HDR)
		return 0;
	const unsigned char *h = qr_view(r, pos, QR_HDR);
	if (h == NULL)
		return -1;
	rec->type = (char)h[0];
	rec->len = get_be32(h + 1);
	rec->payload = pos + QR_HDR;
	return 1;
}

static int bad(void)
{
	errno = EBADMSG;
	return -1;
}

/* ---- the committed part ---- */

enum { SEEN_V = 1, SEEN_I = 2, SEEN_T = 4, SEEN_C = 8, SEEN_S = 16,
       SEEN_B = 32, SEEN_M = 64, SEEN_X = 128 };

struct qparse {
	struct qfile *q;
	unsigned seen;
	size_t rcpt_cap;
};

/* Decimal number of at most max; advances *p.  Needs at least one digit. */
static int parse_dec(const char **p, const char *end, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	const char *s = *p;

	if (s == end || *s < '0' || *s > '9')
		return -1;
	for (; s < end && *s >= '0' && *s <= '9'; s++) {
		if (v > (max - (uint64_t)(*s - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*p = s;
	*out = v;
	return 0;
}

/* "seconds.microseconds" with exactly six digits after the dot. */
static int parse_arrival(struct qfile *q, const char *s, size_t len)
{
	const char *end = s + len;
	uint64_t sec, usec;

	if (parse_dec(&s, end, INT64_MAX, &sec) < 0 || s == end || *s++ != '.' ||
	    end - s != 6 || parse_dec(&s, end, 999999, &usec) < 0 || s != end)
		return -1;
	q->arrival_sec = (int64_t)sec;
	q->arrival_usec = (int64_t)usec;
	return 0;
}

/* "helo\0address\0protocol" */
static int parse_client(struct qfile *q, const char *s, size_t len)
{
	const char *end = s + len;
	const char *nul1 = memchr(s, '\0', len);
	const char *nul2 = nul1 ? memchr(nul1 + 1, '\0', (size_t)(end - nul1 - 1)) : NULL;

	if (nul2 == NULL || memchr(nul2 + 1, '\0', (size_t)(end - nul2 - 1)) != NULL)
		return -1;
	q->helo = xstrdup(s);
	q->client_addr = xstrdup(nul1 + 1);
	q->protocol = xstrndup(nul2 + 1, (size_t)(end - nul2 - 1));
	return 0;
}

static int add_rcpt(struct qparse *p, const char *s, size_t len)
{
	struct qfile *q = p->q;

	if (len == 0 || q->nrcpt >= QFILE_MAX_RCPTS)
		return -1;
	if (q->nrcpt == p->rcpt_cap) {
		p->rcpt_cap = p->rcpt_cap ? 2 * p->rcpt_cap : 8;
		q->rcpt = xreallocarray(q->rcpt, p->rcpt_cap, sizeof(*q->rcpt));
	}
	struct qrcpt *r = &q->rcpt[q->nrcpt++];
	memset(r, 0, sizeof(*r));
	r->address = xstrndup(s, len);
	r->state = RCPT_PENDING;
	return 0;
}

/* A record type that may appear once: 0 and mark it, -1 if seen before. */
static int once(struct qparse *p, unsigned bit)
{
	if (p->seen & bit)
		return -1;
	p->seen |= bit;
	return 0;
}

static int apply_envelope(struct qparse *p, char type, const char *s, size_t len)
{
	struct qfile *q = p->q;
	int has_nul = memchr(s, '\0', len) != NULL;

	switch (type) {
	case 'I':
		if (once(p, SEEN_I) < 0 || len >= QID_MAX || has_nul)
			return -1;
		memcpy(q->qid, s, len);
		q->qid[len] = '\0';
		return qid_valid(q->qid) ? 0 : -1;
	case 'T':
		return once(p, SEEN_T) < 0 ? -1 : parse_arrival(q, s, len);
	case 'C':
		return once(p, SEEN_C) < 0 ? -1 : parse_client(q, s, len);
	case 'S':
		if (once(p, SEEN_S) < 0 || has_nul)
			return -1;
		q->sender = xstrndup(s, len);
		return 0;
	case 'R':
		return has_nul ? -1 : add_rcpt(p, s, len);
	case 'B':
		if (once(p, SEEN_B) < 0)
			return -1;
		if (len == 8 && memcmp(s, "8BITMIME", 8) == 0)
			q->eightbit = 1;
		else if (!(len == 4 && memcmp(s, "7BIT", 4) == 0))
			return -1;
		return 0;
	case 'X':
		if (once(p, SEEN_X) < 0 || len != 8 || memcmp(s, "outbound", 8) != 0)
			return -1;
		q->outbound = 1;
		return 0;
	default:
		return -1;
	}
}

/* One record of the committed part; *done set at 'E'. */
static int read_committed_record(struct qreader *r, struct qparse *p,
    off_t *pos, int *done)
{
	struct qrec rec;
	int h = qr_header(r, *pos, &rec);

	if (h <= 0)
		return h < 0 ? -1 : bad();      /* no 'E': uncommitted */
	if (rec.len > r->size - rec.payload)
		return bad();
	if ((*pos == 0) != (rec.type == 'V'))
		return bad();
	if ((p->seen & SEEN_M) && rec.type != 'E')
		return bad();
	*pos = rec.payload + rec.len;
	switch (rec.type) {
	case 'M':
		p->seen |= SEEN_M;
		p->q->msg_offset = rec.payload;
		p->q->msg_size = rec.len;
		return 0;
	case 'E':
		*done = 1;
		return rec.len == 0 && (p->seen & SEEN_M) ? 0 : bad();
	case 'V':
		if (rec.len != 4)
			return bad();
		break;
	default:
		if (rec.len > QFILE_MAX_FIELD)
			return bad();
		break;
	}
	const unsigned char *s = qr_view(r, rec.payload, rec.len);
	if (s == NULL)
		return -1;
	if (rec.type == 'V')
		return memcmp(s, "MPQ1", 4) == 0 ? 0 : bad();
	return apply_envelope(p, rec.type, (const char *)s, rec.len) < 0 ? bad() : 0;
}

/* ---- the state records after 'E' ---- */

static int parse_status(const char *s, size_t len, enum rcpt_state *out)
{
	static const struct { const char *name; enum rcpt_state state; } names[] = {
		{ "sent", RCPT_SENT }, { "bounced", RCPT_BOUNCED },
		{ "expired", RCPT_EXPIRED }, { "refused", RCPT_REFUSED },
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i].name) == len && memcmp(names[i].name, s, len) == 0) {
			*out = names[i].state;
			return 0;
		}
	return -1;
}

/* The detail after the fields: nothing, or ' ' and text without NUL/CR/LF. */
static int parse_detail(const char *s, const char *end, char **out)
{
	if (s == end) {
		*out = xstrdup("");
		return 0;
	}
	if (*s++ != ' ')
		return -1;
	for (const char *c = s; c < end; c++)
		if (*c == '\0' || *c == '\r' || *c == '\n')
			return -1;
	*out = xstrndup(s, (size_t)(end - s));
	return 0;
}

/* 'D' "index status detail" or 'F' "index unixtime detail". */
static int apply_state(struct qfile *q, char type, const char *s, size_t len)
{
	const char *end = s + len;
	uint64_t index, when = 0;
	enum rcpt_state state = RCPT_PENDING;
	char *detail;

	if (parse_dec(&s, end, QFILE_MAX_RCPTS, &index) < 0 || index >= q->nrcpt ||
	    s == end || *s++ != ' ')
		return -1;
	if (type == 'D') {
		const char *word = s;
		while (s < end && *s != ' ')
			s++;
		if (parse_status(word, (size_t)(s - word), &state) < 0)
			return -1;
	} else if (parse_dec(&s, end, INT64_MAX, &when) < 0) {
		return -1;
	}
	if (parse_detail(s, end, &detail) < 0)
		return -1;
	struct qrcpt *r = &q->rcpt[index];
	if (type == 'D') {
		r->state = state;
	} else {
		r->attempts++;
		r->last_attempt = (int64_t)when;
	}
	free(r->last_error);
	r->last_error = detail;
	return 0;
}

/* 'W' "unixtime": the delay warning was queued then (the last one counts);
 * 'Z' "unixtime": the message was finished then. */
static int apply_message_state(struct qfile *q, char type, const char *s, size_t len)
{
	const char *end = s + len;
	uint64_t when;

	if (parse_dec(&s, end, INT64_MAX, &when) < 0 || s != end || when == 0)
		return -1;
	if (type == 'W')
		q->warned = (int64_t)when;
	else
		q->finished = (int64_t)when;
	return 0;
}

/* The numbers of a list "N,M,..." (at least one), ascending and without
 * repeats, added to the n in v (already so); -1 when malformed. */
static int list_merge(const char *s, const char *end, uint64_t **v, size_t *n)
{
	for (;;) {
		uint64_t x;
		size_t k = 0;
		if (parse_dec(&s, end, QR_MAX_INSTR, &x) < 0)
			return -1;
		while (k < *n && (*v)[k] < x)
			k++;
		if (k == *n || (*v)[k] != x) {
			*v = xreallocarray(*v, *n + 1, sizeof(**v));
			memmove(*v + k + 1, *v + k, (*n - k) * sizeof(**v));
			(*v)[k] = x;
			(*n)++;
		}
		if (s == end)
			return 0;
		if (*s++ != ',')
			return -1;
	}
}

int qfile_done_union(char **done, const char *list)
{
	uint64_t *v = NULL;
	size_t n = 0, before;
	int changed;

	if ((*done != NULL && list_merge(*done, *done + strlen(*done), &v, &n) < 0) ||
	    (before = n, list_merge(list, list + strlen(list), &v, &n) < 0)) {
		free(v);
		errno = EINVAL;
		return -1;
	}
	changed = n != before || *done == NULL;
	if (changed) {
		size_t cap = n * 21 + 1, len = 0;
		char *out = xmalloc(cap);
		out[0] = '\0';
		for (size_t i = 0; i < n; i++)
			len += (size_t)snprintf(out + len, cap - len, "%s%llu", i ? "," : "",
			    (unsigned long long)v[i]);
		free(*done);
		*done = out;
	}
	free(v);
	return changed;
}

int qfile_list_has(const char *list, unsigned long n)
{
	while (*list) {
		char *end;
		unsigned long x = strtoul(list, &end, 10);
		if (end == list)
			return 0;
		if (x == n)
			return 1;
		list = *end == ',' ? end + 1 : end;
	}
	return 0;
}

/* 'P' "index N,M,...": those instructions of the recipient delivered. */
static int apply_part_done(struct qfile *q, const char *s, size_t len)
{
	const char *end = s + len;
	uint64_t index;

	uint64_t version = 0;

	if (parse_dec(&s, end, QFILE_MAX_RCPTS, &index) < 0 || index >= q->nrcpt ||
	    s == end || *s++ != ' ')
		return -1;
	for (int i = 0; i < 16; i++, s++) {
		if (s == end || !((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return -1;
		version = version << 4 | (uint64_t)(*s <= '9' ? *s - '0' : *s - 'a' + 10);
	}
	if (s == end || *s++ != ' ')
		return -1;
	char *list = xstrndup(s, (size_t)(end - s));
	int r = strlen(list) == (size_t)(end - s) ?
	    qfile_done_merge(&q->rcpt[index], version, list) : -1;
	free(list);
	return r < 0 ? -1 : 0;
}

uint64_t qfile_rules_version(const void *blob, size_t len)
{
	const unsigned char *p = blob;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

int qfile_done_merge(struct qrcpt *r, uint64_t version, const char *list)
{
	if (r->done != NULL && r->done_version != version) {
		/* numbers in another entry: this list replaces them */
		char *mine = NULL;
		if (qfile_done_union(&mine, list) < 0)
			return -1;
		free(r->done);
		r->done = mine;
		r->done_version = version;
		return 1;
	}
	int changed = qfile_done_union(&r->done, list);
	if (changed >= 0)
		r->done_version = version;
	return changed;
}

/* Is everything from pos to the end of the file NUL (a short run)? */
static int zero_tail(struct qreader *r, off_t pos)
{
	if (r->size - pos > QR_MAX_STATE + QR_HDR)
		return 0;
	size_t n = (size_t)(r->size - pos);
	const unsigned char *s = qr_view(r, pos, n);
	if (s == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (s[i] != 0)
			return 0;
	return 1;
}

/* One state record; *stop set at the end of the file or a torn tail. */
static int read_state_record(struct qreader *r, struct qfile *q, off_t *pos, int *stop)
{
	struct qrec rec;
	int h;

	if (*pos == r->size) {
		*stop = 1;
		return 0;
	}
	const unsigned char *t = qr_view(r, *pos, 1);
	if (t == NULL)
		return -1;
	if (t[0] == 0) {
		h = zero_tail(r, *pos);
		*stop = h > 0;
		return h > 0 ? 0 : h < 0 ? -1 : bad();
	}
	if (t[0] != 'D' && t[0] != 'F' && t[0] != 'P' && t[0] != 'W' && t[0] != 'Z')
		return bad();
	if ((h = qr_header(r, *pos, &rec)) <= 0) {
		*stop = 1;                      /* torn inside the header */
		return h;
	}
	if (rec.len > QR_MAX_STATE)
		return bad();
	if (rec.len > r->size - rec.payload) {
		*stop = 1;                      /* torn inside the payload */
		return 0;
	}
	const unsigned char *s = qr_view(r, rec.payload, rec.len);
	if (s == NULL)
		return -1;
	if ((rec.type == 'W' || rec.type == 'Z' ?
	    apply_message_state(q, (char)rec.type, (const char *)s, rec.len) :
	    rec.type == 'P' ? apply_part_done(q, (const char *)s, rec.len) :
	    apply_state(q, rec.type, (const char *)s, rec.len)) < 0)
		return bad();
	*pos = rec.payload + rec.len;
	return 0;
}

static int qfile_parse(struct qreader *r, struct qfile *q)
{
	struct qparse p = { .q = q, .seen = SEEN_V, .rcpt_cap = 0 };
	off_t pos = 0;
	int done = 0;

	while (!done)
		if (read_committed_record(r, &p, &pos, &done) < 0)
			return -1;
	unsigned need = SEEN_I | SEEN_T | SEEN_S | SEEN_M;
	if ((p.seen & need) != need || q->nrcpt == 0)
		return bad();
	if (q->helo == NULL) {
		q->helo = xstrdup("");
		q->client_addr = xstrdup("");
		q->protocol = xstrdup("");
	}
	done = 0;
	while (!done)
		if (read_state_record(r, q, &pos, &done) < 0)
			return -1;
	q->end_offset = pos;
	return 0;
}

int qfile_read(int fd, struct qfile *q)
{
	struct stat st;

	memset(q, 0, sizeof(*q));
	if (fstat(fd, &st) < 0)
		return -1;
	if (!S_ISREG(st.st_mode))
		return bad();
	struct qreader r = { .fd = fd, .size = st.st_size, .win_off = 0,
	    .win_len = 0, .win = xmalloc(QR_WINDOW) };
	int ret = qfile_parse(&r, q);
	int saved = errno;
	free(r.win);
	if (ret < 0)
		qfile_free(q);
	errno = saved;
	return ret;
}

void qfile_free(struct qfile *q)
{
	for (size_t i = 0; i < q->nrcpt; i++) {
		free(q->rcpt[i].address);
		free(q->rcpt[i].last_error);
		free(q->rcpt[i].done);
	}
	free(q->rcpt);
	free(q->helo);
	free(q->client_addr);
	free(q->protocol);
	free(q->sender);
	memset(q, 0, sizeof(*q));
}

/* ---- appending state records ---- */

/* Copy detail, CR/LF runs turned into one space, at most QFILE_MAX_DETAIL
 * bytes, not ending inside a UTF-8 sequence.  Returns the length. */
static size_t clean_detail(char *out, const char *in)
{
	size_t n = 0;

	for (; *in != '\0' && n < QFILE_MAX_DETAIL; in++) {
		if (*in == '\r' || *in == '\n') {
			if (n == 0 || out[n - 1] != ' ')
				out[n++] = ' ';
			continue;
		}
		out[n++] = *in;
	}
	if (((unsigned char)*in & 0xC0) == 0x80) {      /* cut inside a character */
		while (n > 0 && ((unsigned char)out[n - 1] & 0xC0) == 0x80)
			n--;
		if (n > 0 && ((unsigned char)out[n - 1] & 0xC0) == 0xC0)
			n--;
	}
	return n;
}

/* A short append (disk full mid-record) is cut off again. */
static void undo_short_append(int fd, size_t written)
{
	struct stat st;

	if (fstat(fd, &st) < 0 || ftruncate(fd, st.st_size - (off_t)written) < 0)
		log_warn("cannot remove a partial queue file record: %s", strerror(errno));
}

/* type, length and "head detail" in one write(2), not synced. */
static int write_record(int fd, char type, const char *head, const char *detail)
{
	char rec[QR_HDR + 64 + QFILE_MAX_DETAIL];
	size_t hlen = strlen(head);
	size_t len = hlen + clean_detail(rec + QR_HDR + hlen, detail ? detail : "");
	ssize_t n;

	rec[0] = type;
	rec[1] = (char)(len >> 24);
	rec[2] = (char)(len >> 16);
	rec[3] = (char)(len >> 8);
	rec[4] = (char)len;
	memcpy(rec + QR_HDR, head, hlen);
	do
		n = write(fd, rec, QR_HDR + len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	if ((size_t)n != QR_HDR + len) {
		undo_short_append(fd, (size_t)n);
		errno = ENOSPC;
		return -1;
	}
	return 0;
}

static int write_done(int fd, size_t index, enum rcpt_state state, const char *detail)
{
	char head[64];

	if (state == RCPT_PENDING) {
		errno = EINVAL;
		return -1;
	}
	snprintf(head, sizeof(head), "%zu %s ", index, rcpt_state_name(state));
	return write_record(fd, 'D', head, detail);
}

static int write_deferred(int fd, size_t index, int64_t when, const char *detail)
{
	char head[64];

	if (when < 0) {
		errno = EINVAL;
		return -1;
	}
	snprintf(head, sizeof(head), "%zu %lld ", index, (long long)when);
	return write_record(fd, 'F', head, detail);
}

static int write_part_done(int fd, size_t index, uint64_t version, const char *list)
{
	char head[64], *check = NULL;

	if (list == NULL || strlen(list) > QFILE_MAX_DETAIL || qfile_done_union(&check, list) < 0) {
		errno = EINVAL;
		return -1;
	}
	free(check);
	snprintf(head, sizeof(head), "%zu %016llx ", index, (unsigned long long)version);
	return write_record(fd, 'P', head, list);
}

static int write_message_state(int fd, char type, int64_t when)
{
	char head[32];

	if (when <= 0) {
		errno = EINVAL;
		return -1;
	}
	snprintf(head, sizeof(head), "%lld", (long long)when);
	return write_record(fd, type, head, NULL);
}

static int synced(int fd, int r)
{
	return r < 0 ? -1 : fdatasync(fd);
}

int qfile_append_done(int fd, size_t index, enum rcpt_state state, const char *detail)
{
	return synced(fd, write_done(fd, index, state, detail));
}

int qfile_append_deferred(int fd, size_t index, int64_t when, const char *detail)
{
	return synced(fd, write_deferred(fd, index, when, detail));
}

int qfile_append_part_done(int fd, size_t index, uint64_t version, const char *list)
{
	return synced(fd, write_part_done(fd, index, version, list));
}

int qfile_append_warned(int fd, int64_t when)
{
	return synced(fd, write_message_state(fd, 'W', when));
}

int qfile_append_finished(int fd, int64_t when)
{
	return synced(fd, write_message_state(fd, 'Z', when));
}

/* The records of one recipient's state: a pending one its 'P' (the
 * instructions delivered go first: an 'F' without its 'P' would deliver
 * them again) and its 'F', a done one its 'D'. */
static int write_state(int fd, const struct qfile *q, size_t i)
{
	const struct qrcpt *rc = &q->rcpt[i];

	if (rc->state != RCPT_PENDING)
		return write_done(fd, i, rc->state, rc->last_error);
	if (rc->done != NULL && write_part_done(fd, i, rc->done_version, rc->done) < 0)
		return -1;
	return write_deferred(fd, i, rc->last_attempt, rc->last_error);
}

int qfile_append_states(int fd, const struct qfile *q, const size_t *idx, size_t n)
{
	struct stat st;
	int r = 0;

	if (fstat(fd, &st) < 0)
		return -1;
	for (size_t k = 0; k < n && r == 0; k++) {
		if (idx[k] >= q->nrcpt) {
			errno = EINVAL;
			r = -1;
		} else {
			r = write_state(fd, q, idx[k]);
		}
	}
	if (r == 0)
		r = fdatasync(fd);
	if (r < 0) {
		int saved = errno;
		/* none of them, rather than some: all are written again */
		if (ftruncate(fd, st.st_size) < 0)
			log_warn("qid=%s: cannot cut off unsynced state records: %s", q->qid,
			    strerror(errno));
		errno = saved;
	}
	return r;
}

int qfile_repair_tail(int fd, const struct qfile *q)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -1;
	if (st.st_size <= q->end_offset)
		return 0;
	log_warn("qid=%s removing %lld bytes of a torn record", q->qid,
	    (long long)(st.st_size - q->end_offset));
	if (ftruncate(fd, q->end_offset) < 0)
		return -1;
	return fdatasync(fd);
}

const char *rcpt_state_name(enum rcpt_state s)
{
	switch (s) {
	case RCPT_PENDING: return "pending";
	case RCPT_SENT: return "sent";
	case RCPT_BOUNCED: return "bounced";
	case RCPT_EXPIRED: return "expired";
	case RCPT_REFUSED: return "refused";
	}
	return "unknown";
}
