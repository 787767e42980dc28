"""The bearer token: made at the first start with ``secrets``, kept with
mode 0600 in the user's config folder, or read from a file the user names.

A token file others can read is refused (as ssh refuses such a key): the
token is the only thing between the network and the model.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from core.errors import WorkbenchError

TOKEN_NAME = "serve-token"
MIN_CHARS = 16
MAX_BYTES = 1024


class TokenFileError(WorkbenchError):
    """The token file cannot be used (missing, empty, readable by others ...)."""


@dataclass(frozen=True)
class Token:
    value: str
    path: Path
    new: bool  # made now: shown to the person this once


def config_dir() -> Path:
    """The user's config folder (``$WORKBENCH_CONFIG_DIR`` overrides it)."""
    override = os.environ.get("WORKBENCH_CONFIG_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir("compression-workbench"))


def default_token_path() -> Path:
    return config_dir() / TOKEN_NAME


def server_token(token_file: Path | None = None) -> Token:
    """The token named by ``token_file``, or the kept one (made at first use)."""
    if token_file is not None:
        return Token(read_token_file(Path(token_file)), Path(token_file), False)
    path = default_token_path()
    if path.exists() or path.is_symlink():
        return Token(read_token_file(path), path, False)
    return Token(_make_token(path), path, True)


def read_token_file(path: Path) -> str:
    """The token in ``path``: a regular file only its owner can read, holding
    one line of at least 16 printable, non-space ASCII characters."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise TokenFileError(f"token file {path} does not exist") from None
    except OSError as err:
        raise TokenFileError(f"token file {path} cannot be read: {err.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise TokenFileError(f"token file {path} is not a regular file")
    if sys.platform != "win32" and info.st_mode & 0o077:
        raise TokenFileError(
            f"token file {path} can be read by others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run: chmod 600 {path}"
        )
    if info.st_size > MAX_BYTES:
        raise TokenFileError(f"token file {path} is over {MAX_BYTES} bytes; it holds one token")
    try:
        text = path.read_bytes().decode("ascii")
    except (OSError, UnicodeDecodeError):
        raise TokenFileError(f"token file {path} is not ASCII text") from None
    token = text.strip()
    if not token:
        raise TokenFileError(f"token file {path} is empty")
    if any(not c.isprintable() or c.isspace() for c in token):
        raise TokenFileError(f"token file {path} must hold one token: one line, no spaces")
    if len(token) < MIN_CHARS:
        raise TokenFileError(
            f"the token in {path} has {len(token)} characters; use at least {MIN_CHARS}"
        )
    return token


def _make_token(path: Path) -> str:
    """A new token written with mode 0600 from the start (never a moment readable)."""
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another server made it a moment ago: use that one
        return read_token_file(path)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    return token
