"""From a GX validation result to one readable line, and redaction: no identifier-shaped value
(an e-mail, a phone number, a raw user id) ever reaches a reason, a log or the stored result."""

from __future__ import annotations

import math
import re
from typing import Any

from tandem.contract.schema import LABEL_COLUMN
from tandem.data.validation.shapes import QUASI_IDENTIFIER_REGEX
from tandem.privacy.pseudonyms import EMAIL_REGEX, PHONE_REGEX

_EMAIL = re.compile(EMAIL_REGEX)
_PHONE = re.compile(PHONE_REGEX)
_HEX = re.compile(r"^[0-9a-f]{8,64}$")


def _shape(value: Any) -> str | None:
    """How to name a value without showing it, when it must not be shown; None when it may be."""
    if not isinstance(value, str):
        return None
    if _HEX.match(value):
        return None  # digests: pseudonyms are not raw identifiers
    if _EMAIL.search(value):
        return "an e-mail address"
    if _PHONE.search(value):
        return "a phone number"
    return None


def _off_shape_quasi_identifier(column: str | None, value: Any) -> bool:
    """A device-metadata value outside its allowed shape may be an identifier (an advertising id, a serial)."""
    allowed = QUASI_IDENTIFIER_REGEX.get(column or "")
    return bool(allowed) and isinstance(value, str) and not re.match(allowed, value)


def _example(column: str | None, value: Any) -> str:
    shape = _shape(value)
    if shape:
        return shape
    if _off_shape_quasi_identifier(column, value):
        return f"a {len(value)}-character value of another shape"
    if column == "pseudonym" and isinstance(value, str) and not _HEX.match(value):
        return f"a {len(value)}-character non-hex string"  # whatever it is, it may be a raw user id
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _redact_value(column: str | None, value: Any) -> Any:
    if isinstance(value, str) and (_shape(value) or (column == "pseudonym" and not _HEX.match(value))
                                   or _off_shape_quasi_identifier(column, value)):
        return f"<redacted: {_example(column, value)}>"
    return value


def _redact_result(result: dict) -> dict:
    """Replace identifier-shaped example values in a GX result dict (in place) by their shape."""
    for r in result.get("results", []):
        column = (r.get("expectation_config") or {}).get("kwargs", {}).get("column")
        res = r.get("result") or {}
        for key in ("partial_unexpected_list", "unexpected_list"):
            if isinstance(res.get(key), list):
                res[key] = [_redact_value(column, v) for v in res[key]]
        for key in ("partial_unexpected_counts",):
            if isinstance(res.get(key), list):
                for item in res[key]:
                    if isinstance(item, dict) and "value" in item:
                        item["value"] = _redact_value(column, item["value"])
        if isinstance(res.get("observed_value"), list):  # column names
            res["observed_value"] = [_redact_value(None, v) for v in res["observed_value"]]
        details = res.get("details")
        if isinstance(details, dict) and isinstance(details.get("mismatched"), list):
            for m in details["mismatched"]:
                if isinstance(m, dict):
                    for k in ("Expected", "Found"):
                        if k in m:
                            m[k] = _redact_value(None, m[k])
    return result


def _examples(column: str | None, res: dict, limit: int = 2) -> str:
    seen: list[str] = []
    for v in res.get("partial_unexpected_list") or []:
        text = _example(column, v)
        if text not in seen:
            seen.append(text)
        if len(seen) == limit:
            break
    return f" (e.g. {', '.join(seen)})" if seen else ""


def _fmt_num(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


_TYPE_WORDS = {"float64": "float64", "str": "string", "Timestamp": "UTC timestamp"}


def _describe(r: dict) -> tuple[int, str | None, str]:
    """(priority, column, text) of one failed expectation result."""
    cfg = r.get("expectation_config") or {}
    kind, kw = cfg.get("type", "?"), cfg.get("kwargs", {})
    res = r.get("result") or {}
    column = kw.get("column")
    n, total = res.get("unexpected_count"), res.get("element_count")
    of = f"{n} of {total} values" if n is not None and total is not None else "some values"
    eg = _examples(column, res)

    if kind == "expect_table_columns_to_match_ordered_list":
        observed = [str(c) for c in res.get("observed_value") or []]
        expected = list(kw.get("column_list") or [])
        missing = [c for c in expected if c not in observed]
        extra = [c for c in observed if c not in expected]
        parts = []
        if missing:
            parts.append(f"missing column{'s' if len(missing) > 1 else ''} " + ", ".join(_example(None, c) for c in missing[:5])
                         + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
        if extra:
            parts.append(f"unexpected column{'s' if len(extra) > 1 else ''} " + ", ".join(_example(None, c) for c in extra[:5])
                         + (f" (+{len(extra) - 5} more)" if len(extra) > 5 else ""))
        if not parts:
            parts.append("columns are not in the schema's order")
        return 0, None, "columns: " + "; ".join(parts)
    if kind == "expect_table_row_count_to_be_between":
        return 0, None, f"rows: {res.get('observed_value')} rows, at least {kw.get('min_value')} expected"
    if kind == "expect_column_values_to_be_of_type":
        want = _TYPE_WORDS.get(kw.get("type_"), kw.get("type_"))
        return 1, column, f"{column}: type is {res.get('observed_value')}, expected {want}"
    if kind == "expect_column_values_to_not_be_null":
        return 2, column, f"{column}: {of} are null"
    if kind == "expect_column_values_to_match_regex":
        if column == "pseudonym":
            return 3, column, f"pseudonym: {of} are not HMAC pseudonyms (64 lowercase hex){eg}"
        if column == "window_id":
            return 3, column, f"window_id: {of} are not 32 lowercase hex{eg}"
        return 3, column, f"{column}: {of} do not match {kw.get('regex')}{eg}"
    if kind == "expect_column_values_to_not_match_regex":
        what = {EMAIL_REGEX: "e-mail addresses", PHONE_REGEX: "phone numbers"}.get(kw.get("regex"), f"matches of {kw.get('regex')}")
        return 3, column, f"{column}: {of} look like {what}"  # never an example: they are the identifiers
    if kind == "expect_column_values_to_be_in_set":
        if column == LABEL_COLUMN:
            return 4, column, f"label: {of} outside the task's {len(kw.get('value_set') or ())} labels{eg}"
        return 4, column, f"{column}: {of} outside the allowed set{eg}"
    if kind == "expect_column_values_to_be_unique":
        return 4, column, f"{column}: {of} are duplicated within the batch{eg}"
    if kind == "expect_column_values_to_be_between":
        lo, hi = kw.get("min_value"), kw.get("max_value")
        if column == "captured_at":
            return 4, column, f"captured_at: {of} are before {lo} or after {hi}{eg}"
        return 4, column, f"{column}: {of} outside [{_fmt_num(lo)}, {_fmt_num(hi)}]{eg}"
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = kw.get("column_A"), kw.get("column_B")
        return 4, a, f"{a}/{b}: {n} of {total} rows have {a} < {b}"
    if kind == "expect_column_value_lengths_to_be_between":
        return 4, column, f"{column}: {of} are empty or longer than {kw.get('max_value')} characters{eg}"
    return 5, column, f"{column or 'table'}: {kind} failed{eg}"


def _exception_message(info: Any) -> str | None:
    """The first exception message in a GX exception_info, or None when nothing raised.

    GX has two shapes: {"raised_exception": bool, "exception_message": ...} for an expectation,
    and {"<metric id>": {"exception_message": ..., ...}} when a metric it needs failed."""
    if not isinstance(info, dict) or not info:
        return None
    if "raised_exception" in info:
        return (info.get("exception_message") or "error") if info.get("raised_exception") else None
    for value in info.values():
        if isinstance(value, dict) and (value.get("exception_message") or value.get("exception_traceback")):
            return value.get("exception_message") or "error"
    return None


def _trim_tracebacks(result: dict, keep_lines: int = 3) -> None:
    """GX stores a full traceback per failed metric; a broken schema gives hundreds. Keep the tail."""
    def trim(d: dict) -> None:
        tb = d.get("exception_traceback")
        if isinstance(tb, str):
            d["exception_traceback"] = "\n".join(tb.strip().splitlines()[-keep_lines:])

    for r in result.get("results", []):
        info = r.get("exception_info")
        if isinstance(info, dict):
            trim(info)
            for value in info.values():
                if isinstance(value, dict):
                    trim(value)


def _reason(result: dict, max_parts: int = 6) -> str:
    described, broken_columns = [], set()
    failed = [r for r in result.get("results", []) if not r.get("success")]
    for r in failed:
        if _exception_message(r.get("exception_info")) is not None:
            continue
        prio, column, text = _describe(r)
        described.append((prio, column, text))
        if prio <= 1:
            kind = (r.get("expectation_config") or {}).get("type")
            if kind == "expect_table_columns_to_match_ordered_list":
                observed = set(map(str, (r.get("result") or {}).get("observed_value") or []))
                expected = (r.get("expectation_config") or {}).get("kwargs", {}).get("column_list") or []
                broken_columns |= {c for c in expected if c not in observed}
            elif column:
                broken_columns.add(column)
    # A missing or mistyped column explains every other failure on it: those are not listed.
    described = [(prio, column, text) for prio, column, text in described if prio <= 1 or column not in broken_columns]
    # Checks that could not run: worth naming only when no type/column failure explains them.
    unexplained = {}
    for r in failed:
        message = _exception_message(r.get("exception_info"))
        if message is None:
            continue
        kw = (r.get("expectation_config") or {}).get("kwargs", {})
        cols = {kw.get(k) for k in ("column", "column_A", "column_B") if kw.get(k)}
        if cols & broken_columns:
            continue
        message = (str(message).strip().splitlines() or ["error"])[0][:120]
        key = ", ".join(sorted(cols)) or "table"
        unexplained.setdefault(key, f"{key}: a check could not run ({_EMAIL.sub('<e-mail>', message)})")
    described += [(6, None, text) for text in unexplained.values()]
    described.sort(key=lambda p: p[0])
    texts = [t for _, _, t in described]
    if not texts:
        return "failed validation (no failed expectation reported)"
    head = "; ".join(texts[:max_parts])
    more = len(texts) - max_parts
    return (head + (f"; and {more} more" if more > 0 else "")).replace("\n", " ")


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    return _EMAIL.sub("<e-mail>", text)[:300]


def _strip_examples(result: dict) -> dict:
    """Drop every example value from a GX result (in place): for sealed batches (their content is
    not to be stored in the clear anywhere) and anonymized ones (plain quasi-identifiers)."""
    for r in result.get("results", []):
        res = r.get("result") or {}
        for key in ("partial_unexpected_list", "unexpected_list", "partial_unexpected_counts",
                    "partial_unexpected_index_list", "unexpected_index_list", "unexpected_index_query"):
            res.pop(key, None)
        if isinstance(res.get("details"), dict):
            res["details"].pop("value_counts", None)
    return result
