"""test_postfix_instance.py - the private Postfix fixture proves itself.

Before the through-Postfix tests of mailprocd's policy service can be
trusted, the fixture must be: a real private Postfix (postfix_instance.py)
asking a real, independent policy server -- Debian's postgrey -- must defer
a first attempt and accept the retry after the delay.  If this fails, the
fixture is broken, not mailprocd.
"""

import time

import pytest

import mpharness as H
import postfix_instance as P

# It tests the fixture, not mailprocd: nothing for the sanitizer pass.
pytestmark = [pytest.mark.skipif(P.available() is not None,
                                 reason=P.available() or ""),
              H.normal_pass_only]

DELAY = 2


@pytest.fixture(scope="module")
def postgrey_postfix(tmp_path_factory):
    grey = P.Postgrey(tmp_path_factory.mktemp("postgrey"), delay=DELAY)
    grey.start()
    pfx = P.PostfixInstance(tmp_path_factory.mktemp("pfx-grey"),
                            lmtp="inet:127.0.0.1:9", policy=None,
                            relay_domains=[],
                            discard_domains=["grey.test"],
                            main_cf={})
    pfx.policy = f"inet:127.0.0.1:{grey.port}"
    try:
        pfx.start()
    except BaseException:
        grey.stop()
        raise
    yield pfx, grey
    try:
        pfx.stop()
    finally:
        grey.stop()


def test_postgrey_through_postfix_defers_then_accepts(postgrey_postfix):
    pfx, grey = postgrey_postfix
    rcpt = "someone@grey.test"
    sender = "sender@remote.test"
    with pfx.smtp() as s:
        code, _ = s.mail(sender)
        assert code == 250
        code, msg = s.rcpt(rcpt)
        assert code == 450, f"first attempt: {code} {msg!r}\n" \
            f"postgrey log:\n{grey.log()}\nmaillog:\n{pfx.maillog_tail()}"
        assert b"Greylisted" in msg, msg
        s.rset()
        time.sleep(DELAY + 1)
        code, _ = s.mail(sender)
        assert code == 250
        code, msg = s.rcpt(rcpt)
        assert code == 250, f"retry after the delay: {code} {msg!r}"
        code, msg = s.data(H.make_message(to=rcpt))
        assert code == 250, f"DATA: {code} {msg!r}"
    # it went the whole way through Postfix, to the discard transport
    pfx.wait_log(rf"to=<{rcpt}>.*relay=none.*status=sent")
