"""Linear layers whose weights are stored in int8 or packed int4 and run by
torch's own low-precision CPU/GPU kernels.

Why by hand: torchao's int4 configs do not run on the CPU here and its int8
weight-only path is only fast under torch.compile; torch ships the eager
kernels (``_weight_int8pack_mm``, ``_weight_int4pack_mm_for_cpu``) but no
module around them, so these small modules are that wrapper. The int4
module runs on the CPU and on CUDA (``core.models.int4_packing`` keeps each
device's packing). All take bf16 activations (the kernels' fast path) and
return the input's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.models.int4_packing import int4_mm, pack_int4, unpack_int4


class Int8WeightOnlyLinear(nn.Module):
    """Per-output-channel symmetric int8 weights, bf16 activations."""

    def __init__(self, weight_int8, scales, bias) -> None:
        super().__init__()
        self.out_features, self.in_features = weight_int8.shape
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("scales", scales)
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8WeightOnlyLinear:
        w = linear.weight.detach().float()
        scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-8)
        q = torch.clamp(torch.round(w / scales[:, None]), -127, 127).to(torch.int8)
        bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)
        return cls(q, scales.to(torch.bfloat16), bias)

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_int8.float() * self.scales.float()[:, None]

    def _apply(self, fn, recurse=True):
        """Scales are moved, never cast: the kernel reads bf16, and on one
        device they stay the tensor a tied Int8Embedding shares."""
        scales = self.scales
        super()._apply(fn, recurse)
        self.scales = scales.to(self.weight_int8.device, torch.bfloat16)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.aten._weight_int8pack_mm(
            x.reshape(-1, shape[-1]).to(torch.bfloat16), self.weight_int8, self.scales
        )
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, int8 per-channel"


class Int8DynamicLinear(nn.Module):
    """W8A8: per-output-channel symmetric int8 weights; activations quantised
    to int8 on the fly, per token (symmetric, full 8-bit range), multiplied in
    int8 with int32 accumulation (``torch._int_mm``) and rescaled.

    Why not torch.ao's dynamic Linear (fbgemm): it quantises activations per
    tensor with a 7-bit range (reduce_range), so on a 512-token window one
    outlier token costs every other token its precision (measured on SmolLM2,
    quick windows: +24.6% perplexity against +1.0% per token); torchao's
    per-token W8A8 is only fast under torch.compile.
    """

    def __init__(self, weight_int8_t, scales, bias) -> None:
        super().__init__()
        self.in_features, self.out_features = weight_int8_t.shape
        self.register_buffer("weight_int8_t", weight_int8_t)  # [in, out]: _int_mm's layout
        self.register_buffer("scales", scales)  # float32 [out]
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8DynamicLinear:
        w = linear.weight.detach().float()
        scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-8)
        q = torch.clamp(torch.round(w / scales[:, None]), -127, 127).to(torch.int8)
        bias = None if linear.bias is None else linear.bias.detach().float()
        return cls(q.t().contiguous(), scales, bias)

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_int8_t.t().float() * self.scales[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).float()
        x_scale = (x2.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-8)
        xq = torch.clamp(torch.round(x2 / x_scale), -127, 127).to(torch.int8)
        rows = xq.shape[0]
        if xq.is_cuda and rows <= 16:  # CUDA's _int_mm wants more than 16 rows: pad with zeros
            xq = F.pad(xq, (0, 0, 0, 17 - rows))
        y = torch._int_mm(xq, self.weight_int8_t)[:rows].float() * (x_scale * self.scales)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, W8A8 per-channel/per-token"


def quantize_groupwise_int4(w: torch.Tensor, group_size: int):
    """Asymmetric round-to-nearest: per group of ``group_size`` input columns,
    q in [0, 15], w ~= q * scale + minimum. Returns (q int32 [N, K], scale
    [N, K/g], minimum [N, K/g])."""
    n, k = w.shape
    groups = w.float().reshape(n, k // group_size, group_size)
    lo = groups.amin(dim=-1, keepdim=True)
    hi = groups.amax(dim=-1, keepdim=True)
    scale = ((hi - lo) / 15).clamp(min=1e-8)
    q = torch.clamp(torch.round((groups - lo) / scale), 0, 15)
    return q.to(torch.int32).reshape(n, k), scale.squeeze(-1), lo.squeeze(-1)


class Int4WeightOnlyLinear(nn.Module):
    """Group-wise asymmetric 4-bit weights packed two per byte, bf16 activations.

    When in_features is not a multiple of the group size, the weight is padded
    with zero columns (and the input with zeros) up to the next multiple; the
    padding is stored and counted in the size.
    """

    def __init__(self, packed, scales_and_zeros, bias, in_features, padded, group_size) -> None:
        super().__init__()
        self.in_features = in_features
        self.padded_in_features = padded
        self.out_features = packed.shape[0]
        self.group_size = group_size
        self.register_buffer("weight_int4pack", packed)
        self.register_buffer("scales_and_zeros", scales_and_zeros)
        self.register_buffer("bias", bias)

    @classmethod
    def from_quantized(cls, q, scale, minimum, bias, in_features, group_size):
        """Pack q/scale/minimum (columns padded to a multiple of group_size).

        The kernel needs out_features to be a multiple of 16 (a low-rank
        factor may not be): extra zero rows are stored and sliced off.
        """
        out_features = q.shape[0]
        extra = (-out_features) % 16
        if extra:
            q = F.pad(q, (0, 0, 0, extra))
            scale = F.pad(scale, (0, 0, 0, extra), value=1.0)
            minimum = F.pad(minimum, (0, 0, 0, extra))
        n = q.shape[0]
        packed = pack_int4(q.contiguous())
        # The kernel computes w = (q - 8) * scale + zero, so zero = min + 8 * scale.
        zero = minimum + 8 * scale
        scales_and_zeros = (
            torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16)
        )
        assert scales_and_zeros.shape == (q.shape[1] // group_size, n, 2)
        b = None if bias is None else bias.detach().to(torch.bfloat16)
        new = cls(packed, scales_and_zeros, b, in_features, q.shape[1], group_size)
        new.out_features = out_features
        return new

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int) -> Int4WeightOnlyLinear:
        w = pad_columns(linear.weight.detach().float(), group_size)
        q, scale, minimum = quantize_groupwise_int4(w, group_size)
        return cls.from_quantized(q, scale, minimum, linear.bias, linear.in_features, group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(torch.bfloat16)
        if self.padded_in_features != self.in_features:
            x2 = F.pad(x2, (0, self.padded_in_features - self.in_features))
        y = int4_mm(x2, self.weight_int4pack, self.group_size, self.scales_and_zeros)
        if y.shape[-1] != self.out_features:
            y = y[:, : self.out_features]
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def _apply(self, fn, recurse=True):
        """Moving between the CPU and CUDA repacks the same 4-bit values for
        the new device's kernel; the kernels read bf16 scales whatever dtype
        the rest of the model is cast to."""
        before, scales = self.weight_int4pack, self.scales_and_zeros
        super()._apply(fn, recurse)
        after = self.weight_int4pack
        if after.device.type != before.device.type:
            q = unpack_int4(before, scales.shape[1], self.padded_in_features)
            self.weight_int4pack = pack_int4(q.to(after.device))
        # Moved, never cast: a bf16 -> float16 -> bf16 trip loses small scales,
        # and on one device the tensor stays the one a tied Int4Embedding shares.
        self.scales_and_zeros = scales.to(after.device, torch.bfloat16)
        if self.bias is not None:
            self.bias = self.bias.to(torch.bfloat16)
        return self

    def stored_tensors(self) -> dict[str, torch.Tensor]:
        """What an export writes: the CPU kernel's layout, from any device."""
        packed = self.weight_int4pack
        if packed.device.type != "cpu":
            rows = self.scales_and_zeros.shape[1]
            packed = pack_int4(unpack_int4(packed, rows, self.padded_in_features).cpu())
        tensors = {"weight_int4pack": packed, "scales_and_zeros": self.scales_and_zeros.cpu()}
        if self.bias is not None:
            tensors["bias"] = self.bias.cpu()
        return tensors

    def extra_repr(self) -> str:
        pad = self.padded_in_features - self.in_features
        padding = f" (+{pad} zero columns)" if pad else ""
        return f"in={self.in_features}{padding}, out={self.out_features}, int4 g{self.group_size}"


def pad_columns(w: torch.Tensor, multiple: int) -> torch.Tensor:
    extra = (-w.shape[1]) % multiple
    return F.pad(w, (0, extra)) if extra else w
