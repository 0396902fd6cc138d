/*
 * smtp_addr.h - the RFC 5321 path grammar (section 4.1.2): "<" [source
 * route ":"] local-part "@" domain ">", with dot-string or quoted-string
 * local parts and domain names or address literals.
 */
#ifndef MP_SMTP_ADDR_H
#define MP_SMTP_ADDR_H

#include <stddef.h>

#include "proto/smtp_parse.h"

/* Parse the path starting at **pp (which must be '<') and advance *pp past
 * the closing '>'.  The mailbox is written to out (outlen >= 2) in
 * canonical form: source route dropped, local part unquoted when it is a
 * valid dot-string, else quoted with '"' and '\' escaped.  "<>" gives ""
 * when allow_null, else SMTP_PATH_BAD_ADDRESS.  Control characters, NUL,
 * 8-bit bytes and more than SMTP_PATH_MAX bytes inside the brackets are
 * refused.  A mailbox without "@domain" gives SMTP_PATH_NO_DOMAIN. */
enum smtp_path_status smtp_addr_parse_path(const char **pp, char *out,
    size_t outlen, int allow_null);

/* 1 when s is a valid RFC 5321 dot-string (atoms of atext joined by single
 * dots), 0 otherwise. */
int smtp_addr_is_dot_string(const char *s, size_t len);

#endif
