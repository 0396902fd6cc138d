/*
 * mime_private.h - the state shared by the parts of the MIME analyser
 * (header lines, RFC 2047 words, transfer decoding, charsets, the
 * multipart walk and the body text).  Private to src/mime.
 */
#ifndef MP_MIME_PRIVATE_H
#define MP_MIME_PRIVATE_H

#include <iconv.h>
#include <stddef.h>

#include "lib/buf.h"
#include "mime/mime.h"

#define MIME_BOUNDARY_MAX 200   /* RFC 2046 says 70; be lenient */
#define MIME_CHARSET_MAX 48
#define CHARSET_CACHE_SIZE 8
#define CHARSET_MAX_OPENS 32    /* iconv_open calls per message */

/* charset.c: UTF-8 conversion with a small per-message iconv cache. */
struct charset_cache {
	struct {
		char name[MIME_CHARSET_MAX];
		iconv_t cd;             /* (iconv_t)-1: unknown, treated as UTF-8 */
	} e[CHARSET_CACHE_SIZE];
	int n, next, opens;
};

void charset_cache_init(struct charset_cache *cc);
void charset_cache_free(struct charset_cache *cc);
/* Append in[0..len), text in the named charset (cslen bytes, not
 * NUL-terminated, any case), to out as UTF-8: invalid or incomplete
 * sequences become U+FFFD.  Only whole characters are written, and out
 * grows by at most max bytes; the rest of the input is dropped.  An empty
 * or unknown charset is read as UTF-8. */
void charset_to_utf8(struct charset_cache *cc, const char *cs, size_t cslen,
    const char *in, size_t len, struct buf *out, size_t max);
/* The same for input that should already be UTF-8; 1 if max stopped it. */
int utf8_append_valid(struct buf *out, const char *in, size_t len, size_t max);
/* Length of the longest prefix of s[0..n) that ends on a character
 * boundary, for valid UTF-8. */
size_t utf8_cut(const char *s, size_t n);

/* transfer.c: Content-Transfer-Encoding and RFC 2047 B/Q decoding. */
struct b64 {
	unsigned int bits;
	int nbits;
};
void b64_init(struct b64 *d);
/* Decode base64 text (other bytes ignored), appending to out while out->len
 * < cap.  Returns 1 if the cap stopped it. */
int b64_feed(struct b64 *d, const char *s, size_t n, struct buf *out, size_t cap);
/* Decode one quoted-printable line (without its line end), trailing white
 * space dropped, appending to out while out->len < cap.  *soft is set when
 * it ends in a soft line break ("=").  Returns 1 if the cap stopped it. */
int qp_decode_line(const char *s, size_t n, struct buf *out, size_t cap, int *soft);
/* RFC 2047 "Q" text: like quoted-printable, '_' is a space. */
void q_decode_word(const char *s, size_t n, struct buf *out);
int hexval(unsigned char c);

/* rfc2047.c: decode an unfolded header value into out as UTF-8. */
void rfc2047_decode(struct charset_cache *cc, struct buf *scratch,
    const char *s, size_t n, struct buf *out);

/* content.c: what Content-Type and Content-Transfer-Encoding say. */
enum content_kind { CT_TEXT, CT_MULTIPART, CT_MESSAGE, CT_OTHER };
enum content_cte { CTE_IDENTITY, CTE_QP, CTE_BASE64 };
struct content {
	enum content_kind kind;
	int digest;                     /* multipart/digest */
	enum content_cte cte;
	char charset[MIME_CHARSET_MAX];
	char boundary[MIME_BOUNDARY_MAX + 1];
	size_t boundary_len;            /* 0: none or invalid */
};
/* v[0..n) is the unfolded value, or v == NULL when the header is absent.
 * default_message: the default type is message/rfc822 (multipart/digest). */
void content_parse_type(const char *v, size_t n, int default_message, struct content *c);
void content_parse_cte(const char *v, size_t n, struct content *c);

/* header.c: header lines. */
/* 1 when line[0..n) starts a header field ("Name:" with the name printable
 * ASCII, optionally followed by blanks before the colon); *name_len and
 * *value_off (just past the colon) are set. */
int header_line_start(const char *line, size_t n, size_t *name_len, size_t *value_off);
/* Append s[0..n) to out with its line breaks (LF, CRLF) removed. */
void header_unfold(const char *s, size_t n, struct buf *out);
/* Replace control bytes but TAB with a space in s[0..n), then trim blanks;
 * returns the new start offset and sets *len. */
size_t header_clean(char *s, size_t n, size_t *len);

/* The walk (multipart.c) and the body text (body.c). */
enum walk_state { ST_HEADERS, ST_TEXT, ST_SKIP };

struct frame {
	char boundary[MIME_BOUNDARY_MAX + 1];
	size_t blen;
	int depth;                      /* depth of the multipart entity */
	int digest;
};

struct hdr_rec {
	size_t name_off, value_off;     /* into mime_ctx.arena */
};

struct mime_ctx {
	int flags;
	size_t limit;
	int done;                       /* nothing more to look at */

	/* Top-level header store. */
	struct buf arena;               /* names and values, NUL-terminated */
	struct hdr_rec *hdrs;
	size_t nhdrs, caphdrs;

	/* The entity whose header section is being read. */
	int top;                        /* the message's own header section */
	int first_line;
	int depth;
	int default_message;
	const char *h_name, *h_val, *h_end;     /* header field in progress */
	size_t h_name_len;
	const char *ct, *ct_end, *cte, *cte_end; /* first Content-Type / -Transfer-Encoding */

	enum walk_state state;
	struct frame frames[MIME_MAX_DEPTH];
	int nframes;
	size_t nparts;

	/* Text part being collected. */
	enum content_cte t_cte;
	char t_charset[MIME_CHARSET_MAX];
	int t_pending_nl;
	const char *t_sp, *t_se, *t_eol; /* identity text: its span in the message */
	struct b64 t_b64;
	struct buf raw;                 /* transfer-decoded bytes */
	size_t raw_cap;
	int raw_full;

	struct buf out;                 /* body text */
	int truncated;

	struct charset_cache cs;
	struct buf tmp, scratch;
};

void walk_message(struct mime_ctx *c, const char *p, const char *end);
void headers_store(struct mime_ctx *c, const char *name, size_t nlen,
    const char *val, size_t vlen);

void text_begin(struct mime_ctx *c, const struct content *ct);
void text_line(struct mime_ctx *c, const char *p, size_t n, const char *nl);
void text_end(struct mime_ctx *c, int eof);

#endif
