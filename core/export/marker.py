"""The marker every export folder carries, and the rule built on it:
overwrite replaces only a folder the workbench exported.

The marker (``.workbench-export.json``) is written last into the temporary
folder, so a folder that has one holds a complete export. It lists the files
that export wrote: a marked folder into which the user has since put files
of their own is not replaced either (those files would be deleted with it).
An empty folder is replaced too: it holds nothing to lose.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from datetime import datetime, timezone
from pathlib import Path

from core.atomic_folder import ExportTargetError, check_target

MARKER_NAME = ".workbench-export.json"
MARKER_FORMAT = "compression-workbench export"
MARKER_VERSION = 1
MAX_MARKER_BYTES = 1_000_000  # ours are a few kB; never read a large file as a marker
REPLACE_RULE = "only a folder the workbench exported (or an empty one) is replaced"


def write_marker(folder: Path, files, run_id: str | None, recipe_name: str, formats) -> dict:
    """Write the marker into ``folder``; ``files`` are the paths (relative,
    '/'-separated) the export wrote there."""
    marker = {
        "format": MARKER_FORMAT,
        "format_version": MARKER_VERSION,
        "export_id": uuid.uuid4().hex,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_id": run_id,
        "recipe": recipe_name,
        "formats": list(formats),
        "files": sorted(files),
    }
    (Path(folder) / MARKER_NAME).write_text(json.dumps(marker, indent=2))
    return marker


def check_export_target(target: Path, overwrite: bool, protected: tuple[Path, ...] = ()) -> Path:
    """``check_target`` with the export rule: an existing target is replaced
    only if it is an export folder (or empty). Returns the target to write."""
    return check_target(target, overwrite, protected, replaceable=check_replaceable)


def check_replaceable(target: Path) -> None:
    """Raise ExportTargetError unless ``target`` (a real folder, not a link)
    is empty or a workbench export holding only the files it wrote."""
    try:
        info = (target / MARKER_NAME).lstat()
    except FileNotFoundError:
        if not _listing(target):
            return
        raise ExportTargetError(
            f"{target} was not made by a workbench export (it has no {MARKER_NAME}): "
            f"{REPLACE_RULE}; remove it yourself or choose another folder."
        ) from None
    except OSError as err:
        raise ExportTargetError(f"cannot read {target}: {err.strerror}") from err
    if not stat.S_ISREG(info.st_mode):
        raise ExportTargetError(
            f"{target}: its {MARKER_NAME} is not a regular file, so the folder is not replaced."
        )
    marker = _read_marker(target / MARKER_NAME, info.st_size)
    unknown = sorted(set(_entries(target)) - set(marker["files"]) - {MARKER_NAME})
    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise ExportTargetError(
            f"{target} holds files its export did not write ({', '.join(unknown[:3])}{more}); "
            "move them out or choose another folder: nothing was replaced."
        )


def _read_marker(path: Path, size: int) -> dict:
    invalid = ExportTargetError(
        f"{path} is not a valid workbench export marker, so the folder is not replaced."
    )
    if size > MAX_MARKER_BYTES:
        raise invalid
    try:
        marker = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        raise invalid from None
    if not (
        isinstance(marker, dict)
        and marker.get("format") == MARKER_FORMAT
        and type(marker.get("format_version")) is int
        and marker["format_version"] >= 1
        and isinstance(marker.get("export_id"), str)
        and marker["export_id"]
        and isinstance(marker.get("files"), list)
        and all(isinstance(f, str) for f in marker["files"])
    ):
        raise invalid
    return marker


def _listing(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError as err:
        raise ExportTargetError(f"cannot read {folder}: {err.strerror}") from err


def _entries(folder: Path) -> list[str]:
    """Every non-folder entry under ``folder`` ('/'-separated), links
    included and never followed; a folder that cannot be read refuses."""

    def refuse(err: OSError) -> None:
        raise ExportTargetError(f"cannot read {err.filename}: {err.strerror}") from err

    found = []
    for root, dirs, files in os.walk(folder, onerror=refuse):
        linked = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        for name in files + linked:
            found.append(Path(root, name).relative_to(folder).as_posix())
    return found
