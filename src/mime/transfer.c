/*
 * transfer.c - Content-Transfer-Encoding decoding (quoted-printable one
 * line at a time, base64 as a stream) and the RFC 2047 "Q" variant.
 * Lenient as mail readers are: bad escapes stay literal, base64 skips
 * anything outside its alphabet and tolerates missing padding.
 */
#include "mime/mime_private.h"

#include <string.h>

int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static const signed char b64_table[256] = {
	['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7,
	['H'] = 8, ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13,
	['N'] = 14, ['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19,
	['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25,
	['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31,
	['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37,
	['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42, ['q'] = 43,
	['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
	['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55,
	['3'] = 56, ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61,
	['9'] = 62, ['+'] = 63, ['/'] = 64,
};      /* value + 1; 0 = not base64 */

void b64_init(struct b64 *d)
{
	d->bits = 0;
	d->nbits = 0;
}

int b64_feed(struct b64 *d, const char *s, size_t n, struct buf *out, size_t cap)
{
	if (out->len >= cap)
		return n > 0;
	/* Each 4 input characters give at most 3 bytes, plus what is left
	 * over from the last call. */
	size_t want = n / 4 * 3 + 3;
	size_t room = want < cap - out->len ? want : cap - out->len;
	buf_reserve(out, room);
	char *o = out->data + out->len;
	char *stop = o + room;
	unsigned int bits = d->bits;
	int nbits = d->nbits, full = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64_table[(unsigned char)s[i]];
		if (v == 0) {
			/* Padding ends a group: drop its partial bits so that
			 * concatenated base64 blobs still decode. */
			if (s[i] == '=')
				nbits = 0;
			continue;
		}
		bits = (bits << 6) | (unsigned int)(v - 1);
		nbits += 6;
		if (nbits >= 8) {
			nbits -= 8;
			if (o == stop) {
				full = 1;
				break;
			}
			*o++ = (char)((bits >> nbits) & 0xff);
		}
	}
	d->bits = bits;
	d->nbits = nbits;
	out->len = (size_t)(o - out->data);
	out->data[out->len] = '\0';
	return full;
}

int qp_decode_line(const char *s, size_t n, struct buf *out, size_t cap, int *soft)
{
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	*soft = 0;
	if (n > 0 && s[n - 1] == '=') {
		*soft = 1;
		n--;
	}
	if (out->len >= cap)
		return n > 0;
	size_t room = n < cap - out->len ? n : cap - out->len;
	buf_reserve(out, room);
	char *o = out->data + out->len;
	char *stop = o + room;
	int full = 0;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '=' && i + 2 < n) {
			int hi = hexval((unsigned char)s[i + 1]);
			int lo = hexval((unsigned char)s[i + 2]);
			if (hi >= 0 && lo >= 0) {
				ch = (char)(hi << 4 | lo);
				i += 2;
			}
		}
		if (o == stop) {
			full = 1;
			break;
		}
		*o++ = ch;
	}
	out->len = (size_t)(o - out->data);
	out->data[out->len] = '\0';
	return full;
}

void q_decode_word(const char *s, size_t n, struct buf *out)
{
	buf_reserve(out, n);
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (ch == '_') {
			ch = ' ';
		} else if (ch == '=' && i + 2 < n) {
			int hi = hexval((unsigned char)s[i + 1]);
			int lo = hexval((unsigned char)s[i + 2]);
			if (hi >= 0 && lo >= 0) {
				ch = (char)(hi << 4 | lo);
				i += 2;
			}
		}
		out->data[out->len++] = ch;
	}
	out->data[out->len] = '\0';
}
