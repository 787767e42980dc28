"""The original's next-token distributions on a window, kept small: at each
position its k most likely tokens' log-probabilities, the log of the
probability left to every other token (one tail bucket) and its NLL of the
next token. Scoring many candidates against one original (the sensitivity
map: one per layer and part) then needs no copy of the full logits
(windows x tokens x vocabulary floats: 400 MB for 4 windows of SmolLM2).

KL is computed over the k tokens plus the tail bucket: KL(P' || Q') where
P' and Q' merge every token outside the original's top k into one. Merging
never increases KL, so this is a lower bound of the full KL, and close to it
when the top k hold nearly all of the original's probability (measured on
the default model: benchmarks/sensitivity_check.py prints both).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WindowScore:
    kl: float  # nats per position, KL(original || candidate) over top k + tail
    nll_delta: float  # candidate minus original mean NLL of the window's next tokens


@dataclass(frozen=True)
class TopKReference:
    top_logp: torch.Tensor  # [positions, k] the original's log-probabilities
    top_ids: torch.Tensor  # [positions, k] which tokens
    tail_logp: torch.Tensor  # [positions] log of the probability outside the top k
    target_nll: torch.Tensor  # [positions - 1] the original's NLL of each next token

    @classmethod
    def of(cls, logits: torch.Tensor, window: torch.Tensor, k: int) -> TopKReference:
        """From the original's logits [positions, vocabulary] on ``window``."""
        logp = torch.log_softmax(logits.float(), dim=-1)
        top_logp, top_ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
        targets = window[1:].to(logp.device)
        target_nll = -logp[:-1].gather(-1, targets[:, None])[:, 0]
        return cls(top_logp, top_ids, _log_rest(top_logp), target_nll)

    def score(self, logits: torch.Tensor, window: torch.Tensor) -> WindowScore:
        """The candidate's logits on the same window against this reference."""
        if logits.shape[0] != self.top_ids.shape[0]:
            raise ValueError("the candidate scored another window")
        logq = torch.log_softmax(logits.float(), dim=-1)
        q_top = logq.gather(-1, self.top_ids)
        p_top = self.top_logp.exp()
        kl = (p_top * (self.top_logp - q_top)).sum(-1)
        tail_p = self.tail_logp.exp()
        kl = kl + tail_p * (self.tail_logp - _log_rest(q_top))
        targets = window[1:].to(logq.device)
        nll = -logq[:-1].gather(-1, targets[:, None])[:, 0]
        return WindowScore(kl.mean().item(), (nll - self.target_nll).mean().item())


def _log_rest(top_logp: torch.Tensor) -> torch.Tensor:
    """log(1 - sum(exp(top_logp))) per position, kept finite when the top k
    hold (almost) everything."""
    covered = torch.logsumexp(top_logp.double(), dim=-1).clamp(max=-1e-12)
    return torch.log(-torch.expm1(covered)).float()
