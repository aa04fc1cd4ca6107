"""Small checks and conversions every Store method uses."""

from __future__ import annotations

import json
import uuid

from bi_ide.errors import ValidationError


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def to_json(value) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValidationError(f"config is not JSON-serialisable: {e}", field="config") from e


def check_text(field: str, value, limit: int = 200) -> None:
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise ValidationError(f"{field} must be a string of 1 to {limit} characters, got {value!r:.60}", field=field)
