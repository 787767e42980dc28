"""The "hf" export format: the Hugging Face folder, then a check that it
loads back (through ``ExportInputs.reload``, the way a user would load it) to the same
logits as the compressed model; a folder that does not is a failed export."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from core.errors import WorkbenchError
from core.export.formats import ExportInputs, FormatWritten, register_format
from core.export.hf_folder import MANIFEST, write_hf_folder
from core.progress import CancelToken, Progress, ProgressSink

CHECK_TEXT = "The workbench checks that the exported model gives the same logits as before."
# Same weights, same kernels: the reload has so far always been bit-identical;
# the tolerance only absorbs kernels that are not deterministic on some device.
TOLERANCE = 1e-4


class ExportMismatchError(WorkbenchError):
    """The written folder does not reproduce the compressed model."""


@torch.no_grad()
def compare_logits(a: torch.nn.Module, b: torch.nn.Module, ids: torch.Tensor) -> float:
    """Max |logit difference| between two models on the same tokens."""
    la = a(input_ids=ids.to(next(a.parameters()).device)).logits.float().cpu()
    lb = b(input_ids=ids.to(next(b.parameters()).device)).logits.float().cpu()
    if la.shape != lb.shape:
        return float("inf")
    return (la - lb).abs().max().item()


@register_format("hf")
def write_hf(
    inputs: ExportInputs, folder: Path, progress: ProgressSink, cancel: CancelToken
) -> FormatWritten:
    from core.models.size import measure_size

    compressed = inputs.compressed
    progress(Progress("Writing the Hugging Face folder", None))
    plan = write_hf_folder(
        compressed.model,
        inputs.original.tokenizer,
        inputs.original.model.config,
        folder,
        {
            "recipe.json": inputs.recipe.to_dict(),
            "environment.json": inputs.environment,
            **({"provenance.json": inputs.provenance} if inputs.provenance else {}),
        },
        cancel.raise_if_cancelled,
    )
    cancel.raise_if_cancelled()
    progress(Progress("Loading the folder back to check it", None))
    reloaded = inputs.reload(folder, "cpu" if plan.cpu_only else "auto")
    ids = torch.tensor([inputs.original.tokenizer(CHECK_TEXT).input_ids])
    max_diff = compare_logits(compressed.model, reloaded.model, ids)
    measured = measure_size(compressed.model).total_bytes
    reloaded_bytes = measure_size(reloaded.model).total_bytes
    if math.isnan(max_diff):  # NaN never equals NaN: the check cannot pass or say why
        raise ExportMismatchError(
            "the model's logits on the check text are not numbers (NaN weights or "
            "activations), so its export cannot be checked; nothing was kept."
        )
    if not max_diff <= TOLERANCE or reloaded_bytes != measured:
        raise ExportMismatchError(
            f"the exported folder does not reproduce the model (max |logit diff| {max_diff:.3g},"
            f" {reloaded_bytes} bytes against {measured}); nothing was kept."
        )
    files = tuple(sorted(p.name for p in folder.iterdir()))
    loader = "transformers" if plan.plain else "workbench"
    # The Auto class of the model's task: a classifier read by the causal one
    # comes back an LM head of random weights (a sweep followed the advice).
    auto = (
        "AutoModelForSequenceClassification"
        if inputs.original.is_classifier
        else "AutoModelForCausalLM"
    )
    how = (
        f"{auto}.from_pretrained loads it"
        if plan.plain
        else "core.models.loading.load_model loads it (modules transformers cannot rebuild: "
        f"{'; '.join(plan.reasons[:3])}{' ...' if len(plan.reasons) > 3 else ''})"
    )
    return FormatWritten(
        "hf",
        files,
        f"Hugging Face folder, {plan.tensor_bytes / 1e6:.1f} MB of weights; {how}; "
        f"reloaded logits {'identical' if max_diff == 0 else f'within {max_diff:.2g}'}",
        {
            "loader": loader,
            "manifest": MANIFEST,
            "tensor_bytes": plan.tensor_bytes,
            "measured_bytes": measured,
            "reload_max_abs_logit_diff": max_diff,
            "reload_identical": max_diff == 0,
            "not_plain_because": plan.reasons,
        },
    )
