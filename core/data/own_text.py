"""A text of the user's own to evaluate on: a UTF-8 text file (one document)
or JSONL with a string ``text`` field on every line (one document a line).

Everything that can be wrong with the file is found here, before a model is
loaded, and said in one line (``TextFileError``, a ValueError: the CLI exits
2). The file is read, never written; its sha256 names it in protocol labels,
so a number can be traced to the exact bytes it was measured on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

JSONL_SUFFIXES = (".jsonl", ".ndjson")
# The full protocol scores ~100k tokens (a few hundred KiB); more only costs
# tokenizing, which holds ~200-260 bytes of memory per byte of text (a fast
# tokenizer's encoding of a 50 MB file peaked at 8.7 GB): 4 MiB stays near 1 GB.
MAX_BYTES = 4 * 2**20


class TextFileError(ValueError):
    """A text file that cannot be evaluated on, with the reason in one line."""


@dataclass(frozen=True)
class OwnText:
    path: str  # resolved
    sha256: str
    size_bytes: int
    documents: tuple[str, ...]

    @property
    def name(self) -> str:
        return Path(self.path).name

    def label(self) -> str:
        return f"the file {self.name} (sha256 {self.sha256[:12]})"


def read_text_file(path: str | Path) -> OwnText:
    """The file's documents, checked; TextFileError says what is wrong."""
    file = Path(path).expanduser()
    if not file.exists():
        raise TextFileError(f"no such text file: {file}")
    if not file.is_file():
        raise TextFileError(f"{file} is not a file")
    stat = file.stat()
    if stat.st_size > MAX_BYTES:
        raise TextFileError(
            f"{file} has {stat.st_size / 2**20:.1f} MiB; the limit is {MAX_BYTES // 2**20} MiB "
            "(a few hundred KiB fill the full protocol): give a part of it"
        )
    return _read(str(file.resolve()), stat.st_mtime_ns, stat.st_size)


def check_fills_window(text: OwnText, context_tokens: int) -> None:
    """Refuse a text too short for one window before any tokenizer is at hand:
    a token covers at least one byte, so fewer bytes than window tokens can
    never fill one (the exact count is checked once tokenized)."""
    size = sum(len(d.encode("utf-8")) for d in text.documents)
    if size < context_tokens:
        raise TextFileError(
            f"{text.name} holds {size} bytes of text: too small to fill one "
            f"{context_tokens}-token window"
        )


@lru_cache(maxsize=4)
def _read(path: str, _mtime_ns: int, _size: int) -> OwnText:
    raw = Path(path).read_bytes()
    name = Path(path).name
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff")  # a UTF-16 byte-order mark
        advice = ": it is UTF-16 (its byte-order mark says so); save it as UTF-8" if utf16 else ""
        raise TextFileError(
            f"{name} is not UTF-8 text (byte {err.start} is not valid){advice}"
        ) from None
    if "\x00" in content:
        raise TextFileError(f"{name} holds NUL characters: it looks binary, not text")
    content = content.removeprefix("\ufeff")  # a byte-order mark is not text
    if Path(path).suffix.lower() in JSONL_SUFFIXES:
        documents = _jsonl_documents(name, content)
    else:
        documents = (content.strip(),) if content.strip() else ()
    if not documents:
        raise TextFileError(f"{name} holds no text")
    return OwnText(path, hashlib.sha256(raw).hexdigest(), len(raw), documents)


def _jsonl_documents(name: str, content: str) -> tuple[str, ...]:
    documents = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise TextFileError(f"{name} line {number} is not JSON") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise TextFileError(f'{name} line {number} has no string "text" field')
        if record["text"].strip():
            documents.append(record["text"].strip())
    return tuple(documents)
