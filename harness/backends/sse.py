"""Incremental Server-Sent Events parser that follows the WHATWG rules exactly.

Lines end at CR LF, CR or LF and nowhere else. Python's `str.splitlines()` (and httpx's
`aiter_lines()`, which uses it) also splits at U+2028, U+2029, U+0085, VT, FF and FS/GS/RS: generated
text containing any of those inside a JSON string would cut a `data:` line in two and break the
chunk. So this parser splits raw bytes (UTF-8 never uses the bytes 0x0A or 0x0D inside a multi-byte
character) and decodes each line on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str = "message"
    id: str | None = None


class SSEParser:
    """Feed it bytes as they arrive; it returns the events those bytes completed."""

    def __init__(self) -> None:
        self._buffer = b""
        self._skip_lf = False  # the previous feed ended with CR: a leading LF belongs to that line end
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not self._started and chunk:
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        buffer = self._buffer + chunk
        events: list[SSEEvent] = []
        if b"\r" not in buffer:  # the common case: LF-only streams
            *lines, self._buffer = buffer.split(b"\n")
            for line in lines:
                self._line(line, events)
            return events
        pos = 0
        for match in _EOL.finditer(buffer):
            self._line(buffer[pos : match.start()], events)
            pos = match.end()
            if match.group() == b"\r" and pos == len(buffer):
                self._skip_lf = True
        self._buffer = buffer[pos:]
        return events

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are buffered (the spec discards them at EOF)."""
        return bool(self._buffer.strip() or self._data)

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(SSEEvent("\n".join(self._data), self._event or "message", self._last_id))
            self._data = []
            self._event = ""
            return
        if line[0] == 0x3A:  # ":" starts a comment (servers send them as keep-alives)
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\x00" not in value:
            self._last_id = value.decode("utf-8", "replace")
        # "retry" and unknown fields are ignored, as the spec says.
