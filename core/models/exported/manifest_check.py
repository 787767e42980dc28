"""Read an exported folder's manifest (``workbench_export.json``) as untrusted
input: anyone may have edited the folder, so every field the loaders use is
checked for type and range here, and the weights file must be the one the
writer names, inside the folder (no absolute path, no ``..``, no symlink out).
A bad manifest is refused with one line naming the field.

What can only be checked against the model (module names, tensor shapes)
is checked by ``load_exported.py`` before anything is built.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from core.errors import CorruptModelError, UnsupportedModelError
from core.message_text import first_line
from core.models.exported.layout import MANIFEST, MANIFEST_FORMAT, OWN_WEIGHTS, PLAIN_WEIGHTS
from core.models.exported.module_kinds import KINDS
from core.models.exported.skeleton import HEAD_KEYS

WEIGHTS = {"transformers": PLAIN_WEIGHTS, "workbench": OWN_WEIGHTS}
# Rebuilt buffers (rotary tables) may be kept in one of these.
BUFFER_DTYPES = ("float32", "float16", "bfloat16", "float64")
MAX_MANIFEST_BYTES = 64 << 20  # a 1000-layer model's manifest is a few MB
MAX_HEADS = 1 << 16
# A module or tensor path: identifiers (no leading underscore, so no dunder)
# and list indices, joined by dots.
_PART = re.compile(r"[A-Za-z][A-Za-z0-9_]*|[0-9]+")
SCALARS = (bool, int, float, str, type(None))
REQUIRED = (
    "loader",
    "weights",
    "cpu_only",
    "modules",
    "attributes",
    "buffer_dtypes",
    "aliases",
    "build_overrides",
)


class _Bad(Exception):
    """One problem with the manifest, said in words."""


def is_path_name(name: object) -> bool:
    return isinstance(name, str) and all(_PART.fullmatch(p) for p in name.split("."))


def read_checked_manifest(folder: Path) -> dict | None:
    """The checked manifest of a folder we exported, or None for any other folder."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        _check_links(folder)
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise _Bad(f"{path.stat().st_size} bytes is too large for a manifest")
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except _Bad as err:
        raise CorruptModelError(f"{path} is damaged: {err}") from None
    except (ValueError, RecursionError, OSError) as err:
        raise CorruptModelError(f"{path} is damaged: {first_line(err)}") from None
    if not isinstance(manifest, dict):
        raise CorruptModelError(f"{path} is damaged: a JSON object was expected")
    if type(manifest.get("format")) is not int or manifest["format"] != MANIFEST_FORMAT:
        raise UnsupportedModelError(
            f"{path}: export format {manifest.get('format')!r} is not this one's"
        )
    try:
        _check_fields(manifest)
        _check_weights(folder, manifest["weights"])
    except _Bad as err:
        raise CorruptModelError(f"{path} is damaged: {err}") from None
    return manifest


def _check_fields(m: dict) -> None:
    for key in REQUIRED:
        if key not in m:
            raise _Bad(f"field {key!r} is missing")
    if not isinstance(m["loader"], str) or m["loader"] not in WEIGHTS:
        raise _Bad(f"loader {m['loader']!r} is not one of {sorted(WEIGHTS)}")
    if m["weights"] != WEIGHTS[m["loader"]]:
        raise _Bad(
            f"weights {m['weights']!r}: a {m['loader']} export keeps its weights in "
            f"{WEIGHTS[m['loader']]!r} beside the manifest"
        )
    if type(m["cpu_only"]) is not bool:
        raise _Bad(f"cpu_only must be true or false, not {m['cpu_only']!r}")
    modules = _typed(m, "modules", list)
    for i, entry in enumerate(modules):
        if not isinstance(entry, dict) or set(entry) != {"name", "kind", "attributes"}:
            raise _Bad(f"modules[{i}] must hold exactly name, kind and attributes")
        if not is_path_name(entry["name"]):
            raise _Bad(f"modules[{i}] name {entry['name']!r} is not a module path")
        if not isinstance(entry["kind"], str) or entry["kind"] not in KINDS:
            raise _Bad(f"modules[{i}] kind {entry['kind']!r} is not a kind this loader builds")
        attrs = entry["attributes"]
        allowed = KINDS[entry["kind"]].attribute_names
        if not isinstance(attrs, dict) or set(attrs) != set(allowed):
            raise _Bad(f"modules[{i}] ({entry['kind']}) attributes must be exactly {allowed}")
    if m["loader"] == "transformers" and modules:
        raise _Bad("a transformers export lists no modules of ours")
    cpu_only = any(KINDS[e["kind"]].cpu_only for e in modules)
    if m["cpu_only"] != cpu_only:
        raise _Bad(f"cpu_only is {m['cpu_only']}, but its modules say {cpu_only}")
    for name, values in _typed(m, "attributes", dict).items():
        # "" is the model itself (the writer compares every module, the root too)
        if not (name == "" or is_path_name(name)) or not isinstance(values, dict):
            raise _Bad(f"attributes {name!r} must name a module and hold an object")
        for key, value in values.items():
            if not is_path_name(key) or "." in key:
                raise _Bad(f"attribute name {key!r} of {name} is not allowed")
            if not isinstance(value, SCALARS) or (
                isinstance(value, float) and not math.isfinite(value)
            ):
                raise _Bad(f"attribute {name}.{key} must be a finite number or text")
    for key, dtype in _typed(m, "buffer_dtypes", dict).items():
        if not is_path_name(key) or dtype not in BUFFER_DTYPES:
            raise _Bad(f"buffer_dtypes {key!r}: {dtype!r} is not one of {BUFFER_DTYPES}")
    for alias, target in _typed(m, "aliases", dict).items():
        if not (is_path_name(alias) and is_path_name(target)) or alias == target:
            raise _Bad(f"aliases {alias!r} -> {target!r} are not two tensor names")
    for key, value in _typed(m, "build_overrides", dict).items():
        if key not in HEAD_KEYS:
            raise _Bad(f"build_overrides {key!r} is not one of {HEAD_KEYS}")
        if type(value) is not int or not 0 < value <= MAX_HEADS:
            raise _Bad(f"build_overrides {key} must be a positive integer, not {value!r}")


def _typed(m: dict, key: str, kind: type):
    value = m[key]
    if not isinstance(value, kind):
        raise _Bad(f"field {key!r} must be a JSON {'array' if kind is list else 'object'}")
    return value


def _check_links(folder: Path) -> None:
    """What the loaders open (manifest, config, tokenizer, weights) lies
    inside the folder: no entry may link elsewhere."""
    root = folder.resolve()
    for entry in root.iterdir():
        if entry.is_symlink() and not entry.resolve().is_relative_to(root):
            raise _Bad(f"{entry.name} links outside the folder")


def _check_weights(folder: Path, weights: str) -> None:
    root = folder.resolve()
    path = (root / weights).resolve()
    if path.parent != root:
        raise _Bad(f"weights {weights!r} resolves to a file outside the folder")
    if not path.is_file():
        raise _Bad(f"weights file {weights} is missing")
