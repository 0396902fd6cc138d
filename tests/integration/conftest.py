"""conftest.py - fixtures for the mailprocd integration tests.

Run: /usr/bin/python3 -m pytest tests/integration
Env: MAILPROCD_BUILD (default <repo>/build), MAILPROCD_SANITIZED=1 for an
ASan/UBSan build (longer timeouts; sanitizer reports fail the test).

As root (CI) the single-user daemon runs as a throwaway account created for
the session (setpriv), and the root-mode tests run; as an ordinary user the
daemon runs as that user and the root-mode tests are skipped.
"""

import subprocess

import pytest

import mpharness as H


def pytest_report_header(config):
    return (f"mailprocd build: {H.build_dir()}  sanitized: {H.SANITIZED}  "
            f"root: {H.IS_ROOT}  deadline: {H.DEADLINE:.0f}s")


@pytest.fixture(scope="session")
def run_as(tmp_path_factory):
    """The account single-user daemons run as: a throwaway system user when
    we are root, None (ourselves) otherwise."""
    base = tmp_path_factory.getbasetemp()
    if not H.IS_ROOT:
        yield None
        return
    H.make_traversable(base)
    acct = H.create_user("mpt-")
    try:
        yield acct
    finally:
        for d in list(H.LIVE):
            d.emergency_kill()
        H.delete_user(acct)


@pytest.fixture(autouse=True)
def _sanitizer_watch():
    """Fail a test whose run made any live daemon print a sanitizer report."""
    for d in H.LIVE:
        d.new_sanitizer_lines()
    yield
    bad = []
    for d in list(H.LIVE):
        bad += d.new_sanitizer_lines()
    assert not bad, "sanitizer report during this test:\n" + "\n".join(bad)


@pytest.fixture
def tmpfs():
    """mount(path, size, owner) a tmpfs for this test; unmounted after it
    (after the daemons of the test are stopped: daemons depends on this)."""
    if not H.IS_ROOT:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mounts = []

    def mount(path, size, owner=None):
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755",
                        "tmpfs", str(path)], check=True)
        mounts.append(path)
        H.chown_tree(path, owner)
        return path

    yield mount
    for p in reversed(mounts):
        if subprocess.run(["umount", str(p)]).returncode != 0:
            subprocess.run(["umount", "-l", str(p)])


@pytest.fixture
def daemons(tmp_path, run_as, request):
    """Factory for function-scoped daemons: daemons(name, **Daemon kwargs)
    returns a prepared (compiled, not started) Daemon; all are stopped at
    the end of the test (a stop failure fails the test)."""
    made = []
    # make sure a tmpfs requested by the test outlives its daemons
    if "tmpfs" in request.fixturenames:
        request.getfixturevalue("tmpfs")

    def make(name="d", compile=True, **kw):
        kw.setdefault("run_as", run_as)
        d = H.Daemon(tmp_path / name, **kw)
        if compile:
            d.compile()
        made.append(d)
        return d

    yield make
    errors = []
    for d in made:
        if d.proc is not None:
            try:
                d.stop()
            except BaseException as e:   # pytest.fail raises BaseException
                errors.append(str(e))
                d.emergency_kill()
    if errors:
        pytest.fail("\n".join(errors))

