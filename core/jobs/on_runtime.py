"""Putting a built model on a runtime: as it is (PyTorch eager), compiled
now (never timed), or exported to ONNX (or found in the export cache) and
opened in ONNX Runtime; with the provenance a run keeps so that its export
is what was measured."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.progress import CancelToken, Progress, ProgressSink, ignore_progress
from core.runtime.registry import check_supports


@dataclass(frozen=True)
class Prepared:
    """A model ready on a runtime, the notes a result on it carries, and the
    provenance fields that identify exactly what ran (RunRecord.artifact)."""

    loaded: object  # core.models.loading.LoadedModel
    notes: tuple[str, ...]
    artifact: dict


def prepare(
    candidate,
    key: str,
    tokens: int,
    progress: ProgressSink = ignore_progress,
    cancel: CancelToken | None = None,
) -> Prepared:
    """``candidate`` ready to run on runtime ``key`` for runs of up to
    ``tokens`` tokens: as it is, compiled now (never timed), or exported to
    ONNX (or found in the export cache) and opened in ONNX Runtime."""
    from core.runtime.runners import is_onnx_runtime

    chosen = check_supports(key, candidate.task)
    artifact = {"runtime": chosen.key, "runtime_label": chosen.label}
    if is_onnx_runtime(candidate.model):  # a loaded graph runs as it was built
        return _loaded_graph(candidate, artifact)
    if chosen.compiled:
        from core.runtime.compiled_runner import compile_decode
        from core.runtime.runners import COMPILED_RUNNER

        progress(Progress("Compiling the decode step (torch.compile; takes a while)", None))
        seconds = compile_decode(candidate.model, tokens)
        note = (
            f"decode compiled by torch.compile (inductor, frozen weights) in {seconds:.0f} s "
            "before timing; quality is measured on the same weights in eager PyTorch; "
            "an export holds those eager weights"
        )
        artifact |= {"compile_s": round(seconds, 1), "weights": "eager (same as measured)"}
        return Prepared(dataclasses.replace(candidate, runner=COMPILED_RUNNER), (note,), artifact)
    if chosen.onnx:
        from core.onnx.cache import graph_digest, open_cached_export

        progress(Progress("Exporting to ONNX (or reading the export cache)", None))
        folder, loaded = open_cached_export(
            candidate, "auto", progress, cancel,
            chosen.int8, chosen.calibration, chosen.weight_bits, chosen.fused,
        )  # fmt: skip
        artifact |= {"onnx_cache_entry": folder.name, "onnx_sha256": graph_digest(folder)}
        if chosen.calibration:
            artifact["onnx_calibration"] = chosen.calibration
        if chosen.fused:
            from core.onnx.fused import fused_settings

            artifact["onnx_fused"] = fused_settings(chosen.weight_bits)
        elif chosen.weight_bits:
            from core.onnx.nbits import nbits_settings

            artifact["onnx_weight_only"] = nbits_settings(chosen.weight_bits)
        note = (
            f"measured on the ONNX graph ({_graph_words(chosen)}) "
            f"sha256 {artifact['onnx_sha256'][:12]}; an export holds this graph beside the "
            "PyTorch folder it was made from"
        )
        notes = (note,)
        if limit := loaded.model.exact_positions:
            artifact["onnx_exact_positions"] = limit
            notes += (
                f"the graph matches the model up to {limit} positions, the original context "
                "of its long-context RoPE (past it the model switches to its long factors, "
                "which the graph does not follow); longer sequences are refused",
            )
        return Prepared(loaded, notes, artifact)
    return Prepared(candidate, (), artifact)


def _loaded_graph(candidate, artifact: dict) -> Prepared:
    from core.onnx.cache import graph_digest

    folder = candidate.model.path.parent
    artifact = {**artifact, "onnx_sha256": graph_digest(folder)}
    note = (
        f"measured on the loaded ONNX graph ({candidate.model.runner_name}) sha256 "
        f"{artifact['onnx_sha256'][:12]}, as it was exported"
    )
    return Prepared(candidate, (note,), artifact)


def _graph_words(chosen) -> str:
    if chosen.fused:
        from core.onnx.fused import fused_settings

        settings = fused_settings(chosen.weight_bits)
        words = f"fused by {settings['builder']}'s builder: GroupQueryAttention, fused QKV"
        if chosen.weight_bits:
            words += (
                f", int{chosen.weight_bits} weight-only MatMulNBits, blocks of "
                f"{settings['block_size']}, int8 compute"
            )
        if settings.get("method") == "gptq":
            words += ", decoder layers rounded by GPTQ (act-order) on the calibration split"
        if "head_bits" in settings:
            words += f", the head (and a tied embedding) in int{settings['head_bits']} blocks"
        return words
    if chosen.weight_bits:
        from core.onnx.nbits import BLOCK_SIZE

        return (
            f"int{chosen.weight_bits} weight-only, MatMulNBits, blocks of {BLOCK_SIZE}, "
            "int8 compute"
        )
    if chosen.int8:
        return "int8, quantize_dynamic"
    if chosen.calibration:
        return f"int8, quantize_static, {chosen.calibration} calibration on the calibration split"
    return "fp32"


def check_exportable(key: str, loaded, recipe=None) -> None:
    """Refuse, in one line and before anything is built, a runtime that needs
    an ONNX export of a family, or of a recipe, the export cannot take."""
    from core.errors import UnsupportedModelError

    if refusal := runtime_refusal(key, loaded.model, recipe):
        raise UnsupportedModelError(refusal)


def runtime_refusal(key: str, model, recipe=None, measuring: bool = True) -> str | None:
    """Why runtime ``key`` cannot run ``recipe`` on ``model`` (one line, from
    the config and the recipe alone: the window greys Run with it), or None.
    ``measuring`` False (an export's ONNX file, not a run) lets a 16-bit cast
    through: the file is an fp32 graph of the rounded weights and says so."""
    from core.onnx.traceable import onnx_recipe_refusal
    from core.runtime.onnx.families import export_refusal
    from core.runtime.registry import runtime
    from core.runtime.runners import is_onnx_runtime

    chosen = runtime(key)
    if not chosen.onnx or is_onnx_runtime(model):
        return None
    refusal = export_refusal(model.config)
    if refusal is None and recipe is not None:
        refusal = onnx_recipe_refusal(recipe, chosen.key)
    if refusal is None and recipe is not None and measuring:
        refusal = half_cast_refusal(recipe)
    if refusal is None and chosen.fused:
        from core.onnx.fused import fused_refusal

        refusal = fused_refusal(model.config)
    if refusal is None and chosen.fused and recipe is not None:
        refusal = fused_recipe_refusal(recipe)
    return refusal


def half_cast_refusal(recipe) -> str | None:
    """The exporter traces an fp32 copy (core.onnx.export._exportable_copy),
    so a 16-bit cast would be timed and sized as an fp32 graph under an fp16
    or bf16 name (a sweep found such runs stored)."""
    casts = [p for p in recipe.passes if p.name == "cast"]
    if casts:
        return (
            f"cast:dtype={casts[0].dtype}: the ONNX graph runs in float32 here, so the cast "
            "would be measured upcast under a 16-bit name; run cast on torch or torch-compile"
        )
    return None


def fused_recipe_refusal(recipe) -> str | None:
    """The fused graph is written by onnxruntime-genai's builder from a plain
    Hugging Face folder; a factored layer's pair of matrices is not one, and
    the builder, reloading it, filled those layers with random weights (a
    sweep found such a graph measured and exported)."""
    factored = [p.name for p in recipe.passes if p.kind == "low_rank"]
    if factored:
        return (
            f"{factored[0]}: the fused graph is built from a plain transformers folder and a "
            "factored layer is not one; use ort, ort-w8 or ort-w4 for low-rank recipes"
        )
    return None
