"""driftctl.secret: the hashed title of a resource whose title holds a secret, and redaction of
secrets a cut left in pieces (issue 8 §2)."""

from __future__ import annotations

import pytest

from driftctl.secret import CUT_PIECE, REDACTED, mentions, redact, redact_data, secret_title

CANARY = "CANARY-5e1f0c9a2b7d4e6f8a1c3b5d"


def test_secret_title_is_stable_short_and_says_nothing() -> None:
    t = secret_title("exec", f"/usr/bin/touch /var/tmp/{CANARY}")
    assert t == secret_title("exec", f"/usr/bin/touch /var/tmp/{CANARY}")  # run after run, host after host
    assert t.startswith("secret-") and len(t) == len("secret-") + 12 and int(t[7:], 16) >= 0
    assert CANARY[7:17] not in t and "CANARY" not in t


def test_secret_title_follows_the_secret_and_the_type() -> None:
    title = f"/usr/bin/touch /var/tmp/{CANARY}"
    assert secret_title("exec", title) != secret_title("exec", title.replace(CANARY, CANARY[:-1] + "0"))
    assert secret_title("exec", title) != secret_title("line", title)


def test_mentions() -> None:
    assert mentions(f"x{CANARY}y", {CANARY}) and not mentions("nothing", {CANARY}) and not mentions("x", {""})


@pytest.mark.parametrize("text,expected", [
    # an output tail cut inside the secret: its last characters start a line
    (f"command exited 3 (expected 0):\n{CANARY[17:]}xxxx", f"command exited 3 (expected 0):\n{REDACTED}xxxx"),
    (f"{CANARY[20:]} and more", f"{REDACTED} and more"),
    # an argv shortened for a message: the secret's first characters end it
    (f"/usr/bin/touch /var/tmp/c-{CANARY[:12]} timed out after 1s",
     f"/usr/bin/touch /var/tmp/c-{REDACTED} timed out after 1s"),
    (f"argv: /bin/x {CANARY[:9]}", f"argv: /bin/x {REDACTED}"),
    (f"argv: /bin/x {CANARY[:9]}... (cut)", f"argv: /bin/x {REDACTED}... (cut)"),
    # the whole secret, as before
    (f"a {CANARY} b {CANARY}", f"a {REDACTED} b {REDACTED}"),
])
def test_pieces_of_a_secret_at_a_cut_are_redacted(text: str, expected: str) -> None:
    assert redact(text, [CANARY]) == expected
    assert redact_data({"k": [text]}, [CANARY]) == {"k": [expected]}


def test_short_pieces_and_pieces_inside_words_stay() -> None:
    short = CANARY[: CUT_PIECE - 1]
    assert redact(f"x {short}", [CANARY]) == f"x {short}"
    # not at a cut: a prefix that runs on into other text, a suffix glued to a word before it
    assert redact(f"{CANARY[:9]}zz", [CANARY]) == f"{CANARY[:9]}zz"
    assert redact(f"zz{CANARY[-9:]}", [CANARY]) == f"zz{CANARY[-9:]}"
    # short secrets: only whole values (their pieces are ordinary words too often)
    assert redact("hunt hunter2", ["hunter2"]) == f"hunt {REDACTED}"
