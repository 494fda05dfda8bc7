"""From table columns to the requests' content: field mapping, conversation handling, polite variant.

What a record becomes (see docs/plans.md):
- a text field (`prompt`, `text`, ... or `--field prompt=COLUMN`) → `prompt` = that text;
- a conversation (`messages` as role/content, or ShareGPT `conversations` as from/value):
  - conversation mode `first` (default) → `prompt` = the first user turn;
  - conversation mode `full` → `messages` = every turn up to and including the last user turn
    (a trailing assistant reply is dropped so the model answers the last user turn).
- polite (`--polite`, the paper's "thank you" variant):
  - a `prompt` gets "\\n\\nThank you!" appended (one user turn: there is no reply to thank);
  - `messages` in `full` mode keep every turn, the final assistant reply included, and get one more
    user turn {"role": "user", "content": "Thank you!"} — the paper's `conversation_with_thanks`;
    a conversation that already ends with a user turn gets "\\n\\nThank you!" appended to that turn,
    so roles still alternate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from foundation.errors import InputError
from traffic.prompts.tables import Table

POLITE_TURN = "Thank you!"
FIELD_ROLES = ("prompt", "messages", "id")
# How a conversation becomes a request (module docstring); PlanSpec validates --conversation against it.
ConversationMode = Literal["first", "full"]
_PROMPT_COLUMNS = ("prompt", "text", "instruction", "question")
_MESSAGE_COLUMNS = ("messages", "conversations", "conversation")
_ID_COLUMNS = ("prompt_id", "id")
_ROLES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "system": "system",
}


@dataclass
class Rendered:
    ids: list[str]
    prompts: list[str | None]
    messages: list[list[dict[str, str]] | None]
    skipped: int  # records with no usable text (empty prompt, no user turn)
    fields: dict[str, str]  # role -> column actually used


def render_table(table: Table, fields: dict[str, str], conversation: str, polite: bool) -> Rendered:
    used = _resolve_fields(table, fields, conversation)
    id_values = table.column(used["id"]) if "id" in used else None
    ids: list[str] = []
    prompts: list[str | None] = []
    messages: list[list[dict[str, str]] | None] = []
    skipped = 0
    if "prompt" in used:
        values = table.column(used["prompt"])
        for i, value in enumerate(values):
            text = _text(table, i, used["prompt"], value)
            if not text.strip():
                skipped += 1
                continue
            ids.append(_id(id_values, i))
            prompts.append(polite_text(text) if polite else text)
            messages.append(None)
    else:
        values = table.column(used["messages"])
        for i, value in enumerate(values):
            turns = _turns(table, i, used["messages"], value)
            prompt, chat = _render_conversation(turns, conversation, polite)
            if prompt is None and chat is None:
                skipped += 1
                continue
            ids.append(_id(id_values, i))
            prompts.append(prompt)
            messages.append(chat)
    return Rendered(ids, prompts, messages, skipped, used)


def _resolve_fields(table: Table, fields: dict[str, str], conversation: str) -> dict[str, str]:
    for role, named in fields.items():
        if role not in FIELD_ROLES:
            raise InputError(f"--field {role}={named}: unknown role {role!r} (use {', '.join(FIELD_ROLES)})")
        if named not in table.names:
            raise InputError(
                f"{table.origin}: field {named!r} not found (columns: {', '.join(table.names) or 'none'})"
            )
    used: dict[str, str] = {}
    id_column = fields.get("id") or _first_present(table, _ID_COLUMNS)
    if id_column:
        used["id"] = id_column
    if conversation == "full":
        column = fields.get("messages") or _first_present(table, _MESSAGE_COLUMNS)
        if not column:
            raise InputError(
                f"{table.origin}: --conversation full needs a conversation column "
                f"(columns: {', '.join(table.names)}); use --field messages=COLUMN"
            )
        used["messages"] = column
        return used
    if "prompt" in fields:
        used["prompt"] = fields["prompt"]
    elif "messages" in fields:
        used["messages"] = fields["messages"]
    elif column := _first_present(table, _PROMPT_COLUMNS):
        used["prompt"] = column
    elif column := _first_present(table, _MESSAGE_COLUMNS):
        used["messages"] = column
    else:
        raise InputError(
            f"{table.origin}: no prompt field (columns: {', '.join(table.names) or 'none'}); "
            "use --field prompt=COLUMN or --field messages=COLUMN"
        )
    return used


def _first_present(table: Table, candidates: tuple[str, ...]) -> str | None:
    return next((c for c in candidates if c in table.names), None)


def _id(values: list[Any] | None, i: int) -> str:
    if values is None or values[i] is None or values[i] == "":
        return str(i)
    return str(values[i])


def _text(table: Table, i: int, column: str, value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{table.origin}: {table.where(i)}: field {column!r} is not text")
    return value


def _turns(table: Table, i: int, column: str, value: Any) -> list[dict[str, str]]:
    where = f"{table.origin}: {table.where(i)}: field {column!r}"
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None  # not JSON at all: refused below, like JSON that is not a list
    if not isinstance(value, list):
        raise InputError(f"{where} is not a conversation (a JSON list of turns)")
    turns = []
    for turn in value:
        if not isinstance(turn, dict):
            raise InputError(f"{where}: a turn is not an object")
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if role not in _ROLES or not isinstance(content, str):
            raise InputError(f"{where}: a turn lacks a known role and text content ({str(turn)[:60]})")
        turns.append({"role": _ROLES[role], "content": content})
    return turns


def _render_conversation(
    turns: list[dict[str, str]], mode: str, polite: bool
) -> tuple[str | None, list[dict[str, str]] | None]:
    users = [i for i, t in enumerate(turns) if t["role"] == "user" and t["content"].strip()]
    if not users:
        return None, None
    if mode == "first":
        text = turns[users[0]]["content"]
        return (polite_text(text) if polite else text), None
    if not polite:
        return None, turns[: users[-1] + 1]
    if turns[-1]["role"] == "user":
        return None, [*turns[:-1], {"role": "user", "content": polite_text(turns[-1]["content"])}]
    return None, [*turns, {"role": "user", "content": POLITE_TURN}]


def polite_text(text: str) -> str:
    return f"{text}\n\n{POLITE_TURN}"
