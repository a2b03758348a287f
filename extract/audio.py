"""The audio-encoder registry (in the style of timm / open_clip): every audio encoder extraction
can use is one registered :class:`AudioEncoderEntry`; ``ExtractConfig.audio_encoder`` names one.

An entry says what the rest of the pipeline needs to know and nothing is hard-wired elsewhere:

* ``width``: the embedding size per segment (the store's ``audio_dim``);
* ``front_end``: a small, picklable, torch-free callable ``(wav, centres) -> float32
  [len(centres), *front_end.shape]`` run in the decode workers on ``front_end.sample_rate`` Hz
  mono audio (the :class:`extract.decode.DecodeSpec` carries it there, so an entry registered at
  run time works in spawned workers too, as long as its front end's class is importable);
* ``weights``: ``cfg -> {name: resolver}``, each resolver a zero-argument callable returning an
  :class:`extract.weights.ResolvedWeights` or raising ``WeightsError`` (all are tried before any
  model is built, so every missing file is named in one error);
* ``build``: ``(cfg, {name: ResolvedWeights}) -> encoder`` with ``encode(patches) -> float32
  [N, width]`` and ``identity() -> dict`` (recorded in ``attrs['encoders']['audio']`` after the
  entry's name);
* ``settings``: ``cfg -> tuple`` of the config values that change the built encoder (the
  per-process encoder cache key).

This module stays light (decode workers import it, and ExtractConfig checks names in it): torch
is imported only by ``build``.  How to add an encoder: docs/EXTENDING.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from common.registry import Registry

from . import vggish
from .weights import ResolvedWeights

class AudioFrontEnd(Protocol):
    """Waveform -> encoder input per segment; runs in the decode workers (no torch)."""

    sample_rate: int
    shape: tuple[int, ...]

    def __call__(self, wav: np.ndarray, centres: np.ndarray) -> np.ndarray: ...


class AudioEncoder(Protocol):
    """A built audio encoder (on its device, in eval mode)."""

    def encode(self, patches: np.ndarray) -> np.ndarray: ...

    def identity(self) -> dict: ...


@dataclass(frozen=True)
class AudioEncoderEntry:
    """One registered audio encoder (see the module doc for each field)."""

    name: str
    width: int
    front_end: AudioFrontEnd
    weights: Callable[[Any], Mapping[str, Callable[[], ResolvedWeights]]]
    build: Callable[[Any, Mapping[str, ResolvedWeights]], AudioEncoder]
    settings: Callable[[Any], tuple] = lambda cfg: ()


def _check_width(entry: AudioEncoderEntry) -> None:
    if int(entry.width) < 1:
        raise ValueError(f"audio encoder {entry.name!r}: width must be >= 1, got {entry.width}")


_REGISTRY: Registry[AudioEncoderEntry] = Registry("audio encoder", _check_width)


def register_audio_encoder(entry: AudioEncoderEntry, replace: bool = False) -> AudioEncoderEntry:
    """Add ``entry`` to the registry (``replace`` to overwrite an entry of the same name)."""
    return _REGISTRY.add(entry, replace)


def unregister_audio_encoder(name: str) -> None:
    """Remove ``name`` from the registry (tests, plugins that replace themselves)."""
    _REGISTRY.remove(name)


def audio_encoder_names() -> list[str]:
    return _REGISTRY.names()


def get_audio_encoder(name: str) -> AudioEncoderEntry:
    """The registered entry ``name``; ``ValueError`` naming the registered ones otherwise."""
    return _REGISTRY.get(name)


register_audio_encoder(AudioEncoderEntry(
    name="vggish", width=vggish.WIDTH, front_end=vggish.FRONT_END, weights=vggish.weight_resolvers,
    build=vggish.build, settings=vggish.settings))


__all__ = ["AudioFrontEnd", "AudioEncoder", "AudioEncoderEntry", "register_audio_encoder",
           "unregister_audio_encoder", "audio_encoder_names", "get_audio_encoder"]
