"""``credit-node subject check``: output, exit codes, and no resident ID in clear."""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from collections.abc import Callable, Sequence

import pytest

from federation.errors import CreditNetError, ErrorCode
from federation.subjects import resident_id_check_char, uscc_check_char
from node.cli import subject


def _subject_only_main(argv: Sequence[str]) -> int:
    """The dispatch of ``node.cli.main.main``, with only the ``subject`` group registered."""
    parser = argparse.ArgumentParser(prog="credit-node")
    subject.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except CreditNetError as exc:
        print(f"credit-node: error: {exc.diagnostics()}", file=sys.stderr)
        return 2 if exc.code is ErrorCode.INVALID_INPUT else 1
    return code


# The other command groups are being written concurrently; while one of them does not
# import, test through the same dispatch with only this group.
main: Callable[[Sequence[str]], int]
try:
    from node.cli.main import main
except Exception:  # pragma: no cover - depends on the state of the other CLI modules
    main = _subject_only_main

USCC = "91110000600037341L"
USCC_MA = "91350200MA2YJ1XR9G"
RESIDENT = "11010519491231002X"
RESIDENT_MASKED = "110105********002X"
BAD_RESIDENT = "110105194912310021"
BAD_USCC = "91110000600037341M"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["subject", "check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_all_valid_exits_0_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, USCC, RESIDENT, "９１３５０２００ma2yj1xr9g")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["uscc", USCC, USCC],
        ["resident-id", RESIDENT_MASKED, RESIDENT_MASKED],
        ["uscc", USCC_MA, USCC_MA],
    ]


def test_columns_are_aligned(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, USCC, RESIDENT, "123", BAD_USCC, USCC + "1")
    starts = [[m.start() for m in re.finditer(r"\S+", line)][:4] for line in out.splitlines()]
    assert len(starts) == 5
    for column in (1, 2, 3):
        assert len({row[column] for row in starts if len(row) > column}) == 1, starts


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        (BAD_USCC, "USCC check character (position 18) is 'M', expected 'L'"),
        (BAD_RESIDENT, "resident ID check character (position 18) is '1', expected 'X'"),
        ("110105491231002", "15-digit first-generation ID numbers are not accepted"),
        ("9111000060003734", "must be 18 characters long, got 16"),
    ],
)
def test_invalid_exits_2_with_reason(
    capsys: pytest.CaptureFixture[str], identifier: str, expected: str
) -> None:
    code, out, _ = run(capsys, USCC, identifier)
    assert code == 2
    valid_line, invalid_line = out.splitlines()
    assert valid_line.startswith("uscc ")
    assert invalid_line.startswith("invalid ")
    assert expected in invalid_line
    assert identifier not in invalid_line  # invalid input is shown masked only


def test_warning_is_printed_for_a_valid_code(capsys: pytest.CaptureFixture[str]) -> None:
    first17 = "91110000600037342"  # organisation code check character should be 1
    code, out, _ = run(capsys, first17 + uscc_check_char(first17))
    assert code == 0
    assert "warning: organisation code check character (position 17) is '2'" in out


def test_no_resident_id_in_clear_in_text_or_json(capsys: pytest.CaptureFixture[str]) -> None:
    first17 = "37020219800517123"
    other = first17 + resident_id_check_char(first17)
    ids = (RESIDENT, RESIDENT.lower(), "110105 19491231 002X", BAD_RESIDENT, other)
    for extra in ([], ["--json"]):
        code, out, err = run(capsys, *ids, *extra)
        assert code == 2
        for clear in (RESIDENT, BAD_RESIDENT, other, "19491231", "19800517"):
            assert clear not in out and clear not in err


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--json", USCC, RESIDENT, BAD_USCC)
    assert code == 2
    assert json.loads(out) == [
        {
            "valid": True,
            "kind": "uscc",
            "normalized": USCC,
            "masked": USCC,
            "reason": None,
            "warnings": [],
        },
        {
            "valid": True,
            "kind": "resident-id",
            "normalized": None,
            "masked": RESIDENT_MASKED,
            "reason": None,
            "warnings": [],
        },
        {
            "valid": False,
            "kind": "invalid",
            "normalized": None,
            "masked": "911100********341M",
            "reason": "USCC check character (position 18) is 'M', expected 'L'",
            "warnings": [],
        },
    ]


def test_dash_reads_stdin_one_per_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{USCC}\n\n  {RESIDENT}\r\n{USCC_MA}"))
    code, out, _ = run(capsys, USCC_MA, "-")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == [
        "uscc",
        "uscc",
        "resident-id",
        "uscc",
    ]
    assert RESIDENT not in out


def test_invalid_line_on_stdin_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{USCC}\n{BAD_RESIDENT}\n"))
    code, out, _ = run(capsys, "-")
    assert code == 2
    assert out.splitlines()[1].startswith("invalid ")


def test_undecodable_stdin_is_a_clean_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(b"\xff\xfe\xfa\n"), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)
    code, out, err = run(capsys, "-")
    assert code == 2
    assert out == ""
    assert err.startswith("credit-node: error: standard input is not valid text")


def test_subject_needs_a_verb_and_check_needs_an_identifier(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["subject"], ["subject", "check"]):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
    assert "usage:" in capsys.readouterr().err
