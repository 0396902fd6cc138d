/*
 * test_config.c - mailprocd.conf parsing: every key of SPEC.md's example,
 * defaults, and a file:line error for each kind of mistake.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/config.h"

static char errors[8192];

static void collect(const char *msg)
{
	strncat(errors, msg, sizeof(errors) - strlen(errors) - 2);
	strcat(errors, "\n");
}

static int load_text(struct config *c, const char *text)
{
	char path[] = "/tmp/test_config_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	errors[0] = '\0';
	config_defaults(c);
	int n = config_load(c, path, collect);
	unlink(path);
	/* errors name the file; replace it by "F" so tests can compare */
	char *p;
	while ((p = strstr(errors, path)) != NULL) {
		*p = 'F';
		memmove(p + 1, p + strlen(path), strlen(p + strlen(path)) + 1);
	}
	return n;
}

static const char spec_example[] =
	"hostname            mx.example.test\n"
	"listen              lmtp   127.0.0.1:24\n"
	"listen              lmtp   unix:/run/mailprocd/lmtp.sock\n"
	"listen              smtp   127.0.0.1:2525\n"
	"listen              policy 127.0.0.1:9998\n"
	"user                _mailprocd            # unprivileged processes (root mode only)\n"
	"queue_dir           /var/spool/mailprocd\n"
	"db_dir              /var/lib/mailprocd/db\n"
	"db_source_dir       /etc/mailprocd\n"
	"run_dir             /run/mailprocd\n"
	"max_message_size    50M\n"
	"max_sessions        1000\n"
	"session_timeout     300s\n"
	"default_delivery    maildir ~/Maildir/\n"
	"workers_per_user    1\n"
	"worker_idle_timeout 300s\n"
	"relay_host          127.0.0.1:10025       # forwards and bounces go here\n"
	"retry_schedule      1m 5m 15m 1h 4h\n"
	"max_queue_lifetime  5d\n"
	"recipient_delimiter +\n"
	"max_workers         200                   # all users together\n"
	"pipe_timeout        10m\n"
	"delay_warning_time  4h                    # 0 = no delay warnings\n"
	"spam_engine         spamassassin          # or none\n"
	"spam_network_tests  no\n"
	"spam_max_size       512K\n"
	"spam_timeout        60s\n"
	"spam_max_checks     1000                  # a worker retires after this many\n"
	"spam_learn_sync     60s\n";

static void test_spec_example(void **state)
{
	struct config c;
	assert_int_equal(load_text(&c, spec_example), 0);
	assert_string_equal(errors, "");
	assert_string_equal(c.hostname, "mx.example.test");
	assert_int_equal(c.nlisten, 4);
	assert_int_equal(c.listen[0].proto, LISTEN_LMTP);
	assert_string_equal(c.listen[0].host, "127.0.0.1");
	assert_string_equal(c.listen[0].port, "24");
	assert_true(c.listen[1].is_unix);
	assert_string_equal(c.listen[1].path, "/run/mailprocd/lmtp.sock");
	assert_int_equal(c.listen[1].mode, 0666);
	assert_int_equal(c.listen[3].proto, LISTEN_POLICY);
	assert_string_equal(c.user, "_mailprocd");
	assert_int_equal(c.max_message_size, 50 * 1024 * 1024);
	assert_int_equal(c.session_timeout, 300);
	assert_string_equal(c.default_delivery, "maildir ~/Maildir/");
	assert_int_equal(c.nretry, 5);
	assert_int_equal(c.retry_schedule[0], 60);
	assert_int_equal(c.retry_schedule[4], 4 * 3600);
	assert_int_equal(c.max_queue_lifetime, 5 * 86400);
	assert_int_equal(c.recipient_delimiter, '+');
	assert_int_equal(c.spam_engine, 1);
	assert_int_equal(c.spam_network_tests, 0);
	assert_int_equal(c.spam_max_size, 512 * 1024);
	assert_int_equal(c.pipe_timeout, 600);
	config_free(&c);
}

static void test_defaults(void **state)
{
	struct config c;
	assert_int_equal(load_text(&c, "listen lmtp [::1]:2424\n"), 0);
	assert_string_equal(c.listen[0].host, "::1");
	assert_string_equal(c.listen[0].port, "2424");
	assert_non_null(c.hostname);
	assert_int_equal(c.workers_per_user, 1);
	assert_int_equal(c.max_recipients, 1000);
	assert_int_equal(c.recipient_delimiter, '+');
	assert_null(c.user);
	assert_int_equal(c.spam_concurrency, 0);       /* one per core */
	assert_int_equal(c.minimum_uid, 100);
	assert_int_equal(c.delivery_nice, 10);
	config_free(&c);
	assert_int_equal(load_text(&c, "listen lmtp 127.0.0.1:24\ndelivery_nice 0\n"), 0);
	assert_int_equal(c.delivery_nice, 0);
	config_free(&c);
	assert_int_equal(load_text(&c, "listen lmtp 127.0.0.1:24\ndelivery_nice 19\n"), 0);
	assert_int_equal(c.delivery_nice, 19);
	config_free(&c);
	assert_int_equal(load_text(&c, "listen lmtp 127.0.0.1:24\nminimum_uid 1000\n"), 0);
	assert_int_equal(c.minimum_uid, 1000);
	config_free(&c);
}

static void test_spam_concurrency(void **state)
{
	struct config c;
	assert_int_equal(load_text(&c, "listen lmtp 127.0.0.1:24\nspam_concurrency 3\n"), 0);
	assert_int_equal(c.spam_concurrency, 3);
	config_free(&c);
	assert_int_equal(load_text(&c, "listen lmtp 127.0.0.1:24\nspam_concurrency auto\n"), 0);
	assert_int_equal(c.spam_concurrency, 0);
	config_free(&c);
}

static void test_mailbox_settings(void **state)
{
	struct config c;
	assert_int_equal(load_text(&c, "listen lmtp 127.0.0.1:24\n"), 0);
	assert_string_equal(c.mail_spool_group, "mail");
	assert_int_equal(c.mbox_lock_timeout, 30);
	config_free(&c);
	assert_int_equal(load_text(&c, "listen lmtp 127.0.0.1:24\nmail_spool_group none\n"
	    "mbox_lock_timeout 2m\n"), 0);
	assert_null(c.mail_spool_group);
	assert_int_equal(c.mbox_lock_timeout, 120);
	config_free(&c);
	assert_int_equal(load_text(&c, "listen lmtp 127.0.0.1:24\nmail_spool_group 8\n"), 0);
	assert_string_equal(c.mail_spool_group, "8");
	config_free(&c);
}

/* The qmgr's rescan and the relay's idle timeout: today's fixed values by
 * default, settable from 1s to 1h (tests set them short). */
static void test_interval_settings(void **state)
{
	struct config c;
	assert_int_equal(load_text(&c, "listen lmtp 127.0.0.1:24\n"), 0);
	assert_int_equal(c.queue_scan_interval, 60);
	assert_int_equal(c.relay_idle_timeout, 30);
	config_free(&c);
	assert_int_equal(load_text(&c, "listen lmtp 127.0.0.1:24\nqueue_scan_interval 1s\n"
	    "relay_idle_timeout 1h\n"), 0);
	assert_int_equal(c.queue_scan_interval, 1);
	assert_int_equal(c.relay_idle_timeout, 3600);
	config_free(&c);
}

static void test_unix_options(void **state)
{
	struct config c;
	assert_int_equal(load_text(&c, "listen lmtp unix:/tmp/x.sock mode=0660 group=mail\n"), 0);
	assert_int_equal(c.listen[0].mode, 0660);
	assert_string_equal(c.listen[0].group, "mail");
	config_free(&c);
	assert_int_equal(load_text(&c, "\nlisten lmtp unix:/tmp/x.sock mode=0600 owner=root\n"), 0);
	assert_string_equal(c.listen[0].owner, "root");
	assert_int_equal(c.listen[0].owner_uid, 0);
	assert_int_equal(c.listen[0].line, 2);
	config_free(&c);
}

static void test_sessions_per_client(void **state)
{
	struct config c;
	assert_int_equal(load_text(&c, "listen lmtp 127.0.0.1:24\n"), 0);
	assert_int_equal(c.max_sessions_per_client, 50);
	config_free(&c);
	assert_int_equal(load_text(&c, "listen lmtp 127.0.0.1:24\nmax_sessions_per_client 0\n"), 0);
	assert_int_equal(c.max_sessions_per_client, 0);
	config_free(&c);
}

struct bad_case {
	const char *text;
	const char *error;
};

static void test_errors(void **state)
{
	static const struct bad_case cases[] = {
		{ "listen lmtp 127.0.0.1:24\nbogus 1\n", "F:2: unknown setting \"bogus\"" },
		{ "listen lmtp 127.0.0.1:24\nmax_message_size 10X\n", "F:2: max_message_size: bad size" },
		{ "listen lmtp 127.0.0.1:24\nsession_timeout soon\n", "F:2: session_timeout: bad duration" },
		{ "listen lmtp 127.0.0.1:24\nqueue_dir relative/path\n", "F:2: queue_dir must be an absolute path" },
		{ "listen lmtp 127.0.0.1:24\nworkers_per_user 0\n", "F:2: workers_per_user: bad number" },
		{ "listen lmtp 127.0.0.1:24\nspam_engine razor\n", "F:2: spam_engine: expected spamassassin or none" },
		{ "listen lmtp 127.0.0.1:24\nspam_network_tests maybe\n", "F:2: spam_network_tests: expected yes or no" },
		{ "listen lmtp 127.0.0.1:24\nspam_concurrency 0\n", "F:2: spam_concurrency: bad number" },
		{ "listen lmtp 127.0.0.1:24\nspam_concurrency many\n", "F:2: spam_concurrency: bad number" },
		{ "listen ftp 127.0.0.1:24\n", "F:1: listen: unknown protocol \"ftp\"" },
		{ "listen lmtp 127.0.0.1\n", "F:1: listen: expected HOST:PORT" },
		{ "listen lmtp 127.0.0.1:99999\n", "F:1: listen: bad port" },
		{ "listen lmtp unix:relative.sock\n", "F:1: listen: unix socket path must be absolute" },
		{ "listen lmtp unix:/x.sock mode=999\n", "F:1: listen: bad mode" },
		{ "listen lmtp unix:/x.sock owner=no-such-user-xyz\n",
		  "F:1: listen: owner=no-such-user-xyz: unknown user" },
		{ "listen lmtp 127.0.0.1:24 owner=root\n", "F:1: listen: unknown option \"owner=root\"" },
		{ "listen lmtp 127.0.0.1:24\nmax_sessions_per_client -1\n",
		  "F:2: max_sessions_per_client: bad number" },
		{ "listen lmtp 127.0.0.1:24 mode=0660\n", "F:1: listen: unknown option \"mode=0660\"" },
		{ "listen lmtp 127.0.0.1:24\nuser a\nuser b\n", "F:3: user is set twice" },
		{ "listen lmtp 127.0.0.1:24\nrelay_host nowhere\n", "F:2: relay_host: expected HOST:PORT" },
		{ "listen lmtp 127.0.0.1:24\nrecipient_delimiter ++\n", "F:2: recipient_delimiter: one character" },
		{ "listen lmtp 127.0.0.1:24\nretry_schedule 1m never\n", "F:2: retry_schedule: bad duration \"never\"" },
		{ "listen lmtp 127.0.0.1:24\nhostname a/b\n", "F:2: hostname: bad character" },
		{ "listen lmtp 127.0.0.1:24\nmax_sessions\n", "F:2: max_sessions takes 1 value" },
		{ "listen lmtp 127.0.0.1:24\ndefault_delivery\n", "F:2: default_delivery needs an instruction" },
		{ "listen lmtp 127.0.0.1:24\nmail_spool_group a/b\n", "F:2: mail_spool_group: bad group name" },
		{ "listen lmtp 127.0.0.1:24\nmail_spool_group root\n", "F:2: mail_spool_group: not the root group" },
		{ "listen lmtp 127.0.0.1:24\nmail_spool_group 0\n", "F:2: mail_spool_group: not the root group" },
		{ "listen lmtp 127.0.0.1:24\nmbox_lock_timeout 0s\n", "F:2: mbox_lock_timeout: between 1s and 1h" },
		{ "listen lmtp 127.0.0.1:24\nmbox_lock_timeout 2h\n", "F:2: mbox_lock_timeout: between 1s and 1h" },
		{ "listen lmtp 127.0.0.1:24\nmbox_lock_timeout soon\n", "F:2: mbox_lock_timeout: bad duration" },
		{ "listen lmtp 127.0.0.1:24\nqueue_scan_interval 0s\n", "F:2: queue_scan_interval: between 1s and 1h" },
		{ "listen lmtp 127.0.0.1:24\nqueue_scan_interval 2h\n", "F:2: queue_scan_interval: between 1s and 1h" },
		{ "listen lmtp 127.0.0.1:24\nrelay_idle_timeout 0s\n", "F:2: relay_idle_timeout: between 1s and 1h" },
		{ "listen lmtp 127.0.0.1:24\nrelay_idle_timeout 61m\n", "F:2: relay_idle_timeout: between 1s and 1h" },
		{ "listen lmtp 127.0.0.1:24\nminimum_uid 0\n", "F:2: minimum_uid: bad uid \"0\"" },
		{ "listen lmtp 127.0.0.1:24\nminimum_uid -5\n", "F:2: minimum_uid: bad uid" },
		{ "listen lmtp 127.0.0.1:24\ndelivery_nice 20\n",
		  "F:2: delivery_nice: bad number \"20\" (0 to 19)" },
		{ "listen lmtp 127.0.0.1:24\ndelivery_nice -1\n", "F:2: delivery_nice: bad number" },
		{ "listen lmtp 127.0.0.1:24\ndelivery_nice low\n", "F:2: delivery_nice: bad number" },
		{ "# nothing\n", "F: no listen setting" },
		{ "listen lmtp 127.0.0.1:24\nuser x\nhome_base /tmp\n",
		  "F:3: home_base (single-user mode, line 3) and user (root mode, line 2) exclude each other" },
		{ "listen lmtp 127.0.0.1:24\ngreylist_delay 2h\n# c\ngreylist_max_age 1h\n",
		  "F:4: greylist_max_age must be longer than greylist_delay" },
		{ "listen lmtp 127.0.0.1:24\nsession_timeout 3x\n",
		  "F:2: session_timeout: bad duration \"3x\" (use a number with s, m, h, d or w)" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		int n = load_text(&c, cases[i].text);
		if (n == 0 || strstr(errors, cases[i].error) == NULL)
			fail_msg("case %zu: expected \"%s\", got %d errors: \"%s\"", i,
			    cases[i].error, n, errors);
		config_free(&c);
	}
}

static void test_all_errors_reported(void **state)
{
	struct config c;
	assert_int_equal(load_text(&c, "listen lmtp 127.0.0.1:24\nfoo 1\nbar 2\nmax_sessions x\n"), 3);
	assert_non_null(strstr(errors, "F:2:"));
	assert_non_null(strstr(errors, "F:3:"));
	assert_non_null(strstr(errors, "F:4:"));
	config_free(&c);
}

static void test_long_line_and_missing_file(void **state)
{
	struct config c;
	char *text = malloc(10000);
	memset(text, 'a', 9998);
	strcpy(text + 9998, "\n");
	assert_true(load_text(&c, text) >= 1);
	assert_non_null(strstr(errors, "F:1: line longer than"));
	free(text);
	config_free(&c);

	config_defaults(&c);
	errors[0] = '\0';
	assert_int_equal(config_load(&c, "/nonexistent/mailprocd.conf", collect), 1);
	assert_non_null(strstr(errors, "/nonexistent/mailprocd.conf: cannot open"));
	config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_example),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_spam_concurrency),
		cmocka_unit_test(test_mailbox_settings),
		cmocka_unit_test(test_interval_settings),
		cmocka_unit_test(test_unix_options),
		cmocka_unit_test(test_sessions_per_client),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_all_errors_reported),
		cmocka_unit_test(test_long_line_and_missing_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
