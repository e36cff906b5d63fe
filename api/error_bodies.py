"""Error bodies that can always be sent: JSON that encodes whatever text it holds, and 422
details that never echo a large or unencodable input back.

Why: FastAPI's default 422 repeats each invalid input in full (a 50 MB field came back in a
50 MB answer), and a lone surrogate (``"\\ud800"``, valid in JSON text, not in UTF-8) made the
response's UTF-8 encoding raise: a 500 for bad input.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

ECHO_CHARS = 100  # an echoed string is cut to this many characters
ECHO_ITEMS = 5  # an echoed list or object keeps this many entries


class SafeJSONResponse(JSONResponse):
    """UTF-8 JSON; text that UTF-8 cannot carry (lone surrogates) goes out as \\u escapes."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def clip(value: Any, depth: int = 0) -> Any:
    """A small, encodable stand-in for an input echoed in an error."""
    if isinstance(value, str):
        text = value.encode("utf-8", "backslashreplace").decode("utf-8")
        return text if len(text) <= ECHO_CHARS else f"{text[:ECHO_CHARS]}... ({len(value)} characters)"
    if isinstance(value, (bytes, bytearray)):
        return clip(bytes(value[: ECHO_CHARS * 4]).decode("utf-8", "replace"), depth)
    if isinstance(value, dict):
        if depth >= 2:
            return f"<object of {len(value)} keys>"
        items = list(value.items())[:ECHO_ITEMS]
        return {clip(str(k)): clip(v, depth + 1) for k, v in items}
    if isinstance(value, (list, tuple)):
        if depth >= 2 or len(value) > ECHO_ITEMS:
            return f"<list of {len(value)} items>"
        return [clip(v, depth + 1) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return clip(str(value), depth)


def validation_detail(errors: list[dict]) -> list[dict]:
    """FastAPI's 422 ``detail`` list with every echoed part clipped (field names kept)."""
    out = []
    for error in errors[:20]:  # a list of 1000 bad items names the first ones
        entry = {
            "loc": [clip(x) if isinstance(x, str) else x for x in error.get("loc", ())],
            "msg": clip_text(str(error.get("msg", ""))),
            "type": str(error.get("type", "value_error")),
        }
        if "input" in error:
            entry["input"] = clip(error["input"])
        if error.get("ctx"):
            entry["ctx"] = {str(k): clip(v) for k, v in error["ctx"].items()}
        out.append(entry)
    return out


def clip_text(text: str, limit: int = 500) -> str:
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "..."
