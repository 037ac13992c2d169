"""An answer to one trial, as the subject's page posts it (``POST /s/TOKEN/answer``): the
JSON body's fields, the range of each, and the one parser that checks them.

The body is at most ``MAX_BODY_BYTES``, valid UTF-8 JSON (nesting that would exhaust the
parser's recursion is refused like any other bad body) and an object with exactly the fields
of ``ANSWER_FIELDS``. Numbers are finite and within what a browser can report (integers
within SQLite's range by far); timestamps are ISO 8601 dates and times with a time zone, as
``Date.toISOString`` writes them, so no field can carry a spreadsheet formula into the export.
"""

from __future__ import annotations

import json
import math
from datetime import datetime

SIDES = ("left", "right")
INPUTS = ("key", "click")
MAX_TRIAL_ID = 2**53  # far above any study, far below SQLite's 2**63
# (low, high) of each numeric field: what a browser can report, with room to spare
INTEGER_FIELDS = {
    "screen_width": (0, 100_000),
    "screen_height": (0, 100_000),
    "window_width": (0, 100_000),
    "window_height": (0, 100_000),
}
POSITIVE_FIELDS = {"device_pixel_ratio": 50.0, "zoom": 50.0}  # (0, high]
MAX_RESPONSE_MS = 30 * 24 * 3600 * 1000.0  # a page left open for a month
TIME_FIELDS = ("shown_at", "answered_at")
MAX_TIME_TEXT = 40
ANSWER_FIELDS = frozenset(
    ("trial", "chosen", "input", "response_ms", *INTEGER_FIELDS, *POSITIVE_FIELDS, *TIME_FIELDS)
)
MAX_BODY_BYTES = 4096  # an answer is about 350 bytes


class PayloadError(ValueError):
    """A malformed answer; the message says which field and what is valid."""


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(value) -> str:
    """``repr(value)`` cut to 40 characters (an error message never echoes a whole body)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _timestamp(field: str, value) -> str:
    """An ISO 8601 timestamp with a date and a time, as browsers write them
    (``Date.toISOString``); PayloadError otherwise."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TIME_TEXT:
        raise PayloadError(f"{field} must be an ISO 8601 timestamp of 1-{MAX_TIME_TEXT} characters")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PayloadError(f"{field} must be an ISO 8601 timestamp, got {_short(value)}") from None
    if not value[:4].isdigit() or "T" not in value.upper() or parsed.tzinfo is None:
        raise PayloadError(
            f"{field} must be an ISO 8601 date and time with a time zone, got {_short(value)}"
        )
    return value


def parse_answer(payload) -> dict:
    """The validated fields of an answer's JSON body; PayloadError otherwise. The body must
    hold exactly ``ANSWER_FIELDS``, each a value of its type within its range."""
    if not isinstance(payload, dict):
        raise PayloadError("the body must be a JSON object")
    unknown = sorted(str(key) for key in payload if key not in ANSWER_FIELDS)
    if unknown:
        raise PayloadError(f"unknown field(s) {_short(', '.join(unknown))}")
    answer = {}
    trial = payload.get("trial")
    if not isinstance(trial, int) or isinstance(trial, bool) or not 1 <= trial <= MAX_TRIAL_ID:
        raise PayloadError(f"trial must be an integer from 1 to 2**53, got {_short(trial)}")
    answer["trial"] = trial
    chosen = payload.get("chosen")
    if not isinstance(chosen, str) or chosen not in SIDES:
        raise PayloadError(f"chosen must be 'left' or 'right', got {_short(chosen)}")
    answer["chosen"] = chosen
    method = payload.get("input")
    if not isinstance(method, str) or method not in INPUTS:
        raise PayloadError(f"input must be 'key' or 'click', got {_short(method)}")
    answer["input"] = method
    response_ms = payload.get("response_ms")
    if not _is_number(response_ms) or not 0 <= response_ms <= MAX_RESPONSE_MS:
        raise PayloadError(
            f"response_ms must be a number from 0 to {MAX_RESPONSE_MS:.0f} "
            f"(30 days), got {_short(response_ms)}"
        )
    answer["response_ms"] = float(response_ms)
    for field, (low, high) in INTEGER_FIELDS.items():
        value = payload.get(field)
        if not _is_number(value) or not low <= value <= high or value != int(value):
            raise PayloadError(
                f"{field} must be an integer from {low} to {high}, got {_short(value)}"
            )
        answer[field] = int(value)
    for field, high in POSITIVE_FIELDS.items():
        value = payload.get(field)
        if not _is_number(value) or not 0 < value <= high:
            raise PayloadError(f"{field} must be a number > 0 and <= {high:g}, got {_short(value)}")
        answer[field] = float(value)
    for field in TIME_FIELDS:
        answer[field] = _timestamp(field, payload.get(field))
    return answer


def read_json_body(data: bytes):
    """The JSON value of a request body; PayloadError for anything else (bad UTF-8, bad
    JSON, nesting deep enough to exhaust the parser's recursion)."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise PayloadError(f"the body is not JSON ({_short(str(error))})") from None
    except RecursionError:
        raise PayloadError("the body is not an answer (nested too deeply)") from None
