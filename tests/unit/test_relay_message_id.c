/*
 * test_relay_message_id.c - the Message-ID a list manager's copy gets:
 * added only when the header section has none (any case, not a
 * Resent-Message-ID, not a folded line, not in the body), made of the
 * queue id and the host name alone.
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

#include "relay/relay_private.h"

/* message_id_prepare on text stored after a 7-byte prefix (as in a queue
 * file); returns the header it adds, or NULL. */
static char *prepare(const char *text, const char *qid, const char *host)
{
	char path[] = "/tmp/test_relay_mid.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, "PREFIX\n", 7), 7);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	struct relay_job job = { .fd = fd, .msg_offset = 7, .msg_size = strlen(text),
		.qid = (char *)qid };
	assert_int_equal(message_id_prepare(&job, host), 0);
	close(fd);
	return job.add_header;
}

static void expect_kept(const char *text)
{
	char *h = prepare(text, "Q1", "mx.example.test");
	if (h != NULL)
		fail_msg("a Message-ID was added to:\n%s", text);
}

static void expect_added(const char *text)
{
	char *h = prepare(text, "0TPJLHIJGHL00C040001", "mx.example.test");
	if (h == NULL)
		fail_msg("no Message-ID added to:\n%s", text);
	assert_string_equal(h, "Message-ID: <0TPJLHIJGHL00C040001.mailprocd@mx.example.test>\r\n");
	free(h);
}

static void test_present(void **state)
{
	expect_kept("Received: from x\nMessage-ID: <a@b>\nSubject: s\n\nbody\n");
	expect_kept("message-id: <a@b>\n\nbody\n");
	expect_kept("Subject: s\nMESSAGE-ID:<a@b>\n\n");
	/* the last header line, no body */
	expect_kept("Subject: s\nMessage-Id: <a@b>");
}

static void test_missing(void **state)
{
	expect_added("Received: from x\nSubject: s\n\nbody\n");
	expect_added("Resent-Message-ID: <a@b>\nSubject: s\n\nbody\n");
	expect_added("Subject: a folded\n Message-ID: <a@b>\n\nbody\n");
	expect_added("Subject: s\n\nMessage-ID: <in@the.body>\n");
	expect_added("Message-ID <no colon>\n\n");
	expect_added("");
	/* longer than a read */
	char *big = malloc(40100);
	memset(big, 'x', 39990);
	memcpy(big, "X-Long: ", 8);
	strcpy(big + 39990, "\n\nbody\n");
	expect_added(big);
	strcpy(big + 39990, "\nMessage-ID: <late@b>\n\n");
	expect_kept(big);
	free(big);
}

static void test_odd_names(void **state)
{
	/* what goes into the header field is a dot-atom */
	char *h = prepare("Subject: s\n\n", "Q1", "bad host>");
	assert_string_equal(h, "Message-ID: <Q1.mailprocd@localhost>\r\n");
	free(h);
	h = prepare("Subject: s\n\n", "Q1", NULL);
	assert_string_equal(h, "Message-ID: <Q1.mailprocd@localhost>\r\n");
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_present),
		cmocka_unit_test(test_missing),
		cmocka_unit_test(test_odd_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
