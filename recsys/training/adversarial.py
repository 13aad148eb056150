"""Adversarial training on the word-embedding matrix: FGM (one step) and PGD (k projected steps).

Strategy-agnostic (DDP and DeepSpeed keep gradients differently): the embedding gradient is taken
with ``torch.autograd.grad`` from the clean loss, never read from ``.grad``. In the loop::

    grads = adv.embedding_grads(loss)          # before strategy.backward(loss)
    strategy.backward(loss)
    adv_loss = adv.run(grads, plain_forward, batch)   # perturb (FGM: 1 step, PGD: k steps)
    strategy.backward(wrapped_forward(batch))  # adversarial gradients added to the clean ones
    adv.restore()                              # embeddings back before the optimizer step
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class EmbeddingAttack:
    """FGM / PGD perturbation of the parameters whose name contains ``emb_name``."""

    def __init__(self, module: nn.Module, method: str, epsilon: float = 1.0, alpha: float = 0.3,
                 steps: int = 3, emb_name: str = "word_embeddings"):
        self.params = [(n, p) for n, p in module.named_parameters() if emb_name in n and p.requires_grad]
        if not self.params:
            raise ValueError(f"adversarial.emb_name {emb_name!r} matches no trainable parameter; "
                             "use the embedding's name (e.g. word_embeddings) and do not freeze it")
        if method not in ("fgm", "pgd"):
            raise ValueError(f"adversarial.method {method!r}; use fgm or pgd")
        self.method, self.epsilon, self.alpha = method, epsilon, alpha
        self.steps = 1 if method == "fgm" else steps
        self.backup: dict[str, torch.Tensor] = {}

    def embedding_grads(self, loss: torch.Tensor) -> list[torch.Tensor | None]:
        """d loss / d embeddings (graph kept for the real backward)."""
        return list(torch.autograd.grad(loss, [p for _, p in self.params], retain_graph=True, allow_unused=True))

    @torch.no_grad()
    def perturb(self, grads: list[torch.Tensor | None]) -> None:
        """One step along the normalized gradient; PGD projects back into the epsilon ball."""
        for (name, p), g in zip(self.params, grads):
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
