/*
 * test_dsn.c - the DSN composer: message structure, the report fields,
 * header injection through addresses and diagnostics, many recipients,
 * refused reports, the header section length.  When python3 is there, the
 * output is also parsed with Python's email package (a second, independent
 * MIME parser).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dsn/dsn.h"
#include "lib/buf.h"
#include "proto/smtp_received.h"

#define HOST "mx.example.test"
#define SENDER "alice@example.test"
#define T_ARRIVAL 1704067200    /* Mon, 1 Jan 2024 00:00:00 UTC */
#define T_NOW (T_ARRIVAL + 3600)

static const char orig_headers[] =
	"Received: from client by mx; Mon, 1 Jan 2024 00:00:00 +0000\n"
	"From: Alice <" SENDER ">\n"
	"To: bob@example.test\n"
	"Subject: hello\n"
	"\n";

static const struct dsn_rcpt two_rcpts[] = {
	{ "bob@example.test", DSN_FAILED, "5.1.1", "no such user" },
	{ "carol@example.test", DSN_FAILED, "5.2.2", "mailbox full" },
};

static struct dsn_report base_report(const struct dsn_rcpt *rcpts, size_t n)
{
	struct dsn_report r = {
		.reporting_host = HOST, .qid = "Q1234ABCD", .arrival = T_ARRIVAL,
		.orig_sender = SENDER, .rcpts = rcpts, .nrcpts = n,
		.orig_headers = orig_headers, .orig_headers_len = strlen(orig_headers),
		.now = T_NOW,
	};
	return r;
}

static char *compose(const struct dsn_report *r)
{
	struct buf b = BUF_INIT;
	assert_int_equal(dsn_compose(r, &b), 0);
	assert_non_null(b.data);
	return buf_steal(&b);
}

/* Pointer to the header section's end (the blank line) of a message. */
static const char *body_of(const char *msg)
{
	const char *p = strstr(msg, "\n\n");
	assert_non_null(p);
	return p + 2;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/* Does a line start with prefix (anywhere in s)? */
static int has_line_prefix(const char *s, const char *prefix)
{
	size_t n = strlen(prefix);
	for (const char *p = s; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, prefix, n) == 0)
			return 1;
	return 0;
}

/* Lines: no CR, none longer than max, 7-bit only when ascii. */
static void check_lines(const char *s, size_t max, int ascii)
{
	size_t col = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		assert_true(*p != '\r');
		if (ascii && *p >= 0x80)
			fail_msg("8-bit byte at offset %zu", (size_t)((const char *)p - s));
		if (*p == '\n') {
			col = 0;
		} else if (++col > max) {
			fail_msg("line longer than %zu at offset %zu", max, (size_t)((const char *)p - s));
		}
	}
	assert_int_equal(s[strlen(s) - 1], '\n');
}

/* The header field value of name in the top-level header section
 * (unfolded, first occurrence); caller frees; NULL if absent. */
static char *top_header(const char *msg, const char *name)
{
	size_t n = strlen(name);
	const char *end = body_of(msg);
	for (const char *p = msg; p < end; p = strchr(p, '\n') + 1) {
		if (strncmp(p, name, n) != 0 || p[n] != ':')
			continue;
		struct buf v = BUF_INIT;
		const char *q = p + n + 1;
		while (*q == ' ')
			q++;
		for (;;) {
			const char *nl = strchr(q, '\n');
			buf_append(&v, q, (size_t)(nl - q));
			if (nl[1] != ' ' && nl[1] != '\t')
				break;
			q = nl + 1;
		}
		return buf_steal(&v);
	}
	return NULL;
}

static char *boundary_of(const char *msg)
{
	char *ct = top_header(msg, "Content-Type");
	assert_non_null(ct);
	assert_non_null(strstr(ct, "multipart/report; report-type=delivery-status;"));
	char *b = strstr(ct, "boundary=\"");
	assert_non_null(b);
	b += 10;
	char *e = strchr(b, '"');
	assert_non_null(e);
	char *out = strndup(b, (size_t)(e - b));
	free(ct);
	return out;
}

/* ---------- python3 cross-check ---------- */

static const char py_check[] =
	"import email, sys\n"
	"from email import policy\n"
	"path, sender, subject = sys.argv[1], sys.argv[2], sys.argv[3]\n"
	"want = [a.split('|') for a in sys.argv[4:]]\n"
	"m = email.message_from_binary_file(open(path, 'rb'), policy=policy.default)\n"
	"def ok(c, what):\n"
	"    if not c:\n"
	"        print('python check failed:', what); sys.exit(1)\n"
	"ok(m.get_content_type() == 'multipart/report', 'content type')\n"
	"ok(m.get_param('report-type') == 'delivery-status', 'report-type')\n"
	"ok(m['To'].addresses[0].addr_spec == sender, 'To ' + str(m['To']))\n"
	"ok(m['From'].addresses[0].addr_spec.startswith('MAILER-DAEMON@'), 'From')\n"
	"ok(str(m['Subject']) == subject, 'Subject ' + str(m['Subject']))\n"
	"ok(m['Auto-Submitted'] == 'auto-replied', 'Auto-Submitted')\n"
	"ok(m['Message-ID'] and m['Date'].datetime is not None, 'Message-ID/Date')\n"
	"parts = m.get_payload()\n"
	"ok(len(parts) == 3, 'three parts, got %d' % len(parts))\n"
	"ok([p.get_content_type() for p in parts] == ['text/plain', 'message/delivery-status',"
	" 'text/rfc822-headers'], 'part types')\n"
	"for part in m.walk():\n"
	"    ok(not part.defects, 'defects %r' % part.defects)\n"
	"blocks = parts[1].get_payload()\n"
	"ok(blocks[0]['Reporting-MTA'].startswith('dns; '), 'Reporting-MTA')\n"
	"ok(blocks[0]['Arrival-Date'] is not None, 'Arrival-Date')\n"
	"ok(len(blocks) == 1 + len(want), 'blocks %d' % len(blocks))\n"
	"for blk, (addr, action, status, diag) in zip(blocks[1:], want):\n"
	"    ok(str(blk['Final-Recipient']) == 'rfc822; ' + addr, 'Final-Recipient ' + str(blk['Final-Recipient']))\n"
	"    ok(blk['Action'] == action and blk['Status'] == status, 'Action/Status')\n"
	"    got = blk['Diagnostic-Code']\n"
	"    ok((got is None and diag == '') or str(got) == 'x-mailprocd; ' + diag,"
	" 'Diagnostic-Code %r' % str(got))\n"
	"    ok(len(blk.keys()) == (4 if diag else 3), 'fields %r' % blk.keys())\n"
	"ok(set(m.keys()) == {'From', 'To', 'Subject', 'Date', 'Message-ID', 'Auto-Submitted',"
	" 'MIME-Version', 'Content-Type', 'Content-Transfer-Encoding'}, 'keys %r' % m.keys())\n"
	"h = parts[2].get_content()\n"
	"ok('Subject: hello' in h, 'original headers')\n";

static int have_python(void)
{
	return system("command -v python3 >/dev/null 2>&1") == 0;
}

/* Run py_check on msg; args: "addr|action|status|diag" per recipient. */
static void python_check(const char *msg, const char *sender, const char *subject,
    const char *const *args, size_t nargs)
{
	char path[] = "/tmp/test_dsn.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, msg, strlen(msg)), (ssize_t)strlen(msg));
	close(fd);

	char **argv = calloc(nargs + 8, sizeof(char *));
	size_t n = 0;
	argv[n++] = (char *)"python3";
	argv[n++] = (char *)"-c";
	argv[n++] = (char *)py_check;
	argv[n++] = path;
	argv[n++] = (char *)sender;
	argv[n++] = (char *)subject;
	for (size_t i = 0; i < nargs; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execvp("python3", argv);
		_exit(127);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	unlink(path);
	free(argv);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("python3 email check failed (status 0x%x)", st);
}

/* ---------- tests ---------- */

static void test_structure(void **state)
{
	(void)state;
	struct dsn_report r = base_report(two_rcpts, 2);
	char *msg = compose(&r);
	check_lines(msg, 78, 1);

	char *v;
	v = top_header(msg, "From");
	assert_string_equal(v, "Mail Delivery System <MAILER-DAEMON@" HOST ">");
	free(v);
	v = top_header(msg, "To");
	assert_string_equal(v, "<" SENDER ">");
	free(v);
	v = top_header(msg, "Subject");
	assert_string_equal(v, "Undelivered Mail Returned to Sender");
	free(v);
	v = top_header(msg, "Auto-Submitted");
	assert_string_equal(v, "auto-replied");
	free(v);
	v = top_header(msg, "MIME-Version");
	assert_string_equal(v, "1.0");
	free(v);
	v = top_header(msg, "Message-ID");
	assert_true(v[0] == '<' && strstr(v, "@" HOST ">") != NULL && strstr(v, "Q1234ABCD") != NULL);
	free(v);
	v = top_header(msg, "Date");
	assert_non_null(v);
	assert_non_null(strstr(v, "2024"));
	free(v);

	char *b = boundary_of(msg);
	char delim[128], close_delim[128];
	snprintf(delim, sizeof(delim), "\n--%s\n", b);
	snprintf(close_delim, sizeof(close_delim), "\n--%s--\n", b);
	assert_int_equal(count(msg, delim), 3);
	assert_int_equal(count(msg, close_delim), 1);
	/* the closing delimiter ends the message */
	assert_string_equal(msg + strlen(msg) - strlen(close_delim), close_delim);

	const char *p1 = strstr(msg, delim);
	const char *p2 = strstr(p1 + 1, delim);
	const char *p3 = strstr(p2 + 1, delim);
	assert_true(p1 && p2 && p3);
	const char *ct_plain = "Content-Type: text/plain; charset=us-ascii\n";
	assert_int_equal(strncmp(strstr(p1, "Content-Type: "), ct_plain, strlen(ct_plain)), 0);
	assert_true(strstr(p1, "<bob@example.test>: 5.1.1 no such user") < p2);
	assert_true(strstr(p1, "<carol@example.test>: 5.2.2 mailbox full") < p2);

	/* the report: per-message fields, then one block per recipient */
	const char *ds = body_of(p2 + 1);
	assert_true(strstr(p2, "Content-Type: message/delivery-status\n") < ds);
	const char *per_msg = "Reporting-MTA: dns; " HOST "\n"
	    "X-Mailprocd-Queue-ID: Q1234ABCD\n"
	    "Arrival-Date: ";
	assert_int_equal(strncmp(ds, per_msg, strlen(per_msg)), 0);
	const char *blocks = strstr(ds, "\n\n");
	assert_true(blocks < p3);
	const char *per_rcpt = "\n\nFinal-Recipient: rfc822; bob@example.test\n"
	    "Action: failed\n"
	    "Status: 5.1.1\n"
	    "Diagnostic-Code: x-mailprocd; no such user\n"
	    "\n"
	    "Final-Recipient: rfc822; carol@example.test\n"
	    "Action: failed\n"
	    "Status: 5.2.2\n"
	    "Diagnostic-Code: x-mailprocd; mailbox full\n"
	    "\n--";
	assert_int_equal(strncmp(blocks, per_rcpt, strlen(per_rcpt)), 0);

	/* the original's headers, without their blank line */
	const char *hp = body_of(p3 + 1);
	assert_true(strstr(p3, "Content-Type: text/rfc822-headers\n") < hp);
	size_t hl = strlen(orig_headers) - 1;
	assert_memory_equal(hp, orig_headers, hl);
	assert_int_equal(strncmp(hp + hl, close_delim, strlen(close_delim)), 0);

	v = top_header(msg, "Content-Transfer-Encoding");
	assert_string_equal(v, "7bit");
	free(v);

	if (have_python()) {
		const char *args[] = { "bob@example.test|failed|5.1.1|no such user",
			"carol@example.test|failed|5.2.2|mailbox full" };
		python_check(msg, SENDER, "Undelivered Mail Returned to Sender", args, 2);
	} else {
		print_message("python3 not found: email package check skipped\n");
	}
	free(b);
	free(msg);
}

static void test_delayed_and_mixed(void **state)
{
	(void)state;
	const struct dsn_rcpt delayed[] = {
		{ "bob@example.test", DSN_DELAYED, "4.4.1", "connection refused" },
		{ "dave@example.test", DSN_DELAYED, "4.3.0", NULL },
	};
	struct dsn_report r = base_report(delayed, 2);
	char *msg = compose(&r);
	char *v = top_header(msg, "Subject");
	assert_string_equal(v, "Delayed Mail (still being retried)");
	free(v);
	assert_non_null(strstr(msg, "Action: delayed\nStatus: 4.4.1\n"));
	assert_non_null(strstr(msg, "will keep trying"));
	assert_null(strstr(msg, "could not\nbe delivered"));
	/* no diagnostic: no Diagnostic-Code field */
	assert_non_null(strstr(msg, "Final-Recipient: rfc822; dave@example.test\nAction: delayed\nStatus: 4.3.0\n\n"));
	if (have_python()) {
		const char *args[] = { "bob@example.test|delayed|4.4.1|connection refused",
			"dave@example.test|delayed|4.3.0|" };
		python_check(msg, SENDER, "Delayed Mail (still being retried)", args, 2);
	}
	free(msg);

	const struct dsn_rcpt mixed[] = {
		{ "bob@example.test", DSN_DELAYED, "4.4.1", "later" },
		{ "carol@example.test", DSN_FAILED, "4.4.7", "expired" },
	};
	r = base_report(mixed, 2);
	msg = compose(&r);
	v = top_header(msg, "Subject");
	assert_string_equal(v, "Undelivered Mail Returned to Sender");
	free(v);
	assert_non_null(strstr(msg, "could not\nbe delivered"));
	assert_non_null(strstr(msg, "will keep trying"));
	assert_null(strstr(msg, "Will-Retry-Until"));      /* not without retry_until */
	free(msg);

	/* with the end of the retries: said in the text and per delayed
	 * recipient (RFC 3464 2.3.9), not for one that failed */
	r = base_report(mixed, 2);
	r.retry_until = T_ARRIVAL + 5 * 86400;
	msg = compose(&r);
	check_lines(msg, 78, 1);
	char date[40], want[256];
	rfc5322_date(date, (time_t)r.retry_until);     /* local time, as the Date: */
	snprintf(want, sizeof(want), "It will be retried until %s.\n", date);
	assert_non_null(strstr(msg, want));
	snprintf(want, sizeof(want), "Final-Recipient: rfc822; bob@example.test\n"
	    "Action: delayed\nStatus: 4.4.1\nDiagnostic-Code: x-mailprocd; later\n"
	    "Will-Retry-Until: %s\n\n", date);
	assert_non_null(strstr(msg, want));
	assert_int_equal(count(msg, "Will-Retry-Until: "), 1);
	free(msg);
}

static void test_injection(void **state)
{
	(void)state;
	const struct dsn_rcpt evil[] = {
		{ "bob@example.test\r\nBcc: victim@example.test", DSN_FAILED, "5.1.1",
		  "no such user\r\nX-Injected: 1\n\nBody text\n--fake-boundary--" },
		{ "carol\n@example.test", DSN_FAILED, "5.0.0", "caf\xc3\xa9 \xff\x01 t\ttab" },
	};
	struct dsn_report r = base_report(evil, 2);
	r.orig_sender = "alice@example.test\r\nBcc: victim2@example.test";
	r.reporting_host = "mx.example.test\r\nX-Host: evil";
	r.qid = "Q1\n>X";
	char *msg = compose(&r);
	check_lines(msg, 78, 1);
	assert_false(has_line_prefix(msg, "Bcc:"));
	assert_false(has_line_prefix(msg, "X-Injected:"));
	assert_false(has_line_prefix(msg, "X-Host:"));
	assert_false(has_line_prefix(msg, "Body text"));
	assert_false(has_line_prefix(msg, "--fake-boundary--"));
	char *v = top_header(msg, "To");
	assert_string_equal(v, "<\"alice@example.test??Bcc: victim2\"@example.test>");
	free(v);
	v = top_header(msg, "From");
	assert_string_equal(v, "Mail Delivery System <MAILER-DAEMON@mx.example.testX-Hostevil>");
	free(v);
	assert_non_null(strstr(msg, "Final-Recipient: rfc822; bob@example.test??Bcc: victim@example.test\n"));
	assert_non_null(strstr(msg, "Diagnostic-Code: x-mailprocd; no such user X-Injected: 1 Body text\n --fake-boundary--\n"));
	assert_non_null(strstr(msg, "Diagnostic-Code: x-mailprocd; caf?? ? t tab\n"));
	assert_non_null(strstr(msg, "X-Mailprocd-Queue-ID: Q1X\n"));
	if (have_python()) {
		const char *args[] = {
			"bob@example.test??Bcc: victim@example.test|failed|5.1.1|no such user X-Injected: 1 Body text --fake-boundary--",
			"carol?@example.test|failed|5.0.0|caf?? ? t tab" };
		python_check(msg, "\"alice@example.test??Bcc: victim2\"@example.test",
		    "Undelivered Mail Returned to Sender", args, 2);
	}
	free(msg);
}

static void expect_to(const char *sender, const char *want)
{
	struct dsn_report r = base_report(two_rcpts, 2);
	r.orig_sender = sender;
	char *msg = compose(&r);
	char *v = top_header(msg, "To");
	assert_string_equal(v, want);
	free(v);
	free(msg);
}

static void test_to_header(void **state)
{
	(void)state;
	expect_to("a.b+c@example.test", "<a.b+c@example.test>");
	expect_to("\"a b\"@example.test", "<\"a b\"@example.test>");
	expect_to("\"a\\\"b\"@example.test", "<\"a\\\"b\"@example.test>");
	expect_to("a>b@example.test", "<\"a>b\"@example.test>");
	expect_to("\"a\\\"@example.test", "<\"\\\"a\\\\\\\"\"@example.test>");
	expect_to("a..b@example.test", "<\"a..b\"@example.test>");
	expect_to("postmaster", "<postmaster>");
	expect_to("a@[IPv6:2001:db8::1]", "<a@[IPv6:2001:db8::1]>");
	expect_to("a@ex<am>ple.test", "<a@ex?am?ple.test>");
	expect_to("a@b@example.test", "<\"a@b\"@example.test>");
}

static void test_many_recipients(void **state)
{
	(void)state;
	enum { N = 1000 };
	struct dsn_rcpt *rc = calloc(N, sizeof(*rc));
	char (*addr)[64] = calloc(N, 64);
	char *longdiag = malloc(5000);
	assert_true(rc && addr && longdiag);
	for (int i = 0; i < 4999; i++)
		longdiag[i] = i % 7 == 6 ? ' ' : 'd';
	longdiag[4999] = '\0';
	for (int i = 0; i < N; i++) {
		snprintf(addr[i], 64, "user%04d@example.test", i);
		rc[i].address = addr[i];
		rc[i].action = i % 3 ? DSN_FAILED : DSN_DELAYED;
		rc[i].status = i % 3 ? "5.1.1" : "4.2.0";
		rc[i].diagnostic = i % 2 ? longdiag : "short";
	}
	struct dsn_report r = base_report(rc, N);
	char *msg = compose(&r);
	check_lines(msg, 78, 1);
	assert_int_equal(count(msg, "\nFinal-Recipient: rfc822; "), N);
	assert_int_equal(count(msg, "\nAction: delayed\n"), (N + 2) / 3);
	for (int i = 0; i < N; i += 97) {
		char want[128];
		snprintf(want, sizeof(want), "\nFinal-Recipient: rfc822; %s\n", addr[i]);
		assert_int_equal(count(msg, want), 1);
	}
	/* diagnostics are cut */
	assert_true(strlen(msg) < (size_t)N * 1400);
	assert_non_null(strstr(msg, "d...\n"));
	if (have_python()) {
		/* the first few, through Python: all N would make a long command line */
		struct dsn_report small = base_report(rc, 3);
		char *m3 = compose(&small);
		const char *args[] = { "user0000@example.test|delayed|4.2.0|short",
			"user0001@example.test|failed|5.1.1|", "user0002@example.test|failed|5.1.1|short" };
		/* rebuild user0001's diagnostic as the composer cut and folded it */
		char *cut = strstr(m3, "Final-Recipient: rfc822; user0001@example.test\n");
		assert_non_null(cut);
		cut = strstr(cut, "Diagnostic-Code: x-mailprocd; ") + 30;
		struct buf d = BUF_INIT;
		buf_puts(&d, "user0001@example.test|failed|5.1.1|");
		for (const char *p = cut; !(p[0] == '\n' && p[1] != ' '); p++)
			if (*p != '\n')
				buf_putc(&d, *p);
		args[1] = d.data;
		python_check(m3, SENDER, "Undelivered Mail Returned to Sender", args, 3);
		buf_free(&d);
		free(m3);
	}
	free(msg);
	free(rc);
	free(addr);
	free(longdiag);
}

static void test_eightbit_headers(void **state)
{
	(void)state;
	static const char h8[] = "Subject: h\xc3\xa9llo\r\nFrom: a@b\n\0X: y\n\n";
	struct dsn_report r = base_report(two_rcpts, 2);
	r.orig_headers = h8;
	r.orig_headers_len = sizeof(h8) - 1;
	char *msg = compose(&r);
	char *v = top_header(msg, "Content-Transfer-Encoding");
	assert_string_equal(v, "8bit");
	free(v);
	assert_non_null(strstr(msg, "Content-Type: text/rfc822-headers\nContent-Transfer-Encoding: 8bit\n\n"
	    "Subject: h\xc3\xa9llo\nFrom: a@b\nX: y\n\n--"));
	free(msg);

	/* no original headers: two parts */
	r.orig_headers = NULL;
	r.orig_headers_len = 0;
	msg = compose(&r);
	assert_null(strstr(msg, "text/rfc822-headers"));
	char *b = boundary_of(msg);
	char delim[128];
	snprintf(delim, sizeof(delim), "\n--%s\n", b);
	assert_int_equal(count(msg, delim), 2);
	free(b);
	free(msg);
}

static void test_refused(void **state)
{
	(void)state;
	struct buf out = BUF_INIT;
	buf_puts(&out, "untouched");
	struct dsn_report r;

	assert_int_equal(dsn_compose(NULL, &out), -1);
	r = base_report(two_rcpts, 2);
	assert_int_equal(dsn_compose(&r, NULL), -1);
	r.orig_sender = "";
	assert_int_equal(dsn_compose(&r, &out), -1);
	r.orig_sender = NULL;
	assert_int_equal(dsn_compose(&r, &out), -1);
	r = base_report(two_rcpts, 0);
	assert_int_equal(dsn_compose(&r, &out), -1);
	r = base_report(NULL, 2);
	assert_int_equal(dsn_compose(&r, &out), -1);
	r = base_report(two_rcpts, 2);
	r.reporting_host = "!!!";
	assert_int_equal(dsn_compose(&r, &out), -1);
	r.reporting_host = NULL;
	assert_int_equal(dsn_compose(&r, &out), -1);
	r = base_report(two_rcpts, 2);
	r.orig_headers = NULL;
	assert_int_equal(dsn_compose(&r, &out), -1);

	const char *bad_status[] = { "5.1", "6.1.1", "5.1.1x", "5.1234.1", "5..1", "", "5.1.1 ",
		"3.1.1", "5.1.-1", NULL };
	for (size_t i = 0; i < sizeof(bad_status) / sizeof(bad_status[0]); i++) {
		struct dsn_rcpt one = { "bob@example.test", DSN_FAILED, bad_status[i], NULL };
		r = base_report(&one, 1);
		if (dsn_compose(&r, &out) != -1)
			fail_msg("status \"%s\" accepted", bad_status[i] ? bad_status[i] : "(null)");
	}
	struct dsn_rcpt noaddr = { NULL, DSN_FAILED, "5.1.1", NULL };
	r = base_report(&noaddr, 1);
	assert_int_equal(dsn_compose(&r, &out), -1);
	struct dsn_rcpt badaction = { "bob@example.test", (enum dsn_action)7, "5.1.1", NULL };
	r = base_report(&badaction, 1);
	assert_int_equal(dsn_compose(&r, &out), -1);
	assert_string_equal(out.data, "untouched");

	struct dsn_rcpt good = { "bob@example.test", DSN_FAILED, "5.123.999", NULL };
	r = base_report(&good, 1);
	assert_int_equal(dsn_compose(&r, &out), 0);
	assert_int_equal(strncmp(out.data, "untouchedFrom: ", 15), 0);   /* appended */
	buf_free(&out);
}

static void test_header_section_len(void **state)
{
	(void)state;
	const char *m = "A: 1\nB: 2\n\nbody\n\nmore\n";
	assert_int_equal(dsn_header_section_len(m, strlen(m), 1000), 11);
	assert_int_equal(dsn_header_section_len(m, strlen(m), 11), 11);
	assert_int_equal(dsn_header_section_len(m, strlen(m), 10), 10);   /* "A: 1\nB: 2\n" */
	assert_int_equal(dsn_header_section_len(m, strlen(m), 8), 5);     /* whole lines only */
	assert_int_equal(dsn_header_section_len(m, strlen(m), 3), 3);     /* no whole line */
	assert_int_equal(dsn_header_section_len(m, strlen(m), 0), 0);
	assert_int_equal(dsn_header_section_len("\nbody\n", 6, 100), 1);
	assert_int_equal(dsn_header_section_len("A: 1\nB: 2", 9, 100), 9);  /* no blank line */
	assert_int_equal(dsn_header_section_len("A: 1\nB: 2\n", 10, 100), 10);
	assert_int_equal(dsn_header_section_len("", 0, 100), 0);
	assert_int_equal(dsn_header_section_len(NULL, 0, 100), 0);
	/* embedded NUL does not end the search */
	assert_int_equal(dsn_header_section_len("A\0B\n\nx", 6, 100), 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_structure),
		cmocka_unit_test(test_delayed_and_mixed),
		cmocka_unit_test(test_injection),
		cmocka_unit_test(test_to_header),
		cmocka_unit_test(test_many_recipients),
		cmocka_unit_test(test_eightbit_headers),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_header_section_len),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
