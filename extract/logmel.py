"""VGGish's front end: log-mel patches for many one-second windows at once, pure numpy, no torch
(it runs in the decode workers; the VGGish registry entry, :mod:`extract.vggish`, names it).

``torchvggish.vggish_input.waveform_to_examples`` (the reference) computes one window at a time:
frame the waveform (400-sample periodic-Hann frames every 160 samples), ``|rfft|`` of length 512,
a 64-band HTK mel matrix (125-7500 Hz), ``log(mel + 0.01)``, then cut 96-frame examples.  A
one-second window of 16 kHz audio gives 98 frames and so exactly one example: its first 96
frames.  :func:`log_mel_patches` computes those 96 frames for *all* windows with one strided
framing, one ``rfft`` and one matrix product.  ``tests/test_logmel.py`` checks it against the
reference window by window (float32 results equal to within 1e-5 absolute; in practice they are
bit-identical or differ in the last float32 bit, from a different BLAS summation order).

Importing ``torchvggish`` imports torch (its ``__init__`` pulls in the model), which would cost
every decode worker process seconds of start-up; the parameters below are VGGish's
(``torchvggish.vggish_params``) and the same test checks that they, and the mel matrix, match.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
NUM_FRAMES = 96            # frames per example (0.96 s)
NUM_BANDS = 64
WINDOW = 400               # STFT window: round(0.025 s * 16 kHz)
HOP = 160                  # STFT hop: round(0.010 s * 16 kHz)
FFT = 512                  # 2 ** ceil(log2(WINDOW))
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
#: samples that the 96 frames of one example read (the rest of a 1-s window is not used)
SPAN = (NUM_FRAMES - 1) * HOP + WINDOW


def _hertz_to_mel(hz: np.ndarray | float) -> np.ndarray | float:
    return 1127.0 * np.log(1.0 + hz / 700.0)


@lru_cache(maxsize=None)
def mel_matrix() -> np.ndarray:
    """[FFT // 2 + 1, NUM_BANDS] HTK mel weights: ``mel_features.spectrogram_to_mel_matrix``."""
    n_bins = FFT // 2 + 1
    bins_mel = _hertz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2.0, n_bins))
    edges = np.linspace(_hertz_to_mel(MEL_MIN_HZ), _hertz_to_mel(MEL_MAX_HZ), NUM_BANDS + 2)
    m = np.empty((n_bins, NUM_BANDS))
    for i in range(NUM_BANDS):
        lo, centre, hi = edges[i:i + 3]
        m[:, i] = np.maximum(0.0, np.minimum((bins_mel - lo) / (centre - lo),
                                             (hi - bins_mel) / (hi - centre)))
    m[0, :] = 0.0
    m.setflags(write=False)
    return m


@lru_cache(maxsize=None)
def periodic_hann() -> np.ndarray:
    w = 0.5 - 0.5 * np.cos(2 * np.pi / WINDOW * np.arange(WINDOW))
    w.setflags(write=False)
    return w


def log_mel_patches(windows: np.ndarray) -> np.ndarray:
    """[N, >= SPAN] float64 waveform windows (16 kHz mono, each starting at its own first
    sample) -> float32 [N, 96, 64]: the first VGGish example of each window."""
    windows = np.ascontiguousarray(windows, dtype=np.float64)
    if windows.ndim != 2 or windows.shape[1] < SPAN:
        raise ValueError(f"windows must be [N, >= {SPAN}] samples, got {windows.shape}")
    n = windows.shape[0]
    if n == 0:
        return np.zeros((0, NUM_FRAMES, NUM_BANDS), np.float32)
    s0, s1 = windows.strides
    frames = np.lib.stride_tricks.as_strided(windows, shape=(n, NUM_FRAMES, WINDOW),
                                             strides=(s0, HOP * s1, s1), writeable=False)
    spec = np.abs(np.fft.rfft(frames * periodic_hann(), FFT))      # [n, 96, 257]
    mel = spec.reshape(n * NUM_FRAMES, -1) @ mel_matrix()
    return np.log(mel + LOG_OFFSET).astype(np.float32).reshape(n, NUM_FRAMES, NUM_BANDS)


def window_starts(centres: np.ndarray) -> np.ndarray:
    """First sample of the one-second window centred on each centre time (seconds)."""
    return np.round((np.asarray(centres, np.float64) - 0.5) * SAMPLE_RATE).astype(np.int64)


def gather_windows(wav: np.ndarray, starts: np.ndarray, length: int = SAMPLE_RATE) -> np.ndarray:
    """[N, length] float64: ``wav[start:start + length]`` per start, zeros past either end."""
    starts = np.asarray(starts, np.int64)
    out = np.zeros((len(starts), length), np.float64)
    for i, s in enumerate(starts.tolist()):
        lo, hi = max(s, 0), min(s + length, len(wav))
        if hi > lo:
            out[i, lo - s:hi - s] = wav[lo:hi]
    return out


def audio_patches(wav: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """One VGGish log-mel patch [96, 64] per centre: the second of audio centred on it (zero
    padded past either end), all windows in one vectorised pass; :func:`audio_patches_reference`
    is the per-second reference it is tested against."""
    return log_mel_patches(gather_windows(wav, window_starts(centres), SPAN))


def audio_patches_reference(wav: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The slow reference of :func:`audio_patches`: torchvggish's ``waveform_to_examples`` on
    each one-second window (imports torch)."""
    from torchvggish.vggish_input import waveform_to_examples

    out = np.empty((len(centres), NUM_FRAMES, NUM_BANDS), dtype=np.float32)
    for i, c in enumerate(centres):
        start = int(round((c - 0.5) * SAMPLE_RATE))
        window = np.zeros(SAMPLE_RATE, dtype=np.float64)
        lo, hi = max(start, 0), min(start + SAMPLE_RATE, len(wav))
        if hi > lo:
            window[lo - start:hi - start] = wav[lo:hi]
        out[i] = waveform_to_examples(window, SAMPLE_RATE, return_tensor=False)[0]
    return out


@dataclass(frozen=True)
class LogMelFrontEnd:
    """VGGish's audio front end (an :class:`extract.audio.AudioFrontEnd`): 16 kHz mono in, one
    96x64 log-mel patch per segment centre out.  Small and picklable: it travels to the workers."""

    sample_rate: int = SAMPLE_RATE
    shape: tuple[int, ...] = (NUM_FRAMES, NUM_BANDS)

    def __call__(self, wav: np.ndarray, centres: np.ndarray) -> np.ndarray:
        return audio_patches(wav, centres)


__all__ = ["LogMelFrontEnd", "audio_patches", "audio_patches_reference", "log_mel_patches",
           "gather_windows", "window_starts", "mel_matrix", "SAMPLE_RATE", "NUM_FRAMES", "NUM_BANDS",
           "SPAN"]
