"""Hospital-side local training with PyTorch and client-level differential privacy.

This is the only module that imports torch and opacus; nothing a validator
runs imports it.

Privacy. The hospital clips its model delta to L2 norm ``C`` and adds
N(0, (sigma*C)^2) noise to every coordinate before it leaves the hospital:
the Gaussian mechanism of DP-FedAvg (McMahan et al., "Learning Differentially
Private Recurrent Language Models", ICLR 2018), applied locally because every
update is public on the chain. Two datasets that differ in any records (one
patient or the whole hospital, replace-one adjacency) give deltas at most
``2C`` apart, so each round is a Gaussian mechanism with effective noise
multiplier ``sigma / 2`` and sampling rate 1. The epsilon over rounds comes
from Opacus's RDP accountant (Mironov, "Renyi Differential Privacy", CSF
2017), not from a hand-written formula.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from opacus.accountants import RDPAccountant
from torch import nn

from core.layers import GRU, LAYER_NORM_EPS, AnyLayer, Dropout, LayerNorm, Linear, TemporalConv
from fl_contracts.spec import ModelSpec

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TrainConfig:
    local_epochs: int = 5
    lr: float = 0.1
    batch_size: int = 32
    weight_decay: float = 0.0


@dataclass(frozen=True)
class DPConfig:
    clip_norm: float
    noise_multiplier: float
    delta: float = 1e-5


def _torch_layer(layer: AnyLayer) -> nn.Module:
    if isinstance(layer, Linear):
        return nn.Linear(layer.inputs, layer.outputs)
    if isinstance(layer, LayerNorm):
        return nn.LayerNorm(layer.width, eps=LAYER_NORM_EPS)
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.rate_ppm / 1_000_000)
    if isinstance(layer, TemporalConv):
        return _TimeConv(layer)
    if isinstance(layer, GRU):
        return _LastState(layer)
    return nn.ReLU()


class _TimeConv(nn.Conv1d):
    """``core.layers.TemporalConv``: Conv1d over rows of a flattened (steps, channels) input, flattened back."""

    def __init__(self, layer: TemporalConv) -> None:
        super().__init__(layer.channels, layer.filters, layer.kernel)
        self.steps, self.channels = layer.steps, layer.channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        series = x.reshape(len(x), self.steps, self.channels).transpose(1, 2)
        return super().forward(series).transpose(1, 2).reshape(len(x), -1)


class _LastState(nn.GRU):
    """``core.layers_recurrent.GRU``: nn.GRU over a flattened (steps, features) input, giving the last hidden
    state; a subclass, so its tensors keep nn.GRU's state_dict names."""

    def __init__(self, layer: GRU) -> None:
        super().__init__(layer.features, layer.hidden, batch_first=True)
        self.steps, self.n_features = layer.steps, layer.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        _, last = super().forward(x.reshape(len(x), self.steps, self.n_features))
        return last[0]


def build_torch_model(spec: ModelSpec) -> nn.Sequential:
    """The declared stack (``spec.network_layers``) as an nn.Sequential whose state_dict is ``spec.layout``."""
    model = nn.Sequential(*(_torch_layer(layer) for layer in spec.network_layers)).to(torch.float64)
    expected = [(name, tuple(shape)) for name, shape in spec.layout]
    actual = [(name, tuple(p.shape)) for name, p in model.state_dict().items()]
    if actual != expected:
        raise ValueError(f"layout {expected} is not the declared layers' nn.Sequential ({actual})")
    return model


def initial_weights(spec: ModelSpec, seed: int) -> Array:
    """PyTorch's default initialisation, seeded, flattened in layout order."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_torch_model(spec)
    return spec.flatten({k: v.numpy() for k, v in model.state_dict().items()})


def train_local(spec: ModelSpec, flat: Array, x: Array, y: npt.NDArray[np.int64], cfg: TrainConfig, seed: int) -> Array:
    """Minibatch SGD on cross-entropy from ``flat``; returns the new flat weights."""
    model = build_torch_model(spec)
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in spec.unflatten(flat).items()})
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    xt, yt = torch.from_numpy(np.asarray(x, dtype=np.float64)), torch.from_numpy(np.asarray(y, dtype=np.int64))
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    model.train()  # dropout on while training; inference (core.layers) never drops
    with torch.random.fork_rng():  # dropout draws from the global generator: seed it, leave it as it was
        torch.manual_seed(seed)
        for _ in range(cfg.local_epochs):
            for idx in torch.randperm(len(yt), generator=gen).split(cfg.batch_size):
                opt.zero_grad()
                loss_fn(model(xt[idx]), yt[idx]).backward()
                opt.step()
    return spec.flatten({k: v.detach().numpy() for k, v in model.state_dict().items()})


def clip_l2(delta: Array, max_norm: float) -> Array:
    norm = float(np.linalg.norm(delta))
    return delta if norm <= max_norm else delta * (max_norm / norm)


def privatize(delta: Array, dp: DPConfig, rng: np.random.Generator | None = None) -> Array:
    """Clip to ``dp.clip_norm`` and add Gaussian noise; the noise comes from the OS CSPRNG unless a seeded rng is given."""
    rng = rng or np.random.default_rng(secrets.randbits(128))
    clipped = clip_l2(delta, dp.clip_norm)
    return clipped + rng.normal(0.0, dp.noise_multiplier * dp.clip_norm, size=delta.shape)


class PrivacyAccountant:
    """Opacus RDP accounting of the per-round local Gaussian mechanism described above."""

    def __init__(self, dp: DPConfig) -> None:
        self.dp = dp
        self._rdp = RDPAccountant()
        self.rounds = 0

    def step(self) -> None:
        self._rdp.step(noise_multiplier=self.dp.noise_multiplier / 2.0, sample_rate=1.0)
        self.rounds += 1

    def epsilon(self) -> float:
        return 0.0 if self.rounds == 0 else float(self._rdp.get_epsilon(self.dp.delta))


def centralised_weights(spec: ModelSpec, x: Array, y: npt.NDArray[np.int64], cfg: TrainConfig, seed: int) -> Array:
    """The pooled-data baseline: the same model family, initialisation and trainer on all data at once."""
    return train_local(spec, initial_weights(spec, seed), x, y, cfg, seed)
