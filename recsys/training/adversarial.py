"""Adversarial training on the word-embedding matrix: FGM (one step) and PGD (k projected steps).

Strategy-agnostic: the clean gradient of the embeddings comes from ``strategy.param_grads`` after
the clean backward (DDP: ``.grad``; DeepSpeed: ``safe_get_full_grad``, ZeRO partitions included).
In the loop::

    strategy.backward(loss)
    adv.run(strategy.param_grads(adv.tensors), plain_forward)   # perturb (FGM: 1 step, PGD: k)
    strategy.backward(strategy.forward(batch))                  # adversarial gradients added
    adv.restore()                                               # embeddings back before the step

PGD's intermediate steps take gradients with ``torch.autograd.grad`` through the unwrapped module,
which DeepSpeed's backward hooks do not allow: PGD needs ``strategy.name: ddp`` (FGM works with both).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class EmbeddingAttack:
    """FGM / PGD perturbation of the parameters whose name contains ``emb_name``."""

    def __init__(
        self,
        module: nn.Module,
        method: str,
        epsilon: float = 1.0,
        alpha: float = 0.3,
        steps: int = 3,
        emb_name: str = "word_embeddings",
    ):
        self.params = [(n, p) for n, p in module.named_parameters() if emb_name in n and p.requires_grad]
        if not self.params:
            raise ValueError(
                f"adversarial.emb_name {emb_name!r} matches no trainable parameter; "
                "use the embedding's name (e.g. word_embeddings) and do not freeze it"
            )
        if method not in ("fgm", "pgd"):
            raise ValueError(f"adversarial.method {method!r}; use fgm or pgd")
        self.method, self.epsilon, self.alpha = method, epsilon, alpha
        self.steps = 1 if method == "fgm" else steps
        self.backup: dict[str, torch.Tensor] = {}

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [p for _, p in self.params]

    @torch.no_grad()
    def perturb(self, grads: list[torch.Tensor | None]) -> None:
        """One step along the normalized gradient; PGD projects back into the epsilon ball."""
        for (name, p), g in zip(self.params, grads, strict=True):
            if g is None:
                continue
            if name not in self.backup:
                self.backup[name] = p.data.clone()
            norm = torch.norm(g.float())
            if norm == 0 or torch.isnan(norm):
                continue
            size = self.epsilon if self.method == "fgm" else self.alpha
            p.data.add_((size * g.float() / norm).to(p.dtype))
            if self.method == "pgd":
                delta = (p.data - self.backup[name]).float()
                dn = torch.norm(delta)
                if dn > self.epsilon:
                    p.data.copy_((self.backup[name].float() + self.epsilon * delta / dn).to(p.dtype))

    def run(self, grads: list[torch.Tensor | None], forward: Callable[[], torch.Tensor]) -> None:
        """Apply all steps; PGD's intermediate steps re-take gradients through ``forward`` (unwrapped)."""
        for k in range(self.steps):
            self.perturb(grads)
            if k < self.steps - 1:
                grads = list(torch.autograd.grad(forward(), [p for _, p in self.params], allow_unused=True))

    @torch.no_grad()
    def restore(self) -> None:
        for name, p in self.params:
            if name in self.backup:
                p.data.copy_(self.backup[name])
        self.backup = {}
