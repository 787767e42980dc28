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

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(input_ids, self.weight_int8).to(self.output_dtype)
        return rows * self.scales[input_ids].to(self.output_dtype).unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 per-row"
