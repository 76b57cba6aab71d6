"""The vendor's wire protocol, without the wire: request forms, body parsing, codes, redaction.

Both clients (requests and aiohttp) send what :func:`carrier_form` and
:func:`balance_form` give and hand the body bytes to :func:`read_carrier` or
:func:`read_balance`, which return the answer or raise the smsroute
exception for it (``code != 0`` becomes the ApiError of that code, an
unreadable body a TransportError). The vendor's text is untrusted: the
apikey and numbers are masked out of everything read from it, and control
characters stripped and length capped (:func:`safe_text`), before any
message is built from it.

What a TransportError says about billing is on the exception (set by
:func:`mark`, read by :func:`maybe_billed` and :func:`unusable`):

* ``maybe_billed``: the request went out and no answer said it was free;
* ``timed_out``: the failure was the deadline;
* ``unusable``: the field that makes a code-0 answer (charged) unusable,
  e.g. ``"Area"``; such an answer is never retried, and a router should
  remember it for the number briefly instead of buying it again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final, cast

from smsroute.carrier import Carrier
from smsroute.errors import TransportError, error_for_code
from smsroute.models import Balance, CarrierInfo
from smsroute.phonetext import mask_numbers

__all__ = [
    "BALANCE",
    "CARRIER",
    "MAX_BODY",
    "REASONS",
    "REASON_LIMIT",
    "balance_form",
    "carrier_form",
    "decode_body",
    "mark",
    "maybe_billed",
    "read_balance",
    "read_carrier",
    "redact",
    "safe_text",
    "unusable",
]

REASONS: Final[Mapping[int, str]] = {
    0: "Succ",
    1: "请求参数缺失,apikey长度不对,查询的手机号码长度不对,查询的手机号码有误",
    -1: "apikey信息不匹配(用户信息不正确)apikey不正确",
    -2: "查询的手机号码长度不对",
    -3: "请填写正确的手机号码",
    -4: "未查询到相关信息或填写正确的手机号码再查询",
    -5: "当前余额不足发起本次查询请求,请与供应商联系",
    -8: "系统错误,请稍候再试",
    -9: "ip地址鉴权失败",
}
"""The vendor's reason text for each code of its code table (its document, 错误码)."""

CARRIER: Final = "/carrier"
BALANCE: Final = "/balance"
MAX_BODY: Final = 64 * 1024  # a real answer is ~200 bytes; anything huge is not one
REASON_LIMIT: Final = 200
"""Characters of the vendor's ``reason`` kept in an exception (and so in log lines)."""

# The vendor's own document shows JSON with trailing commas: `"balance": "12048",    }`.
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_RES_VALUES: Final = frozenset({0, 1, 3, 4})
_INT_TEXT: Final = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only, bounded
_APIKEY_RE = re.compile(r"(apikey=)[^&\s'\"]+", re.IGNORECASE)
# What must not reach a terminal or a log line from the vendor: C0 and C1
# controls (ESC sequences rewrite the screen, BEL rings), DEL, surrogates,
# and the invisible format characters that reorder or hide text (bidi
# overrides and isolates, zero-width characters, BOM).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069"
    "\ufeff\ufff9-\ufffb\ud800-\udfff]"
)
_SPACES = re.compile(r"\s+")  # newlines, tabs, U+2028...: one line per message
# 省-市 (or a province alone) in CJK place names: 湖北-宜昌, 内蒙古-呼和浩特,
# 广西壮族自治区-南宁市, 新疆-克孜勒苏柯尔克孜自治州. Nothing else is an Area.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff"
_AREA = re.compile(f"[{_HAN}]{{2,10}}(?:-[{_HAN}]{{0,12}})?")


def mark(
    exc: TransportError,
    *,
    maybe_billed: bool,
    timed_out: bool = False,
    retryable: bool = True,
    unusable: str = "",
) -> TransportError:
    """Return ``exc`` with what it says about billing set on it (see the module docstring)."""
    # Attributes rather than subclasses, so that the fallback reasons and the
    # error counts keep saying "TransportError".
    exc.retryable = retryable
    exc.maybe_billed = maybe_billed
    exc.timed_out = timed_out
    exc.unusable = unusable
    return exc


def maybe_billed(exc: BaseException) -> bool:
    """Return True when the lookup that raised ``exc`` may have been charged for."""
    return getattr(exc, "maybe_billed", False) is True


def unusable(exc: BaseException) -> str:
    """Return the field that made a charged answer unusable ("" for any other error)."""
    field = getattr(exc, "unusable", "")
    return field if isinstance(field, str) else ""


def _unusable(message: str, field: str) -> TransportError:
    # A code-0 answer was charged for: asking again would pay again for it.
    return mark(TransportError(message), maybe_billed=True, retryable=False, unusable=field)


def carrier_form(apikey: str, mobile: str) -> dict[str, str]:
    """Return the parameters of a ``/carrier`` request (form body for POST, query for GET)."""
    return {"apikey": apikey, "mobile": mobile}


def balance_form(apikey: str) -> dict[str, str]:
    """Return the parameters of a ``/balance`` request."""
    return {"apikey": apikey}


def redact(text: str, secret: str | None = None) -> str:
    """Return text with ``apikey=...`` values (and the secret) and mobile numbers masked."""
    # The secret first: `apikey=` values end at "&", which a key may contain.
    if secret:
        text = text.replace(secret, "***")
    text = _APIKEY_RE.sub(r"\1***", text)
    return mask_numbers(text)


def safe_text(text: str, secret: str | None = None, *, limit: int = REASON_LIMIT) -> str:
    """Return untrusted text fit for a one-line message: no controls, secrets masked, capped."""
    # Controls go before masking, so that digits split by them are masked as
    # the number they spell; the cap comes last, so that it cannot cut a
    # secret into a fragment that no longer matches.
    text = _UNSAFE.sub("", _SPACES.sub(" ", text)).strip()
    text = redact(text, secret)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_carrier(content: bytes, mobile: str, apikey: str, *, masked: str = "") -> CarrierInfo:
    """Return the answer in a ``/carrier`` body, or raise the exception its code stands for.

    A code-0 answer that cannot be used raises a TransportError whose
    ``unusable`` names the field at fault, never retried: the vendor charged
    for it, and asking again would pay again for the same answer.
    """
    return _parse_carrier(_checked(content, CARRIER, apikey, masked), mobile)


def read_balance(content: bytes, apikey: str) -> Balance:
    """Return the balance in a ``/balance`` body, or raise the exception its code stands for."""
    return _parse_balance(_checked(content, BALANCE, apikey, ""))


def _checked(content: bytes, endpoint: str, apikey: str, masked: str) -> Mapping[str, Any]:
    body = decode_body(content, endpoint, apikey)
    code = _int(body.get("code"))
    if code is None:
        raise TransportError(f"{endpoint}: answer has no integer code")
    if code != 0:
        reason = safe_text(str(body.get("reason", "")), apikey)
        raise error_for_code(code, reason, endpoint=endpoint, mobile=masked)
    return body


def decode_body(content: bytes, endpoint: str, apikey: str) -> Mapping[str, Any]:
    """Return the JSON object of a body (tolerating the vendor's trailing commas)."""
    if len(content) > MAX_BODY:
        raise TransportError(f"{endpoint}: body of over {MAX_BODY} bytes is not an answer")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TransportError(f"{endpoint}: body is not UTF-8") from None
    if apikey and apikey in text:
        # A vendor that echoes the key (in a reason, an error page) must not
        # put it into our messages: mask it before anything reads the body.
        text = text.replace(apikey, "***")
    try:
        body = json.loads(text, object_pairs_hook=_unique)
    except ValueError:
        try:
            body = json.loads(_TRAILING_COMMA.sub(r"\1", text), object_pairs_hook=_unique)
        except (ValueError, RecursionError):
            snippet = redact(text[:200])[:40]
            raise TransportError(f"{endpoint}: body is not JSON: {snippet!r}") from None
    except RecursionError:
        raise TransportError(f"{endpoint}: body is nested too deeply") from None
    if not isinstance(body, dict):
        raise TransportError(f"{endpoint}: body is not a JSON object")
    return cast("Mapping[str, Any]", body)


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of a repeated key: "code" -8 then 0, or two
    # different Now_isp, is an ambiguous answer and must not be cached.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("a key is repeated")
    return obj


def _int(value: object) -> int | None:
    """Return an int or ASCII-digit text as an int, else None (int() takes "٣", "1_0", "²")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value)
    return None


def _text(result: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = result.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _unusable(f"/carrier: field {key} is missing or not text", key)
    return value.strip()


def _parse_carrier(body: Mapping[str, Any], mobile: str) -> CarrierInfo:
    result = body.get("result")
    if not isinstance(result, dict):
        raise _unusable("/carrier: answer has no result object", "result")
    res_text = result.get("res")
    if isinstance(res_text, bool) or not isinstance(res_text, (str, int)):
        raise _unusable("/carrier: field res is missing", "res")
    res = _int(res_text)
    if res is None:
        raise _unusable(f"/carrier: field res is not a number: {str(res_text)[:20]!r}", "res")
    if res not in _RES_VALUES:
        raise _unusable(f"/carrier: unknown res {res}", "res")
    echoed = result.get("Mobile")
    if echoed is not None and str(echoed).strip() != mobile:
        raise _unusable("/carrier: the answer is for another number", "Mobile")
    init_text = _text(result, "Init_isp")
    now_text = _text(result, "Now_isp")
    initial = Carrier.parse(init_text)
    current = Carrier.parse(now_text)
    # An operator we cannot name cannot be routed to: treat it as no answer,
    # so it is never cached and the fallback chain takes over.
    if initial is None:
        raise _unusable(f"/carrier: unknown Init_isp {init_text[:20]!r}", "Init_isp")
    if current is None:
        raise _unusable(f"/carrier: unknown Now_isp {now_text[:20]!r}", "Now_isp")
    area = _text(result, "Area", required=False)
    if len(area) > 64:
        raise _unusable("/carrier: field Area is too long", "Area")
    if area and not _AREA.fullmatch(area):
        # Validated as what it is, not as printable text: `=cmd|' /C calc'!A0`
        # is printable, and would reach a spreadsheet through an export. A
        # vendor that sends it is not to be trusted for the operator either.
        raise _unusable("/carrier: field Area is not a 省-市 place name", "Area")
    return CarrierInfo(mobile, res, area, initial, current, result)


def _parse_balance(body: Mapping[str, Any]) -> Balance:
    result = body.get("result")
    if not isinstance(result, dict):
        raise TransportError("/balance: answer has no result object")
    fee_type = result.get("feeType")
    value = result.get("balance")
    if not isinstance(fee_type, str):
        raise TransportError("/balance: field feeType is missing")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TransportError("/balance: field balance is missing")
    remaining = _int(value)
    if remaining is None:
        raise TransportError(f"/balance: balance is not a number: {str(value)[:20]!r}")
    return Balance(fee_type.strip(), remaining, result)
