"""What a distillation run is told, and which of it a resume must keep."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from core.data.texts import NEWS

# Bounds past any useful setting (AdamW above lr 1 only diverges; T^2 scales
# the loss, so a temperature of 1e300 overflows and one of 1e-300 is NaN).
MAX_LEARNING_RATE = 1.0
TEMPERATURE_RANGE = (0.05, 100.0)
MAX_LOSS_WEIGHT = 1000.0


@dataclass(frozen=True)
class DistillSettings:
    # Budget: training stops at whichever comes first (at least one is needed).
    steps: int | None = 200
    time_budget_s: float | None = None  # seconds of training (evaluation excluded)
    # Optimisation.
    # lr and batch chosen on the dev split (benchmarks/choose_defaults.py; DEVELOPERS.md)
    learning_rate: float = 4e-4
    warmup_steps: int = 5
    final_lr_fraction: float = 0.1  # the cosine ends at this fraction of the peak
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    batch_size: int = 4  # beat batch 2 at every lr for the same steps (at twice the time)
    seq_len: int = 256
    # Loss: T^2 KL at temperature T, + alpha * LM loss, + beta * hidden MSE.
    temperature: float = 2.0
    alpha_lm: float = 0.0
    beta_hidden: float = 0.0
    # Data.
    text_source: str = NEWS
    max_train_tokens: int | None = 2_000_000  # tokenize at most this much of the split
    seed: int = 0
    # Monitoring: a quick perplexity every N steps (0: only at the end; None: never).
    eval_every: int | None = 50
    eval_windows: int = 3
    eval_context_tokens: int = 512
    checkpoint_every: int = 50  # with a checkpoint directory; 0: only at the end

    def __post_init__(self) -> None:
        if not (self.steps or self.time_budget_s):
            raise ValueError("give a step budget and/or a time budget")
        if (self.steps or 0) < 0 or (self.time_budget_s or 0) < 0:
            raise ValueError("budgets must be positive")
        if not 0 < self.learning_rate <= MAX_LEARNING_RATE:
            raise ValueError(
                f"the learning rate must be in (0, {MAX_LEARNING_RATE:g}], "
                f"got {self.learning_rate:g}"
            )
        low, high = TEMPERATURE_RANGE
        if not low <= self.temperature <= high:
            raise ValueError(
                f"the temperature must be in [{low:g}, {high:g}], got {self.temperature:g}"
            )
        if self.batch_size < 1 or self.seq_len < 2:
            raise ValueError("need batch size >= 1 and sequence length >= 2")
        if not (0 <= self.alpha_lm <= MAX_LOSS_WEIGHT and 0 <= self.beta_hidden <= MAX_LOSS_WEIGHT):
            raise ValueError(f"loss weights must be in [0, {MAX_LOSS_WEIGHT:g}]")

    def to_dict(self) -> dict:
        return asdict(self)

    def trajectory(self) -> dict:
        """The fields that decide what the student becomes; a resume must keep
        them. Budgets and how often to evaluate or save may change."""
        free = {"steps", "time_budget_s", "eval_every", "eval_windows", "checkpoint_every"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in free}

    def describe(self) -> str:
        budget = " and ".join(
            b
            for b in (
                f"{self.steps} steps" if self.steps else "",
                f"{self.time_budget_s:g} s" if self.time_budget_s else "",
            )
            if b
        )
        extra = "".join(
            (
                f" + {self.alpha_lm:g} x LM loss" if self.alpha_lm else "",
                f" + {self.beta_hidden:g} x hidden MSE" if self.beta_hidden else "",
            )
        )
        return (
            f"KD at T={self.temperature:g}{extra}; AdamW lr {self.learning_rate:g} "
            f"({self.warmup_steps} warm-up steps, cosine to {self.final_lr_fraction:g}x), "
            f"clip {self.grad_clip:g}; batch {self.batch_size} x {self.seq_len} tokens of the "
            f"training split; budget {budget}; seed {self.seed}"
        )
