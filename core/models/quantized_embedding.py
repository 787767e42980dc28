"""A token embedding stored in int8, one symmetric scale per token row.

Why by hand: torch and transformers have no int8 embedding that runs
eagerly on the CPU (torch.ao's quantized Embedding needs its own backend
and a qint8 tensor our exports cannot write). A lookup is a gather of int8
rows times their scales, so this is a few lines; and when the output head
shares the matrix (tied weights), its Int8WeightOnlyLinear holds the very
same int8 tensor and scales, so one quantized copy serves both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _cast_dtype(fn, dtype: torch.dtype) -> torch.dtype:
    """The float dtype ``fn`` (a module ``_apply`` function) casts ``dtype`` to:
    a model cast after quantizing (``.to(bfloat16)``) must get its embeddings
    in the new dtype, as a float nn.Embedding would give them."""
    probe = fn(torch.zeros(1, dtype=dtype))
    return probe.dtype if probe.is_floating_point() else dtype


class Int8Embedding(nn.Module):
    def __init__(self, weight_int8, scales, padding_idx=None, output_dtype=torch.float32) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = weight_int8.shape
        self.padding_idx = padding_idx
        self.output_dtype = output_dtype  # the float dtype the model computes in
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("scales", scales)  # bf16 [num_embeddings]

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding) -> Int8Embedding:
        w = embedding.weight.detach().float()
        scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-8)
        q = torch.clamp(torch.round(w / scales[:, None]), -127, 127).to(torch.int8)
        return cls(q, scales.to(torch.bfloat16), embedding.padding_idx, embedding.weight.dtype)

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_int8.float() * self.scales.float()[:, None]

    def _apply(self, fn, recurse=True):
        scales = self.scales
        super()._apply(fn, recurse)
        # Moved, never cast (as Int8WeightOnlyLinear's): still the tied head's tensor.
        self.scales = scales.to(self.weight_int8.device, torch.bfloat16)
        self.output_dtype = _cast_dtype(fn, self.output_dtype)
        return self

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(input_ids, self.weight_int8).to(self.output_dtype)
        return rows * self.scales[input_ids].to(self.output_dtype).unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 per-row"


class Int4Embedding(nn.Module):
    """A token embedding stored as group-wise asymmetric int4 in the CPU int4
    kernel's packing (what Int4WeightOnlyLinear stores), dequantizing only
    the gathered rows. With tied weights it holds the head's very tensors, so
    one int4 copy serves both; ``core.models.int4_rows`` reads rows out of
    that packing (rows padded to 16, columns to the group size, as the head's).

    Why by hand: torch has no int4 embedding, and torch.ao's quantized
    Embedding (4-bit per row) is its own packed format a head cannot share.
    The attribute names follow Int4WeightOnlyLinear's so exports read both alike.
    """

    def __init__(
        self,
        packed,
        scales_and_zeros,
        num_embeddings: int,
        embedding_dim: int,
        padded: int,
        group_size: int,
        padding_idx=None,
        output_dtype=torch.float32,
    ) -> None:
        super().__init__()
        self.num_embeddings = self.out_features = num_embeddings
        self.embedding_dim = self.in_features = embedding_dim
        self.padded_in_features = padded
        self.group_size = group_size
        self.padding_idx = padding_idx
        self.output_dtype = output_dtype
        self.register_buffer("weight_int4pack", packed)  # uint8 [rows, padded / 2], CPU layout
        self.register_buffer("scales_and_zeros", scales_and_zeros)  # bf16 [groups, rows, 2]
        # Where each row's fields lie in the packing (core.models.int4_rows):
        # derived from the shape, so not stored, and moved with the module.
        from core.models.int4_rows import row_fields

        first, step = row_fields(scales_and_zeros.shape[1], padded)
        self.register_buffer("row_first", first.to(packed.device), persistent=False)
        self.register_buffer("row_step", step.to(packed.device), persistent=False)

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, group_size: int) -> Int4Embedding:
        from core.models.quantized_linear import Int4WeightOnlyLinear

        w = embedding.weight.detach()
        linear = nn.Linear(w.shape[1], w.shape[0], bias=False, device="meta")
        linear.weight = nn.Parameter(w.cpu(), requires_grad=False)  # packed in the CPU layout
        packed = Int4WeightOnlyLinear.from_linear(linear, group_size)  # the head's packing
        return cls.sharing(packed, embedding)

    @classmethod
    def sharing(cls, head, embedding: nn.Embedding) -> Int4Embedding:
        """An embedding reading an Int4WeightOnlyLinear's own tensors (on the CPU)."""
        return cls(
            head.weight_int4pack,
            head.scales_and_zeros,
            head.out_features,
            head.in_features,
            head.padded_in_features,
            head.group_size,
            embedding.padding_idx,
            embedding.weight.dtype,
        )

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        from core.models.int4_rows import gather_rows

        ids = input_ids.to(self.weight_int4pack.device)
        q = gather_rows(
            self.weight_int4pack, self.row_first, self.row_step, ids, self.padded_in_features
        )
        groups = self.padded_in_features // self.group_size
        sz = self.scales_and_zeros[:, ids].movedim(0, -2).float()  # [*ids, groups, 2]
        q = (q - 8).reshape(*ids.shape, groups, self.group_size).float()
        rows = q * sz[..., :1] + sz[..., 1:]  # the kernel's (q - 8) * scale + zero
        rows = rows.reshape(*ids.shape, self.padded_in_features)[..., : self.embedding_dim]
        return rows.to(self.output_dtype)

    def _apply(self, fn, recurse=True):
        """The kernels read bf16 scales: keep them so (and still shared with a
        tied head) whatever dtype the model is cast to."""
        scales = self.scales_and_zeros
        super()._apply(fn, recurse)
        # Moved, never cast (as Int4WeightOnlyLinear's): still the tied head's tensor.
        self.scales_and_zeros = scales.to(self.weight_int4pack.device, torch.bfloat16)
        self.output_dtype = _cast_dtype(fn, self.output_dtype)
        return self

    def stored_tensors(self) -> dict[str, torch.Tensor]:
        """What an export writes: always the CPU layout (this module never repacks)."""
        return {
            "weight_int4pack": self.weight_int4pack.cpu(),
            "scales_and_zeros": self.scales_and_zeros.cpu(),
        }

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int4 g{self.group_size}"
