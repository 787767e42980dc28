"""int4 weights keep their 4-bit values through every packing: unpacking
what torch's converter packed gives the values back, a module's stored form
is the CPU layout whatever device it sits on, and the CUDA path (tinygemm)
computes what the CPU kernel computes (that one runs only where CUDA is)."""

import pytest
import torch
from torch import nn

from core.models.int4_packing import inner_k_tiles, pack_int4, unpack_int4
from core.models.quantized_linear import Int4WeightOnlyLinear
from core.models.size import measure_size


@pytest.mark.parametrize("n,k", [(16, 32), (64, 128), (48, 576), (1536, 576), (32, 1024)])
def test_unpacking_gives_back_every_value(n, k):
    q = torch.randint(0, 16, (n, k), dtype=torch.int32, generator=torch.Generator().manual_seed(n))
    packed = pack_int4(q)
    assert packed.dtype == torch.uint8 and packed.shape == (n, k // 2)  # the stored layout
    assert torch.equal(unpack_int4(packed, n, k), q)
    assert not torch.equal(unpack_int4(packed, n, k), q.flip(1))  # the values, in place


def test_tinygemm_tiles_divide_k():
    assert [inner_k_tiles(k) for k in (32, 64, 96, 576, 1024, 1536)] == [2, 4, 2, 4, 8, 8]


def test_stored_tensors_are_the_module_buffers_on_the_cpu():
    linear = nn.Linear(576, 40, bias=True)
    module = Int4WeightOnlyLinear.from_linear(linear, 64)
    stored = module.stored_tensors()
    assert stored["weight_int4pack"] is module.weight_int4pack
    assert set(stored) == {"weight_int4pack", "scales_and_zeros", "bias"}
    # 40 rows padded to 48 for the kernel, two weights a byte; and 40 biases
    assert measure_size(module).weights == 48 * 576 + 40


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA int4 kernel needs a GPU")
def test_a_module_moved_to_cuda_computes_what_it_did_on_the_cpu():
    torch.manual_seed(0)
    module = Int4WeightOnlyLinear.from_linear(nn.Linear(576, 1536), 64)
    x = torch.randn(3, 576)
    expected = module(x)
    stored = {k: v.clone() for k, v in module.stored_tensors().items()}
    module.to("cuda")
    assert module.weight_int4pack.is_cuda
    assert torch.allclose(module(x.cuda()).cpu(), expected, atol=2e-2, rtol=2e-2)
    assert all(torch.equal(v, module.stored_tensors()[k]) for k, v in stored.items())
    module.to("cpu")
    assert torch.equal(module(x), expected)
