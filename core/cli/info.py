"""`workbench info`: describe a model (architecture, sizes, parameters)."""

from __future__ import annotations

from core.cli.common import add_model_args, load
from core.cli.json_out import json_text


def add_parser(sub) -> None:
    info = sub.add_parser("info", help="describe a model: architecture, size, parameters")
    add_model_args(info)
    info.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> None:
    from core.models.description import human_bytes

    d = load(args, "torch").description
    if args.json:
        print(json_text(d.to_dict()))
        return
    print(f"{d.architecture} ({d.model_type}) from {d.source}")
    print(
        f"  layers {d.layers}, hidden {d.hidden_size}, heads {d.attention_heads}/{d.kv_heads} kv,"
        f" MLP {d.intermediate_size or 'not in the config'}, vocab {d.vocab_size}"
    )
    by_dtype = ", ".join(f"{dtype} {human_bytes(n)}" for dtype, n in d.bytes_by_dtype.items())
    print(
        f"  parameters {d.parameters:,}; in memory {human_bytes(d.bytes_in_memory)} "
        f"({by_dtype}); on disk {human_bytes(d.bytes_on_disk)}; device {d.device}"
    )
    for note in d.notes:
        print(f"  note: {note}")
