"""The printable HTML page of a signed credit report."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html.parser
from typing import Any

import pytest
import segno
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.errors import CreditNetError
from federation.reports import ReportCommitment, SignedReport, sign_report
from federation.sanctions import OBJECTION_PENDING
from federation.signing import SigningKey
from node.report_html import NONE_RECORDED, mask_resident_ids, render_html
from tests.federation.fixtures.reports import (
    ISSUED,
    PERSON_ID,
    full_report,
    list_entry,
    minimal_report,
)

KEY = SigningKey.generate()
HEADINGS = ("公共信用信息报告", "报告编号", "验证码", "基本信息", "名单信息", "行政处罚")
HEADINGS += ("行政许可", "信用评价", "信用承诺")


def render(document: SignedReport) -> str:
    return render_html(document, issuer_name_zh="青岛市")


class _Tags(html.parser.HTMLParser):
    """The start tags of a page, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    return parser


def test_page_shows_number_code_headings_and_every_section() -> None:
    document = sign_report(full_report(), KEY)
    page = render(document)
    assert page.startswith("<!DOCTYPE html>")
    assert document.report.report_no in page
    assert document.verification_code in page
    for heading in HEADINGS:
        assert heading in page
    for text in (
        "青岛海润贸易有限公司",
        "91110000600037341L",  # a company's code is public
        "严重失信主体名单",
        "烟发改信〔2026〕12号",
        "已移出 (2025-11-20)",
        "公示中",
        "青环罚〔2025〕88号",
        "JY13702000012345",
        "纳税信用等级",
        "承诺所提交材料真实有效。",
        "2026-06-01 14:30:00 (北京时间)",
        "2026-08-30 14:30:00 (北京时间)",
    ):
        assert text in page, text
    assert "size: A4" in page and "@media print" in page
    assert "<script" not in page and "http" not in page.replace("http://www.w3.org", "")


def test_empty_sections_say_so() -> None:
    page = render(sign_report(minimal_report(), KEY))
    # Lists, penalties and ratings: none held. Licences and commitments: none recorded here.
    assert page.count('<p class="none">无</p>') == 3
    assert page.count(f'<p class="none">{NONE_RECORDED}</p>') == 2


def test_the_qr_code_carries_the_verification_payload() -> None:
    document = sign_report(full_report(), KEY)
    payload = f"creditnet:report:{document.report.report_no}:{document.verification_code}"
    assert document.verification_payload == payload
    expected = segno.make(payload, error="m", micro=False).svg_inline(
        scale=3, border=2, title="核验二维码"
    )
    page = render(document)
    assert expected in page
    other = segno.make(payload + "X", error="m", micro=False).svg_inline(
        scale=3, border=2, title="核验二维码"
    )
    assert other not in page


def test_each_entrys_state_is_said_in_chinese() -> None:
    report = dataclasses.replace(
        full_report(),
        list_entries=(
            *full_report().list_entries,
            list_entry(decision_no="烟发改信〔2026〕13号", why=f"listed on 2026-01-10, public "
                       f"until 2029-01-09; {OBJECTION_PENDING}"),
            list_entry(decision_no="烟发改信〔2023〕1号", listed_on=dt.date(2023, 1, 10),
                       publicity_end=dt.date(2026, 1, 9), active=False,
                       why="publicity ended on 2026-01-09"),
        ),
    )  # fmt: skip
    cells = [c for c in parse(render(sign_report(report, KEY))).text if c.strip()]
    text = "".join(cells)
    assert "公示中 (至 2029-01-09)" in text
    assert "已移出 (2025-11-20)移出原因: 信用修复：已完成信用修复" in text
    assert "异议处理中" in text
    assert "公示期已满 (2026-01-09)" in text
    assert "publicity ended" not in text and "listed on" not in text


def test_the_subject_is_shown_once() -> None:
    page = render(sign_report(full_report(), KEY))
    # The registration repeats the name and the code: the page shows them once.
    assert page.count("<td>青岛海润贸易有限公司</td>") == 1
    assert page.count("91110000600037341L") == 1
    assert "<th>法定代表人</th><td>李四</td>" in page


def test_everything_from_the_report_is_escaped() -> None:
    script = "<script>alert('x')</script>"
    report = dataclasses.replace(
        full_report(),
        issuer_name=f"青岛{script}",
        registration=(("名称", script), (f"<b>{script}</b>", "a & b \" '")),
        list_entries=(list_entry(reason=script, why=script),),
        commitments=(ReportCommitment(made_on=ISSUED.date(), content=script),),
    )
    page = render_html(sign_report(report, KEY), issuer_name_zh=script)
    assert "<script" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "a &amp; b &quot; &#x27;" in page


def test_a_resident_id_never_appears_in_clear() -> None:
    full_width = "".join(chr(ord(ch) + 0xFEE0) for ch in PERSON_ID)
    report = dataclasses.replace(
        minimal_report(),
        registration=(("姓名", "张三"), ("身份证号", PERSON_ID), ("备注", f"证件{full_width}号")),
        commitments=(ReportCommitment(made_on=ISSUED.date(), content=f"本人{PERSON_ID}承诺"),),
    )
    document = sign_report(report, KEY)
    page = render(document)
    assert PERSON_ID not in page and PERSON_ID.lower() not in page
    assert full_width not in page
    assert "110105********002X" in page
    assert "居民身份证号码" in page
    # The signed file itself is where the clear identifier lives.
    assert PERSON_ID.encode() in document.to_bytes()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (PERSON_ID, "110105********002X"),
        (f"号码:{PERSON_ID}。", "号码:110105********002X。"),
        ("11010519491231002x", "110105********002x"),
        ("JY13702000012345", "JY13702000012345"),  # a licence number: not 18 digits
        ("1101051949123100211", "1101051949123100211"),  # 19 digits: some other number
        ("A11010519491231002X", "A11010519491231002X"),  # glued to a letter: a code
    ],
)
def test_mask_resident_ids(text: str, expected: str) -> None:
    assert mask_resident_ids(text) == expected


BASELINE_TAGS = parse(render(sign_report(full_report(), KEY))).tags


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_no_text_can_add_markup(text: str) -> None:
    try:
        commitment = ReportCommitment(made_on=ISSUED.date(), content=text)
        report = dataclasses.replace(full_report(), commitments=(commitment,))
    except CreditNetError:
        return
    page = render(sign_report(report, KEY))
    assert parse(page).tags == BASELINE_TAGS


def _report_with(**changes: Any) -> SignedReport:
    return sign_report(dataclasses.replace(full_report(), **changes), KEY)


def test_a_superseding_report_names_the_one_it_replaces() -> None:
    page = render(_report_with(supersedes="370200-20260501-000003"))
    assert "替代报告" in page and "370200-20260501-000003" in page
    assert "替代报告" not in render(_report_with())
