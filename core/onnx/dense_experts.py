"""Mixture-of-experts layers in a form torch.export can trace: every expert
run on every token, weighted by the router (zero where it chose another).

transformers 5 stores a block's experts as 3-D tensors and runs them through
an "experts implementation" (``transformers.integrations.moe``). Its default
calls a custom grouped-matmul op that has no ONNX translation; its eager
loop picks each expert's tokens with data-dependent shapes, which
torch.export refuses; ``batched_mm`` traces but copies the chosen experts'
weights once per token, so a 512-token window of a real MoE would gather
tens of GB. None of them fits a graph, so this one is ours: memory bounded by
one expert's activations, the same result up to float rounding, at the
price of computing all experts (a decode step reads every expert's weights).
It is used while tracing only; PyTorch runs keep transformers' choice.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

IMPLEMENTATION = "workbench_dense"


def dense_experts_forward(self, hidden_states, top_k_index, top_k_weights):
    """transformers' experts-forward signature: ``hidden_states`` [tokens,
    hidden], the router's ``top_k_index`` and ``top_k_weights`` [tokens, k]."""
    tokens = hidden_states.shape[0]
    routing = torch.zeros(
        tokens, self.num_experts, dtype=top_k_weights.dtype, device=hidden_states.device
    ).scatter_add(1, top_k_index, top_k_weights)
    out = torch.zeros_like(hidden_states)
    for expert in range(self.num_experts):
        if self.has_gate:
            bias = self.gate_up_proj_bias[expert] if self.has_bias else None
            inner = self._apply_gate(_linear(self, hidden_states, self.gate_up_proj[expert], bias))
        else:
            bias = self.up_proj_bias[expert] if self.has_bias else None
            inner = self.act_fn(_linear(self, hidden_states, self.up_proj[expert], bias))
        bias = self.down_proj_bias[expert] if self.has_bias else None
        expert_out = _linear(self, inner, self.down_proj[expert], bias)
        if self.has_post_expert_norm:
            expert_out = self.post_expert_norm(expert_out)
        out = out + expert_out * routing[:, expert : expert + 1].to(expert_out.dtype)
    return out.to(hidden_states.dtype)


def _linear(experts, inputs, weight, bias):
    # Transposed experts store [in, out]; the others [out, in], as nn.Linear.
    out = inputs @ weight if experts.is_transposed else inputs @ weight.T
    return out + bias if bias is not None else out


def experts_configs(model) -> list:
    """The configs the model's expert layers read their implementation from."""
    from core.models.experts import experts_layers

    return list({id(layer.config): layer.config for layer in experts_layers(model)}.values())


@contextmanager
def traceable_experts(model):
    """``model``'s experts run by ``dense_experts_forward`` inside the block,
    each config's own implementation restored after (the user's model is not
    changed). The field is set on each config directly: its public setter
    would also overwrite the sub-configs' own choices."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    configs = experts_configs(model)
    if configs:
        ALL_EXPERTS_FUNCTIONS[IMPLEMENTATION] = dense_experts_forward
    before = [config._experts_implementation_internal for config in configs]
    try:
        for config in configs:
            config._experts_implementation_internal = IMPLEMENTATION
        yield
    finally:
        for config, implementation in zip(configs, before, strict=True):
            config._experts_implementation_internal = implementation
