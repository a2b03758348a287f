"""The audio-reader registry: how a video file's audio stream becomes the mono waveform the audio
front end gets; ``ExtractConfig.audio_reader`` names one.

A reader is ``read(path, sample_rate) -> 1-D float array`` at ``sample_rate`` Hz, mono, or
``None`` when the file has no audio stream; it raises :class:`extract.errors.DecodeError` for
audio it cannot decode.  :func:`extract.decode.read_audio` makes the result float32 and checks
it.  Readers import their decoder when called: decode workers and ``ExtractConfig``'s name check
import this module.

* ``pyav`` (the default): FFmpeg through PyAV, every decoded frame fed to one resampler, so the
  resampler's filter state runs on across frame boundaries.
* ``decord``: decord's ``AudioReader``.  It resamples each compressed frame (1024 AAC samples) on
  its own, restarting the resampler at every frame boundary: audio not already at
  ``sample_rate`` comes out wrong after the first frame (docs/EXTRACTION.md).  Stores made
  before ``audio_reader`` existed were read with it; it is kept so they can be resumed with the
  same features.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from common.registry import Registry

from .errors import DecodeError, short_reason

#: ``(path, sample_rate) -> waveform or None``
ReadFn = Callable[[str, int], "np.ndarray | None"]


@dataclass(frozen=True)
class AudioReaderEntry:
    """One registered audio reader; ``read`` must be a module-level function (the decode spec
    carries it to spawned workers pickled, by reference)."""

    name: str
    read: ReadFn


_REGISTRY: Registry[AudioReaderEntry] = Registry("audio reader")


def register_audio_reader(entry: AudioReaderEntry, replace: bool = False) -> AudioReaderEntry:
    """Add ``entry`` to the registry (``replace`` to overwrite an entry of the same name)."""
    return _REGISTRY.add(entry, replace)


def unregister_audio_reader(name: str) -> None:
    _REGISTRY.remove(name)


def audio_reader_names() -> list[str]:
    return _REGISTRY.names()


def get_audio_reader(name: str) -> AudioReaderEntry:
    """The registered entry ``name``; ``ValueError`` naming the registered ones otherwise."""
    return _REGISTRY.get(name)


def read_pyav(path: str, sample_rate: int) -> np.ndarray | None:
    """The best audio stream (FFmpeg's choice, as decord's), decoded and resampled as one signal."""
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.best("audio")
            if stream is None:
                return None
            stream.thread_type = "NONE"   # decode workers are single-threaded
            resampler = av.AudioResampler(format="flt", layout="mono", rate=int(sample_rate))
            chunks = [out.to_ndarray().reshape(-1) for frame in container.decode(stream)
                      for out in resampler.resample(frame)]
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]  # flush
    except (av.error.FFmpegError, ValueError) as exc:   # ValueError: a frame format change
        raise DecodeError(f"{path}: cannot decode audio: {short_reason(exc)}") from None
    return np.concatenate(chunks) if chunks else None


def read_decord(path: str, sample_rate: int) -> np.ndarray | None:
    """decord's ``AudioReader`` (mono, resampled frame by frame: see the module doc)."""
    from decord import AudioReader
    from decord._ffi.base import DECORDError

    try:
        return AudioReader(path, sample_rate=int(sample_rate), mono=True)[:].asnumpy()
    except DECORDError as exc:
        if "audio stream" in str(exc).lower():
            return None
        raise DecodeError(f"{path}: cannot decode audio: {short_reason(exc)}") from None


register_audio_reader(AudioReaderEntry("pyav", read_pyav))
register_audio_reader(AudioReaderEntry("decord", read_decord))


__all__ = ["AudioReaderEntry", "register_audio_reader", "unregister_audio_reader",
           "audio_reader_names", "get_audio_reader", "read_pyav", "read_decord"]
