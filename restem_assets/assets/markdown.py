"""Small markdown previews for materialization metadata."""


from collections.abc import Mapping, Sequence
from typing import Any


def _cell(value: Any, width: int) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\n", "⏎").replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], width: int = 80, limit: int = 10) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(_cell(r.get(c), width) for c in columns) + " |\n" for r in rows[:limit])
    return head + body
