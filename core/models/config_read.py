"""config.json read through transformers, every way it can fail as one line.

Three loaders read a config (a Hugging Face folder or hub id, a workbench
export, an ONNX export), and a config can fail in many ways inside
transformers before any weight is read: unreadable JSON (OSError), an
unknown model_type (ValueError), a field of the wrong type (huggingface_hub's
StrictDataclass validation), or a family's own validator dividing by a head
count of 0 (ZeroDivisionError). The sizes are checked in the raw JSON first,
so the common edit (a size set to 0, negative or text) gets the clear
message rather than the validator's arithmetic error.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.errors import CorruptModelError, ModelNotFoundError, UnsupportedModelError
from core.message_text import first_line
from core.models.config_check import SIZES, refuse_bad_size

# What transformers says when a file's ``auto_map`` names the folder's own code.
CUSTOM_CODE = "contains custom code"


def custom_code_refusal(name: str | Path, file: str) -> str:
    return (
        f"{name}: its {file} asks to run Python code shipped in the folder (auto_map); "
        "the workbench never runs a model folder's own code"
    )


def read_config(name: str | Path):
    """The config of a local folder (``name`` a Path) or a hub id."""
    from transformers import AutoConfig

    if isinstance(name, Path):
        _check_raw_sizes(name)
    try:
        # Never the folder's own Python (an ``auto_map``): unset, transformers
        # asks on stdin, and one "y" (or one waiting in a pipe) imports it.
        return AutoConfig.from_pretrained(name, trust_remote_code=False)
    except OSError as err:
        if isinstance(name, Path):
            raise CorruptModelError(f"Cannot read {name}/config.json: {first_line(err)}") from err
        raise ModelNotFoundError(
            f"{name!s} is not a local folder and could not be fetched from the Hugging Face "
            f"Hub ({first_line(err)})."
        ) from err
    except ValueError as err:  # unknown model_type
        if CUSTOM_CODE in str(err):
            raise UnsupportedModelError(custom_code_refusal(name, "config.json")) from err
        raise UnsupportedModelError(f"{name}: {first_line(err)}") from err
    except Exception as err:  # noqa: BLE001 - only the config's content reaches here
        if "StrictDataclass" in type(err).__name__ and err.__cause__ is not None:
            err = err.__cause__  # the field and the value, not the wrapper
        raise CorruptModelError(
            f"{name}: config.json is refused by transformers' checks "
            f"({type(err).__name__}: {first_line(err)})"
        ) from err


def _check_raw_sizes(folder: Path) -> None:
    """The sizes of config.json (and its text_config) as written in the file."""
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # transformers says what is wrong with the file
    if not isinstance(raw, dict):
        return
    parts = [raw]
    if isinstance(raw.get("text_config"), dict):
        parts.append(raw["text_config"])
    for part in parts:
        for names in SIZES.values():
            for field in names:
                if field in part and part[field] is not None:
                    refuse_bad_size(str(folder), field, part[field])
