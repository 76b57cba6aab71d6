"""The vendor's wire protocol, without the wire: request forms, body parsing, codes, redaction.

Both clients (requests and aiohttp) send what :func:`carrier_form` and
:func:`balance_form` give and hand the body bytes to :func:`read_carrier` or
:func:`read_balance`, which return the answer or raise the smsroute
exception for it (``code != 0`` becomes the ApiError of that code, an
unreadable body a TransportError). The apikey is masked out of everything
read from the vendor before any message is built from it.
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
    "balance_form",
    "carrier_form",
    "decode_body",
    "read_balance",
    "read_carrier",
    "redact",
]

CARRIER: Final = "/carrier"
BALANCE: Final = "/balance"
MAX_BODY: Final = 64 * 1024  # a real answer is ~200 bytes; anything huge is not one

# The vendor's own document shows JSON with trailing commas: `"balance": "12048",    }`.
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_RES_VALUES: Final = frozenset({0, 1, 3, 4})
_INT_TEXT: Final = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only, bounded
_APIKEY_RE = re.compile(r"(apikey=)[^&\s'\"]+", re.IGNORECASE)


def carrier_form(apikey: str, mobile: str) -> dict[str, str]:
    """Return the parameters of a ``/carrier`` request (form body for POST, query for GET)."""
    return {"apikey": apikey, "mobile": mobile}


def balance_form(apikey: str) -> dict[str, str]:
    """Return the parameters of a ``/balance`` request."""
    return {"apikey": apikey}


def redact(text: str, secret: str | None = None) -> str:
    """Return text with ``apikey=...`` values (and the secret) and mobile numbers masked."""
    text = _APIKEY_RE.sub(r"\1***", text)
    text = mask_numbers(text)
    if secret:
        text = text.replace(secret, "***")
    return text


def read_carrier(content: bytes, mobile: str, apikey: str, *, masked: str = "") -> CarrierInfo:
    """Return the answer in a ``/carrier`` body, or raise the exception its code stands for.

    An unreadable result of a code-0 answer raises a TransportError whose
    ``retryable`` is False: the vendor charged for it, and asking again
    would pay again for the same answer.
    """
    body = _checked(content, CARRIER, apikey, masked)
    try:
        return _parse_carrier(body, mobile)
    except TransportError as exc:
        exc.retryable = False
        raise


def read_balance(content: bytes, apikey: str) -> Balance:
    """Return the balance in a ``/balance`` body, or raise the exception its code stands for."""
    return _parse_balance(_checked(content, BALANCE, apikey, ""))


def _checked(content: bytes, endpoint: str, apikey: str, masked: str) -> Mapping[str, Any]:
    body = decode_body(content, endpoint, apikey)
    code = _int(body.get("code"))
    if code is None:
        raise TransportError(f"{endpoint}: answer has no integer code")
    if code != 0:
        reason = redact(str(body.get("reason", "")), apikey)
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
        raise TransportError(f"/carrier: field {key} is missing or not text")
    return value.strip()


def _parse_carrier(body: Mapping[str, Any], mobile: str) -> CarrierInfo:
    result = body.get("result")
    if not isinstance(result, dict):
        raise TransportError("/carrier: answer has no result object")
    res_text = result.get("res")
    if isinstance(res_text, bool) or not isinstance(res_text, (str, int)):
        raise TransportError("/carrier: field res is missing")
    res = _int(res_text)
    if res is None:
        raise TransportError(f"/carrier: field res is not a number: {str(res_text)[:20]!r}")
    if res not in _RES_VALUES:
        raise TransportError(f"/carrier: unknown res {res}")
    echoed = result.get("Mobile")
    if echoed is not None and str(echoed).strip() != mobile:
        raise TransportError("/carrier: the answer is for another number")
    init_text = _text(result, "Init_isp")
    now_text = _text(result, "Now_isp")
    initial = Carrier.parse(init_text)
    current = Carrier.parse(now_text)
    # An operator we cannot name cannot be routed to: treat it as no answer,
    # so it is never cached and the fallback chain takes over.
    if initial is None:
        raise TransportError(f"/carrier: unknown Init_isp {init_text[:20]!r}")
    if current is None:
        raise TransportError(f"/carrier: unknown Now_isp {now_text[:20]!r}")
    area = _text(result, "Area", required=False)
    if len(area) > 64:
        raise TransportError("/carrier: field Area is too long")
    if not area.isprintable():
        # Control characters or lone surrogates: the shared caches' text form
        # (codec.dumps/loads) refuses them, so such an answer could never be kept.
        raise TransportError("/carrier: field Area is not printable text")
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
