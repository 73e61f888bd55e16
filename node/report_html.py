"""The printable form of a signed credit report (公共信用信息报告): one A4 HTML page.

The page shows only what the issuer signed (:class:`federation.reports.CreditReport`), plus
the report number and the verification code of the signed file, and a QR code carrying
``creditnet:report:<report_no>:<verification code>`` so that a clerk can find and check the
file. The paper is a convenience: the signed file and its online status decide
(:func:`federation.reports.verify_offline`, :func:`federation.reports.final_verdict`).

Everything from the report is HTML-escaped, and no resident ID number appears in clear:
the subject's is shown masked (``110105********002X``), and any run of text shaped like a
resident ID number elsewhere in the report is masked too.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterable, Sequence

import segno

from federation.clock import CHINA_TZ
from federation.reports import CreditReport, ReportListEntry, SignedReport
from federation.sanctions import OBJECTION_PENDING, RemovalReason
from federation.subjects import SubjectKind, mask_resident_id

# Digits in ASCII or full width; the last character may be X. Not glued to other letters
# or digits, so that longer numbers (licence numbers) are left alone.
_RESIDENT_SHAPED = re.compile(
    r"(?<![0-9A-Za-z０-９Ａ-Ｚａ-ｚ])[0-9０-９]{17}[0-9０-９XxＸｘ](?![0-9A-Za-z０-９Ａ-Ｚａ-ｚ])"
)

_KIND_ZH = {SubjectKind.USCC: "统一社会信用代码", SubjectKind.RESIDENT_ID: "居民身份证号码"}

_CSS = """
@page { size: A4; margin: 16mm 14mm; }
* { box-sizing: border-box; }
body { font-family: "Noto Serif CJK SC", "Source Han Serif SC", "SimSun", serif;
       font-size: 10.5pt; color: #000; margin: 0 auto; max-width: 182mm; line-height: 1.5; }
header { display: flex; justify-content: space-between; align-items: flex-start;
         border-bottom: 2px solid #000; padding-bottom: 4mm; margin-bottom: 4mm; }
h1 { font-size: 20pt; letter-spacing: 0.3em; margin: 0 0 2mm 0; }
h2 { font-size: 12.5pt; border-left: 4px solid #000; padding-left: 2mm; margin: 6mm 0 2mm 0; }
.ids { font-size: 11pt; }
.ids .value { font-family: "DejaVu Sans Mono", "Consolas", monospace; font-weight: bold; }
.code { font-size: 15pt; letter-spacing: 0.08em; }
.qr { text-align: center; font-size: 8pt; }
.qr svg { display: block; margin: 0 auto; }
table { width: 100%; border-collapse: collapse; margin-bottom: 2mm; }
th, td { border: 1px solid #444; padding: 1mm 1.5mm; vertical-align: top; text-align: left;
         word-break: break-all; white-space: pre-line; }
th { background: #eee; font-weight: bold; }
table.kv th { width: 30%; }
.none { color: #444; }
.active { font-weight: bold; }
footer { border-top: 1px solid #000; margin-top: 6mm; padding-top: 2mm; font-size: 8.5pt; }
@media print {
  body { max-width: none; }
  th { background: #eee !important; -webkit-print-color-adjust: exact;
       print-color-adjust: exact; }
  tr, .qr { page-break-inside: avoid; break-inside: avoid; }
  h2 { page-break-after: avoid; break-after: avoid; }
}
"""


def mask_resident_ids(text: str) -> str:
    """``text`` with every run shaped like a resident ID number masked (6 + 4 kept)."""
    return _RESIDENT_SHAPED.sub(lambda match: mask_resident_id(match.group(0)), text)


def _e(text: str) -> str:
    """Text from the report, safe to put in HTML: identifiers masked, then escaped."""
    return html.escape(mask_resident_ids(text), quote=True)


def _time(value: dt.datetime) -> str:
    return value.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S") + " (北京时间)"


def _date(value: dt.date | None) -> str:
    return value.isoformat() if value is not None else "—"


#: What an empty licences or commitments section says: those are what the issuing city
#: recorded itself (other cities' are not shared), so "none" (无) would say more than it knows.
NONE_RECORDED = "出具机构无记录"


def _table(headings: Sequence[str], rows: Iterable[Sequence[str]], *, empty: str = "无") -> str:
    """A table of already-escaped cells, or ``empty`` when there are no rows."""
    body = ["<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows]
    if not body:
        return f'<p class="none">{html.escape(empty)}</p>'
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headings) + "</tr>"
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _key_values(pairs: Iterable[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in pairs)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


#: Why an entry was removed, as the report's removal reason starts (``RemovalReason``).
_REMOVAL_ZH: dict[str, str] = {
    RemovalReason.REPAIR: "信用修复",
    RemovalReason.EXPIRY: "公示期满",
    RemovalReason.OBJECTION_UPHELD: "异议成立",
    RemovalReason.DECISION_REVOKED: "决定撤销",
}


def _list_state(entry: ReportListEntry) -> str:
    """The entry's state in Chinese, from the report's fields (``why``, the node's English
    sentence of the same, is in the signed file)."""
    if entry.removed_on is not None:
        state = f"已移出 ({_date(entry.removed_on)})"
        if entry.removal_reason:
            code, _, note = entry.removal_reason.partition(": ")
            reason = _REMOVAL_ZH.get(code)  # a StrEnum key is found by its value
            said = f"{reason}{'：' + note if note else ''}" if reason else entry.removal_reason
            state += f"<br>移出原因: {_e(said)}"
        return state
    if entry.active:
        state = f'<span class="active">公示中</span> (至 {_date(entry.publicity_end)})'
        return state + ("<br>异议处理中" if OBJECTION_PENDING in entry.why else "")
    return f"公示期已满 ({_date(entry.publicity_end)})"


def _qr_svg(payload: str) -> str:
    # Medium error correction survives a crease or a stamp on the printed page.
    return segno.make(payload, error="m", micro=False).svg_inline(
        scale=3, border=2, title="核验二维码"
    )


def _subject_rows(report: CreditReport) -> list[tuple[str, str]]:
    subject = report.subject
    rows = [
        ("主体名称", _e(subject.name)),
        (_KIND_ZH[subject.kind], html.escape(subject.masked)),
    ]
    # The registration items that only repeat the name or the identifier shown above.
    rows.extend(
        (_e(label), _e(value))
        for label, value in report.registration
        if value not in (subject.name, subject.id)
    )
    return rows


def render_html(signed: SignedReport, *, issuer_name_zh: str) -> str:
    """The report as a printable A4 HTML page (inline CSS, no external resources).

    ``issuer_name_zh`` (the issuing city's name as this node knows it) is used only for the
    page title; the page body shows only what the report's signature covers.
    """
    report = signed.report
    code = signed.verification_code
    report_no = html.escape(report.report_no)
    meta = [
        ("出具机构", f"{_e(report.issuer_name)} ({html.escape(report.issuer)})"),
        ("出具时间", html.escape(_time(report.issued_at))),
        ("有效期至", html.escape(_time(report.valid_until))),
        ("联盟成员清单版本", f"v{report.manifest_version}"),
    ]
    if report.supersedes is not None:
        meta.append(("替代报告", html.escape(report.supersedes)))
    lists = _table(
        ("名单", "认定部门", "决定书文号", "列入事由", "列入日期", "公示截止", "状态", "来源"),
        (
            (
                html.escape(entry.list_kind.name_zh),
                _e(entry.authority),
                _e(entry.decision_no),
                _e(entry.reason),
                _date(entry.listed_on),
                _date(entry.publicity_end),
                _list_state(entry),
                f"{_e(entry.origin_name)} ({html.escape(entry.origin)})",
            )
            for entry in report.list_entries
        ),
    )
    penalties = _table(
        ("处罚机关", "决定书文号", "决定日期", "处罚内容"),
        (
            (_e(p.authority), _e(p.decision_no), _date(p.decided_on), _e(p.summary))
            for p in report.penalties
        ),
    )
    licences = _table(
        ("许可机关", "许可证号", "许可日期", "许可内容"),
        (
            (_e(lic.authority), _e(lic.licence_no), _date(lic.issued_on), _e(lic.summary))
            for lic in report.licences
        ),
        empty=NONE_RECORDED,
    )
    ratings = _table(
        ("评价机构", "评价体系", "等级", "联盟通用等级", "评价日期", "有效期至"),
        (
            (
                _e(r.issuer),
                _e(r.scale),
                _e(r.grade),
                _e(r.common_grade) if r.common_grade else "—",
                _date(r.issued_on),
                _date(r.valid_until),
            )
            for r in report.ratings
        ),
    )
    commitments = _table(
        ("承诺日期", "承诺内容"),
        ((_date(c.made_on), _e(c.content)) for c in report.commitments),
        empty=NONE_RECORDED,
    )
    return f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>公共信用信息报告 {report_no} — {html.escape(issuer_name_zh)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<div>
<h1>公共信用信息报告</h1>
<div class="ids">报告编号: <span class="value">{report_no}</span></div>
<div class="ids">验证码: <span class="value code">{html.escape(code)}</span></div>
</div>
<div class="qr">{_qr_svg(signed.verification_payload)}扫码核验</div>
</header>
{_key_values(meta)}
<h2>基本信息</h2>
{_key_values(_subject_rows(report))}
<h2>名单信息</h2>
{lists}
<h2>行政处罚</h2>
{penalties}
<h2>行政许可</h2>
{licences}
<h2>信用评价</h2>
{ratings}
<h2>信用承诺</h2>
{commitments}
<footer>
本页为电子签名报告文件的打印件，以签名文件的核验结果和出具机构公布的报告状态为准。
核验时请核对报告编号与验证码：验证码由签名文件计算得出，文件的任何改动都会使其不符。
</footer>
</body>
</html>
"""
