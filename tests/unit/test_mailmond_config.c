/*
 * test_mailmond_config.c - mailmond.conf: SPEC's example, every setting,
 * durations below a second, quoting, and each kind of error reported as
 * file:line with the parse going on to show them all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailmond/mm_config.h"

static char errors[8192];
static int nerrors;

static void collect(const char *msg)
{
	size_t len = strlen(errors);
	snprintf(errors + len, sizeof(errors) - len, "%s\n", msg);
	nerrors++;
}

static int parse(struct mm_config *c, const char *text)
{
	errors[0] = '\0';
	nerrors = 0;
	mm_config_defaults(c);
	int n = mm_config_parse_text(c, "t.conf", text, collect);
	assert_int_equal(n, nerrors);
	return n;
}

static void test_spec_example(void **state)
{
	struct mm_config c;
	int n = parse(&c,
	    "probe        local   smtp:127.0.0.1:25   to mon+local@example.test   maildir /var/lib/mailmond/Maildir/\n"
	    "probe        direct  lmtp:127.0.0.1:24   to mon+direct@example.test  maildir /var/lib/mailmond/Maildir/\n"
	    "interval     60s\n"
	    "late_after   5m                     # a probe not seen by then is late; after 1h, lost\n"
	    "listen       metrics 127.0.0.1:9120\n"
	    "alert_command \"/usr/local/bin/notify-oncall\"   # run on late, lost and recovered\n");
	assert_int_equal(n, 0);
	assert_int_equal(c.nprobe, 2);
	assert_string_equal(c.probe[0].name, "local");
	assert_int_equal(c.probe[0].lmtp, 0);
	assert_string_equal(c.probe[0].dest.host, "127.0.0.1");
	assert_string_equal(c.probe[0].dest.port, "25");
	assert_string_equal(c.probe[0].to, "mon+local@example.test");
	assert_string_equal(c.probe[0].maildir, "/var/lib/mailmond/Maildir");
	assert_int_equal(c.probe[1].lmtp, 1);
	assert_int_equal(c.probe[1].line, 2);
	assert_int_equal(c.interval_usec, 60000000ULL);
	assert_int_equal(c.late_after_usec, 300000000ULL);
	assert_int_equal(c.lost_after_usec, 3600000000ULL);  /* default */
	assert_int_equal(c.timeout_usec, 30000000ULL);       /* default */
	assert_int_equal(c.alert_timeout_usec, 60000000ULL); /* default */
	assert_int_equal(c.nlisten, 1);
	assert_string_equal(c.listen[0].host, "127.0.0.1");
	assert_string_equal(c.listen[0].port, "9120");
	assert_string_equal(c.alert_command, "/usr/local/bin/notify-oncall");
	assert_non_null(c.from);        /* mailmond@HOSTNAME */
	assert_int_equal(strncmp(c.from, "mailmond@", 9), 0);
	assert_non_null(c.helo);
	assert_null(c.user);
	mm_config_free(&c);
}

static void test_every_setting(void **state)
{
	struct mm_config c;
	int n = parse(&c,
	    "probe u smtp:unix:/run/x.sock to a@b.test maildir /m\n"
	    "probe v lmtp:unix:/run/y.sock to a@b.test maildir /m\n"
	    "probe w6 lmtp:[::1]:24 to a@b.test maildir /m\n"
	    "interval 250ms\nlate_after 1.5s\nlost_after 2\ntimeout 0.5\nalert_timeout 90s\n"
	    "listen metrics [::1]:9120\nlisten metrics 0.0.0.0:9121\n"
	    "alert_command \"echo \\\"$PROBE\\\" \\\\ done\"\n"
	    "from monitor@example.test\nhelo probe.example.test\nuser nobody\r\n");
	assert_int_equal(n, 0);
	assert_int_equal(c.probe[0].dest.is_unix, 1);
	assert_string_equal(c.probe[0].dest.path, "/run/x.sock");
	assert_int_equal(c.probe[0].lmtp, 0);
	assert_int_equal(c.probe[1].lmtp, 1);
	assert_string_equal(c.probe[2].dest.host, "::1");
	assert_int_equal(c.interval_usec, 250000);
	assert_int_equal(c.late_after_usec, 1500000);
	assert_int_equal(c.lost_after_usec, 2000000);
	assert_int_equal(c.timeout_usec, 500000);
	assert_int_equal(c.alert_timeout_usec, 90000000ULL);
	assert_int_equal(c.nlisten, 2);
	assert_string_equal(c.listen[0].host, "::1");
	assert_string_equal(c.alert_command, "echo \"$PROBE\" \\ done");
	assert_string_equal(c.from, "monitor@example.test");
	assert_string_equal(c.helo, "probe.example.test");
	assert_string_equal(c.user, "nobody");
	mm_config_free(&c);
}

static void test_durations(void **state)
{
	uint64_t v;
	assert_int_equal(mm_parse_duration("1", &v), 0);
	assert_int_equal(v, 1000000);
	assert_int_equal(mm_parse_duration("500ms", &v), 0);
	assert_int_equal(v, 500000);
	assert_int_equal(mm_parse_duration("0.25s", &v), 0);
	assert_int_equal(v, 250000);
	assert_int_equal(mm_parse_duration("5m", &v), 0);
	assert_int_equal(v, 300000000ULL);
	assert_int_equal(mm_parse_duration("1h", &v), 0);
	assert_int_equal(v, 3600000000ULL);
	assert_int_equal(mm_parse_duration("2d", &v), 0);
	assert_int_equal(v, 172800000000ULL);
	assert_int_equal(mm_parse_duration("1.0000001s", &v), 0);
	assert_int_equal(v, 1000000);
	assert_int_equal(mm_parse_duration("", &v), -1);
	assert_int_equal(mm_parse_duration("s", &v), -1);
	assert_int_equal(mm_parse_duration(".5s", &v), -1);
	assert_int_equal(mm_parse_duration("1.s", &v), -1);
	assert_int_equal(mm_parse_duration("-1s", &v), -1);
	assert_int_equal(mm_parse_duration("1w", &v), -1);
	assert_int_equal(mm_parse_duration("1 s", &v), -1);
	assert_int_equal(mm_parse_duration("3651d", &v), -1);
	assert_int_equal(mm_parse_duration("99999999999999999999999s", &v), -1);
	assert_int_equal(mm_parse_duration("3650d", &v), 0);
}

/* Each bad line gives exactly its own file:line message. */
static void test_errors_file_line(void **state)
{
	static const struct {
		const char *line;
		const char *message;
	} cases[] = {
		{ "intervall 60s", "t.conf:2: unknown setting \"intervall\"" },
		{ "interval 60", NULL },
		{ "interval soon", "t.conf:2: interval: bad duration \"soon\"" },
		{ "interval 0", "t.conf:2: interval: bad duration \"0\"" },
		{ "interval 1s 2s", "t.conf:2: interval takes 1 value" },
		{ "probe a smtp:h:25 to x@y maildir", "t.conf:2: probe takes NAME TARGET to ADDRESS maildir DIR" },
		{ "probe a smtp:h:25 at x@y maildir /m", "t.conf:2: probe takes NAME TARGET" },
		{ "probe a/b smtp:h:25 to x@y maildir /m", "t.conf:2: probe: bad name \"a/b\"" },
		{ "probe a ftp:h:25 to x@y maildir /m", "t.conf:2: probe a: bad target \"ftp:h:25\"" },
		{ "probe a smtp:h to x@y maildir /m", "t.conf:2: probe a: bad target \"smtp:h\"" },
		{ "probe a lmtp:unix:rel to x@y maildir /m", "t.conf:2: probe a: bad target" },
		{ "probe a smtp:h:99999 to x@y maildir /m", "t.conf:2: probe a: bad target" },
		{ "probe a smtp:h:25 to nobody maildir /m", "t.conf:2: probe a: bad address \"nobody\"" },
		{ "probe a smtp:h:25 to <x@y> maildir /m", "t.conf:2: probe a: bad address" },
		{ "probe a smtp:h:25 to x@y maildir rel/", "t.conf:2: probe a: maildir must be an absolute path" },
		{ "probe first smtp:h:26 to x@y maildir /m", "t.conf:2: probe first is defined twice (first on line 1)" },
		{ "listen smtp 127.0.0.1:25", "t.conf:2: listen takes `metrics` and an address" },
		{ "listen metrics 127.0.0.1", "t.conf:2: listen metrics: bad address \"127.0.0.1\"" },
		{ "listen metrics unix:/run/m.sock", "t.conf:2: listen metrics: bad address" },
		{ "alert_command \"", "t.conf:2: unterminated quoted string" },
		{ "alert_command \"a\"b", "t.conf:2: a quoted string must be followed by a blank" },
		{ "alert_command \"\"", "t.conf:2: alert_command is empty" },
		{ "alert_command a b", "t.conf:2: alert_command takes 1 value" },
		{ "from nobody", "t.conf:2: from: bad address \"nobody\"" },
		{ "helo bad_name", "t.conf:2: helo: bad host name \"bad_name\"" },
		{ "user", "t.conf:2: user takes 1 value" },
		{ "late_after 2h", "t.conf: lost_after must be longer than late_after" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mm_config c;
		char *text;
		assert_true(asprintf(&text, "probe first smtp:h:25 to x@y maildir /m\n%s\n",
		    cases[i].line) > 0);
		int n = parse(&c, text);
		if (cases[i].message == NULL) {
			assert_int_equal(n, 0);
		} else {
			if (n != 1 || strstr(errors, cases[i].message) != errors)
				fail_msg("line \"%s\": got \"%s\", want \"%s\"", cases[i].line, errors,
				    cases[i].message);
		}
		free(text);
		mm_config_free(&c);
	}
}

static void test_whole_file(void **state)
{
	struct mm_config c;
	/* several errors in one run, a setting twice, no probe */
	int n = parse(&c, "# nothing\n\ninterval 1s\ninterval 2s\nbogus\n");
	assert_int_equal(n, 3);
	assert_non_null(strstr(errors, "t.conf:4: interval is set twice\n"));
	assert_non_null(strstr(errors, "t.conf:5: unknown setting \"bogus\"\n"));
	assert_non_null(strstr(errors, "t.conf: no probe: nothing to watch\n"));
	mm_config_free(&c);

	/* a line too long; the next line still counted */
	char *big = malloc(6000);
	memset(big, 'x', 5000);
	strcpy(big + 5000, "\nprobe a smtp:h:25 to x@y maildir /m\nnope\n");
	n = parse(&c, big);
	assert_int_equal(n, 2);
	assert_non_null(strstr(errors, "t.conf:1: line longer than 4096 bytes\n"));
	assert_non_null(strstr(errors, "t.conf:3: unknown setting \"nope\"\n"));
	free(big);
	mm_config_free(&c);

	/* a file that cannot be read */
	mm_config_defaults(&c);
	errors[0] = '\0';
	nerrors = 0;
	assert_int_equal(mm_config_load(&c, "/nonexistent/mailmond.conf", collect), 1);
	assert_non_null(strstr(errors, "/nonexistent/mailmond.conf: cannot read"));
	mm_config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_example),
		cmocka_unit_test(test_every_setting),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_errors_file_line),
		cmocka_unit_test(test_whole_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
