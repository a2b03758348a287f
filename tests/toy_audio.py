"""A toy audio encoder for the registry tests: a tiny torch-free front end (the spectrum of the
second of 8 kHz audio around each segment centre, in 8 bands of 150 Hz) and a tiny torch module
(a seeded random Linear 8 -> 16).  Its own module, without torch at the top, so the decode workers
can unpickle the front end cheaply."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from extract.audio import AudioEncoderEntry
from extract.weights import ResolvedWeights, parse_random

WIDTH = 16


@dataclass(frozen=True)
class EnergyFrontEnd:
    sample_rate: int = 8000
    shape: tuple[int, ...] = (8,)

    def __call__(self, wav: np.ndarray, centres: np.ndarray) -> np.ndarray:
        n = self.sample_rate
        out = np.zeros((len(centres), *self.shape), np.float32)
        for i, c in enumerate(np.asarray(centres, np.float64)):
            start = int(round((c - 0.5) * n))
            window = np.zeros(n, np.float64)
            lo, hi = max(start, 0), min(start + n, len(wav))
            if hi > lo:
                window[lo - start:hi - start] = wav[lo:hi]
            spectrum = np.abs(np.fft.rfft(window))[:150 * self.shape[0]]   # 1-Hz bins
            out[i] = np.log1p(spectrum.reshape(self.shape[0], -1).mean(axis=1))
        return out


class ToyAudioEncoder:
    def __init__(self, weights: ResolvedWeights):
        import torch

        self.weights = weights
        torch.manual_seed(int(weights.seed))
        self.model = torch.nn.Linear(8, WIDTH).eval()

    def encode(self, inputs: Any) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model(torch.as_tensor(inputs, dtype=torch.float32)).numpy()

    def identity(self) -> dict:
        return {"weights": self.weights.identity}


def _weights(cfg: Any) -> dict:
    seed = parse_random("random", cfg.seed)
    return {"weights": lambda: ResolvedWeights("random", f"random:{seed}", seed=seed)}


def _build(cfg: Any, weights: Mapping[str, ResolvedWeights]) -> ToyAudioEncoder:
    return ToyAudioEncoder(weights["weights"])


TOY = AudioEncoderEntry(name="toy", width=WIDTH, front_end=EnergyFrontEnd(), weights=_weights,
                        build=_build)
