"""Small network builders shared by the learners."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def linear(in_dim: int, out_dim: int, gain: float = 2**0.5) -> nn.Linear:
    """A linear layer with orthogonal weights and zero bias (CleanRL's layer_init)."""
    layer = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(in_dim: int, out_dim: int, hidden: int, out_gain: float = 1.0) -> nn.Sequential:
    """Two hidden tanh layers; orthogonal init (CleanRL's layer_init) with a chosen output gain.
    The layers are initialised after all are built, an RNG order that seeded runs depend on."""
    layers = [nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, out_dim)]
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight, gain=2**0.5)
            nn.init.zeros_(layer.bias)
    nn.init.orthogonal_(layers[-1].weight, gain=out_gain)
    return nn.Sequential(*layers)


class NumpyMLP:
    """An `mlp`'s forward pass in numpy, over views of its torch parameters: the same memory, so
    the optimizer's in-place steps, soft updates and load_state_dict show through at once. For
    acting and for the learners' targets (no gradient needed): on K rows torch's per-op dispatch
    costs more than the arithmetic, and an agent process acts at every step (a2c's act on
    collection at K=32: 90 us in torch, 34 us in numpy; end to end, collection K=32 went from
    about 5,700 to 6,300-6,600 env steps/s, benchmarks/runtime.py, 2026-12-01)."""

    def __init__(self, net: nn.Sequential):
        kinds = [type(m) for m in net]
        hidden = len(kinds) // 2
        if kinds != [nn.Linear, nn.Tanh] * hidden + [nn.Linear]:
            raise TypeError(f"NumpyMLP takes Linear/Tanh stacks as `mlp` builds them, not {kinds}")
        self.layers = [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in net if isinstance(m, nn.Linear)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for w, b in self.layers[:-1]:
            x = np.tanh(x @ w.T + b)
        w, b = self.layers[-1]
        return x @ w.T + b


def softmax(logits: np.ndarray) -> np.ndarray:
    """softmax over the last axis, in the logits' dtype."""
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sample_categorical(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row of (K, n) logits, drawn from softmax(logits); (K,) int32."""
    weights = np.exp(logits - logits.max(-1, keepdims=True)).cumsum(-1)
    u = rng.random((len(logits), 1), dtype=weights.dtype) * weights[:, -1:]  # u < the total: index <= n - 1
    return (u > weights).sum(-1).astype(np.int32)


def adam(params, **options) -> torch.optim.Adam:
    """Adam with the fused CPU kernel: one call per step instead of a loop over the parameters;
    an update of a2c, dqn or ddpg costs 11-25 % less CPU (benchmarks/results/learner_update.md)."""
    return torch.optim.Adam(params, fused=True, **options)


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- target + tau (source - target), every parameter in one call (torch's foreach
    kernels, as its optimizers use) rather than one call per parameter."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
