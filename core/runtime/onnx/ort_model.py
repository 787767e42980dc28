"""An exported graph (``core.onnx.graph``) opened in ONNX Runtime.

``OrtCausalLM`` runs one step of the graph (``step``) for the generation loop
(``core.runtime.onnx.ort_runner``), and also looks enough like a transformers
model (``config``, ``generation_config``, ``parameters()``, ``forward`` with
``logits_to_keep`` returning ``.logits``) for the perplexity, fidelity and
benchmark code to run on it unchanged.

Providers: CUDA when asked for (or on ``auto`` when this onnxruntime build has
it), always with the CPU provider behind it; the provider actually used is
read back from ``session.get_providers()``, since onnxruntime-gpu falls back
to the CPU silently when CUDA cannot start. The CPU thread pool gets torch's
thread count, so both backends are measured with the same threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.runtime.onnx.families import exact_positions
from core.runtime.onnx.interface import (
    ATTENTION_MASK,
    INPUT_IDS,
    LOGITS,
    LOGITS_POSITIONS,
    cache_shape,
    declared_cache_shape,
    layer_count,
    past_names,
    present_names,
)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# What onnxruntime's dynamic quantisation leaves in a graph (with or without its fusions).
INT8_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}
# What its static quantisation (QDQ format) leaves.
STATIC_INT8_OPS = {"QuantizeLinear", "DequantizeLinear"}
# What its weight-only quantiser (MatMulNBits, core.onnx.nbits) leaves.
WEIGHT_ONLY_OPS = {"MatMulNBits"}
# What onnxruntime-genai's builder writes for attention (core.onnx.fused).
FUSED_OPS = {"GroupQueryAttention"}
POSITION_IDS = "position_ids"


@dataclass(frozen=True)
class StepOutput:
    logits: torch.Tensor  # [1, positions asked for, vocab], fp32 on the CPU
    present: list | SharedCache  # onnxruntime OrtValues, left where the session made them


@dataclass(frozen=True)
class SharedCache:
    """A fused graph's KV cache held in buffers of a fixed capacity that every
    step reads and writes in place (past and present bound to the same
    OrtValue), instead of the session copying the whole cache into a new
    present each step. GroupQueryAttention switches to this mode by itself
    when past and present share memory, and reads only the first ``length``
    positions (from the attention mask's sum)."""

    values: list  # OrtValues [1, kv heads, capacity, head dim], one per past name
    capacity: int
    length: int  # positions filled
    arrays: list  # the numpy memory the CPU OrtValues wrap, held so it outlives them
    steps: StepBinding  # one IO binding for the whole sequence, shared by each step's cache


@dataclass(frozen=True)
class StepBinding:
    """The IO binding a ``SharedCache``'s steps reuse: past and present (the
    same 2 x layers OrtValues every step) are bound once, and a one-token
    step's logits land in a buffer bound once, so a step rebinds only its
    token and mask. Binding ~120 names anew and reading every output back
    each step cost about 1 ms per token of the fused int4 graph's ~6 on the
    2-core CPU (measured side by side, tests/ has the exactness check)."""

    binding: object  # onnxruntime IOBinding
    mask: np.ndarray  # int64 ones [1, capacity]; a step binds its first positions
    logits: np.ndarray  # fp32 [1, 1, vocab], a one-token step's logits
    logits_value: object  # the OrtValue over ``logits``


def open_session(path: Path, device: str = "auto", threads: int | None = None):
    """An InferenceSession on ``device`` (auto, cpu or cuda)."""
    import onnxruntime as ort

    from core.errors import UnsupportedModelError

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    available = ort.get_available_providers()
    # ``auto`` follows torch's choice (core.runtime.device.resolve_device), so
    # both backends run on the same device.
    want_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    providers = [CUDA, CPU] if want_cuda and CUDA in available else [CPU]
    session = ort.InferenceSession(str(path), options, providers=providers)
    if device == "cuda" and CUDA not in session.get_providers():
        raise UnsupportedModelError(
            "CUDA was asked for, but ONNX Runtime could not start its CUDA provider here."
        )
    return session


class OrtCausalLM:
    """A decoder LM with a KV cache running in ONNX Runtime, batch 1."""

    def __init__(self, path: Path, config, generation_config, device="auto", threads=None):
        self.path = Path(path)
        self.exact_positions = exact_positions(config)
        self.config = _within(config, self.exact_positions)
        self.generation_config = generation_config
        self.session = open_session(self.path, device, threads)
        self.layers = layer_count(config)
        self._past_names = past_names(self.layers)
        self._present_names = present_names(self.layers)
        inputs = {i.name for i in self.session.get_inputs()}
        # A fused graph (core.onnx.fused) returns every new position's logits
        # and takes no logits_positions; the positions are picked here.
        self.picks_positions = LOGITS_POSITIONS in inputs
        ops, embedding_width, self.weight_bits = _graph_facts(self.path)
        self.fused = bool(ops & FUSED_OPS)
        has_cache = any(name.startswith("past_key_values.") for name in inputs)
        # (the config's layer count is compared below, with its other sizes)
        if INPUT_IDS not in inputs or not has_cache or not (self.picks_positions or self.fused):
            from core.errors import NotAModelError

            raise NotAModelError(
                f"{path} is not a graph exported by the workbench (its inputs differ)."
            )
        # The graph's own dimensions size the cache: families derive their KV
        # heads in their own ways, and a traced graph holds what the model did.
        self._kv_heads, self._head_dim = _graph_cache_shape(self.session) or cache_shape(config)
        mismatch = _config_mismatch(self.session, config, embedding_width)
        if mismatch:
            from core.errors import CorruptModelError

            raise CorruptModelError(
                f"{path}: the config.json beside it does not describe this graph ({mismatch})."
            )
        self.int8 = bool(ops & INT8_OPS)  # dynamic int8
        self.static_int8 = STATIC_INT8_OPS <= ops
        self.weight_only = bool(ops & WEIGHT_ONLY_OPS)
        self._input_names = inputs

    # -- what the runner uses -------------------------------------------------------

    @property
    def provider(self) -> str:
        """The provider that really runs the graph (first of the session's)."""
        return self.session.get_providers()[0]

    @property
    def device(self) -> torch.device:
        """Where the graph runs (from the session's provider): the device a
        benchmark names and reads memory for. Logits still come back on the
        CPU, which is what ``parameters()`` reports."""
        return torch.device("cuda" if self.provider == CUDA else "cpu")

    @property
    def runner_name(self) -> str:
        kind = (
            "int8-static"
            if self.static_int8
            else "int8"
            if self.int8
            else "weight-only"
            if self.weight_only
            else "fp32"
        )
        fused = "-fused" if self.fused else ""
        return f"onnxruntime-{'cuda' if self.provider == CUDA else 'cpu'}{fused}-{kind}"

    @property
    def precision(self) -> str:
        """What the graph computes in, for a header line ("float32" alone
        read as if a quantised graph were not)."""
        if self.static_int8:
            return "int8 weights and activations (static)"
        if self.int8:
            return "int8 weights and activations (dynamic)"
        if self.weight_only:
            return f"int{self.weight_bits} weights, float32 activations"
        return "float32"

    def empty_cache(self, capacity: int | None = None) -> list | SharedCache:
        """An empty cache; with ``capacity`` (positions) on a fused graph, one
        that is updated in place (``SharedCache``): the decode loop knows how
        long the sequence can grow, so no step copies the cache."""
        import onnxruntime as ort

        if not (capacity and self.fused):
            empty = np.zeros((1, self._kv_heads, 0, self._head_dim), dtype=np.float32)
            return [
                ort.OrtValue.ortvalue_from_numpy(empty, self._ort_device, 0)
                for _ in self._past_names
            ]
        # One zeroed buffer per name, kept alive by the cache: on the CPU the
        # OrtValue wraps the numpy memory rather than copying it.
        shape = (1, self._kv_heads, capacity, self._head_dim)
        arrays = [np.zeros(shape, dtype=np.float32) for _ in self._past_names]
        values = [ort.OrtValue.ortvalue_from_numpy(a, self._ort_device, 0) for a in arrays]
        logits = np.zeros((1, 1, self.config.vocab_size), dtype=np.float32)
        logits_value = ort.OrtValue.ortvalue_from_numpy(logits, "cpu", 0)
        binding = self.session.io_binding()
        binding.bind_ortvalue_output(LOGITS, logits_value)  # first: outputs[0] is the logits
        for past_name, present_name, value in zip(
            self._past_names, self._present_names, values, strict=True
        ):  # written in place: GroupQueryAttention sees the same memory
            binding.bind_ortvalue_input(past_name, value)
            binding.bind_ortvalue_output(present_name, value)
        mask = np.ones((1, capacity), dtype=np.int64)
        steps = StepBinding(binding, mask, logits, logits_value)
        return SharedCache(values, capacity, 0, arrays, steps)

    def without_last(self, past: list | SharedCache, positions: int) -> list | SharedCache:
        """``past`` less its last ``positions`` (a draft the model rejected). A
        shared cache only forgets them: the next step writes over them."""
        import dataclasses

        import onnxruntime as ort

        if not positions:
            return past
        if isinstance(past, SharedCache):
            return dataclasses.replace(past, length=past.length - positions)
        return [
            ort.OrtValue.ortvalue_from_numpy(
                np.ascontiguousarray(value.numpy()[:, :, :-positions]), self._ort_device, 0
            )
            for value in past
        ]

    @property
    def _ort_device(self) -> str:
        return "cuda" if self.provider == CUDA else "cpu"

    def step(
        self, input_ids: np.ndarray, past: list | SharedCache, positions: np.ndarray
    ) -> StepOutput:
        """Run the graph on new tokens ``input_ids`` [1, seq] after ``past``
        (from ``empty_cache`` or a previous step); logits at ``positions``."""
        shared = isinstance(past, SharedCache)
        past_len = past.length if shared else past[0].shape()[2]
        new = input_ids.shape[1]
        total = past_len + new
        if self.exact_positions and total > self.exact_positions:
            raise ValueError(
                f"this graph matches the model up to {self.exact_positions} positions (the "
                f"original context of its long-context RoPE); {total} were asked for"
            )
        if shared and total > past.capacity:
            raise ValueError(
                f"the KV cache holds {past.capacity} positions; {total} were asked for"
            )
        # A one-token step on the shared cache (a fused graph: every new
        # position's logits) writes them into the bound buffer; anything else
        # gets a new output of its own shape.
        into_buffer = shared and new == 1
        if shared:  # past, present and the logits (first output) are bound already
            binding = past.steps.binding
            if into_buffer:
                binding.bind_ortvalue_output(LOGITS, past.steps.logits_value)
            else:  # rebinding keeps its place among the outputs
                binding.bind_output(LOGITS, "cpu")
        else:
            binding = self.session.io_binding()
            binding.bind_output(LOGITS, "cpu")
            for name, value in zip(self._past_names, past, strict=True):
                binding.bind_ortvalue_input(name, value)
            for name in self._present_names:
                binding.bind_output(name, self._ort_device)
        binding.bind_cpu_input(INPUT_IDS, np.ascontiguousarray(input_ids, dtype=np.int64))
        if ATTENTION_MASK in self._input_names:
            if shared:
                mask = past.steps.mask[:, :total]
            else:
                mask = np.ones((1, total), dtype=np.int64)
            binding.bind_cpu_input(ATTENTION_MASK, mask)
        if POSITION_IDS in self._input_names:  # some fused graphs take them
            ids = np.arange(past_len, total, dtype=np.int64)[None]
            binding.bind_cpu_input(POSITION_IDS, ids)
        if self.picks_positions:
            binding.bind_cpu_input(
                LOGITS_POSITIONS, np.ascontiguousarray(positions, dtype=np.int64)
            )
        self.session.run_with_iobinding(binding)
        if into_buffer:
            logits = past.steps.logits
        else:
            outputs = binding.get_outputs()
            logits = outputs[0].numpy()
        if not self.picks_positions:  # every new position came back (a copy here)
            logits = logits[:, np.asarray(positions, dtype=np.int64)]
        if shared:
            present = SharedCache(past.values, past.capacity, total, past.arrays, past.steps)
        else:
            present = list(outputs[1:])
        return StepOutput(torch.from_numpy(logits), present)

    # -- what perplexity, fidelity and the benchmark read -----------------------------

    dtype = torch.float32  # activations and outputs; int8 graphs quantise weights only

    def parameters(self):
        """One empty tensor on the device the logits come back on (the CPU), so
        code that finds a model's device with ``next(model.parameters())`` works."""
        yield torch.empty(0)

    def eval(self) -> OrtCausalLM:
        return self

    def forward(self, input_ids: torch.Tensor, logits_to_keep: int = 0, **_ignored):
        """Logits of a whole window from an empty cache, like ``model(input_ids=...)``."""
        from types import SimpleNamespace

        ids = input_ids.detach().cpu().numpy()
        n = ids.shape[1]
        keep = n if not logits_to_keep else min(int(logits_to_keep), n)
        positions = np.arange(n - keep, n, dtype=np.int64)
        return SimpleNamespace(logits=self.step(ids, self.empty_cache(), positions).logits)

    __call__ = forward


def _within(config, positions: int | None):
    """``config``, or a copy whose context is ``positions`` where the graph
    matches the model only that far: every protocol, the generation room and
    the server read the context from the runtime's config. Only this runtime
    reads the copy (transformers would rescale longrope by the context); the
    config stored beside the graph is the model's own."""
    import copy

    from core.runtime.generation import CONTEXT_FIELDS, context_length

    if not positions or positions >= context_length(config):
        return config
    config = copy.deepcopy(config)
    for name in CONTEXT_FIELDS:
        if getattr(config, name, None):
            setattr(config, name, positions)
    return config


# Where a config holds its token embedding's width (OPT's may be narrower than hidden).
EMBEDDING_WIDTH_FIELDS = ("word_embed_proj_dim", "hidden_size", "n_embd", "d_model")


def _graph_facts(path: Path) -> tuple[set[str], int | None, int]:
    """Operator types in the graph file, the width of its token embedding
    where a plain Gather reads it from a stored matrix, and MatMulNBits'
    ``bits`` (0: none; the fewest where they differ, as under an int4 graph's
    int8 head). Its weights are not read: the shapes are in the file."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    shapes = {tensor.name: list(tensor.dims) for tensor in graph.initializer}
    width = None
    for node in graph.node:
        if node.op_type == "Gather" and list(node.input[1:2]) == [INPUT_IDS]:
            dims = shapes.get(node.input[0])
            width = dims[1] if dims and len(dims) == 2 else None
            break
    bits = min(
        (
            int(attribute.i)
            for node in graph.node
            if node.op_type == "MatMulNBits"
            for attribute in node.attribute
            if attribute.name == "bits"
        ),
        default=0,
    )
    return {node.op_type for node in graph.node}, width, bits


def _graph_cache_shape(session) -> tuple[int, int] | None:
    """(kv_heads, head_dim) of the graph's past inputs where they are fixed
    and the same for every layer (as in every graph we write)."""
    shapes = {
        (value.shape[1], value.shape[3])
        for value in session.get_inputs()
        if value.name.startswith("past_key_values.") and len(value.shape) == 4
    }
    if len(shapes) == 1 and all(isinstance(dim, int) for dim in next(iter(shapes))):
        return next(iter(shapes))
    return None


def _config_mismatch(session, config, embedding_width: int | None = None) -> str | None:
    """Where the graph's fixed dimensions disagree with what ``config``
    declares: the layers, the cache's kv heads and head size (where the
    config's family has those fields, ``declared_cache_shape``), the
    vocabulary of the logits, which sizes the step's logits buffer, and the
    hidden size (the token embedding's width, where the graph shows it). A
    config edited or copied from another model would otherwise run a graph
    under the wrong name (a sweep saw "hidden 32" shown for a 64-wide graph),
    or read the wrong memory."""
    cache = declared_cache_shape(config)
    pasts = [value for value in session.get_inputs() if value.name.startswith("past_key_values.")]
    layers = layer_count(config)
    if len(pasts) != 2 * layers:  # a key and a value per layer
        return f"layers: graph {len(pasts) // 2}, config {layers}"
    for value in session.get_inputs():
        if value.name.startswith("past_key_values."):
            heads, size = value.shape[1], value.shape[3]
            for name, graph, configured in (
                ("kv heads", heads, cache[0]),
                ("head size", size, cache[1]),
            ):
                if isinstance(graph, int) and configured is not None and graph != configured:
                    return f"{name}: graph {graph}, config {configured}"
    for value in session.get_outputs():
        vocab = value.shape[-1] if value.name == LOGITS and value.shape else None
        if isinstance(vocab, int) and vocab != config.vocab_size:
            return f"vocabulary: graph {vocab}, config {config.vocab_size}"
    hidden = next(
        (getattr(config, n) for n in EMBEDDING_WIDTH_FIELDS if hasattr(config, n)),
        None,
    )
    if embedding_width is not None and isinstance(hidden, int) and embedding_width != hidden:
        return f"hidden size: graph {embedding_width}, config {hidden}"
    return None
