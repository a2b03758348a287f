"""The vectorised VGGish log-mel (extract.logmel, used by decode) against the per-second
reference (torchvggish's waveform_to_examples on each one-second window)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from extract import logmel
from extract.logmel import audio_patches, audio_patches_reference

#: the fast path may differ from the reference only by float rounding (a different BLAS
#: summation order); measured: bit-identical on the 2-core CPU machine
ATOL = 1e-5


def test_parameters_and_mel_matrix_are_vggish():
    from torchvggish import mel_features, vggish_params as p

    assert (logmel.SAMPLE_RATE, logmel.NUM_FRAMES, logmel.NUM_BANDS) == \
        (p.SAMPLE_RATE, p.NUM_FRAMES, p.NUM_BANDS)
    assert (logmel.MEL_MIN_HZ, logmel.MEL_MAX_HZ, logmel.LOG_OFFSET) == \
        (p.MEL_MIN_HZ, p.MEL_MAX_HZ, p.LOG_OFFSET)
    assert logmel.WINDOW == round(p.SAMPLE_RATE * p.STFT_WINDOW_LENGTH_SECONDS)
    assert logmel.HOP == round(p.SAMPLE_RATE * p.STFT_HOP_LENGTH_SECONDS)
    ref = mel_features.spectrogram_to_mel_matrix(
        num_mel_bins=p.NUM_MEL_BINS, num_spectrogram_bins=logmel.FFT // 2 + 1,
        audio_sample_rate=p.SAMPLE_RATE, lower_edge_hertz=p.MEL_MIN_HZ,
        upper_edge_hertz=p.MEL_MAX_HZ)
    np.testing.assert_array_equal(logmel.mel_matrix(), ref)
    np.testing.assert_array_equal(logmel.periodic_hann(), mel_features.periodic_hann(logmel.WINDOW))


@pytest.mark.parametrize("centres", [
    np.arange(7) + 0.5,                                  # fps = 1, truncate: whole seconds
    np.array([0.1, 0.25, 2.3337, 5.9, 6.7, 9.0]),        # uniform / fps != 1; past the end
    np.array([0.5]),
])
def test_vectorised_patches_equal_the_per_second_reference(centres):
    rng = np.random.default_rng(0)
    t = np.arange(int(6.3 * 16000)) / 16000
    wav = (0.3 * np.sin(2 * np.pi * 440 * t * (1 + t / 10)) +
           0.05 * rng.standard_normal(t.size)).astype(np.float32)
    fast = audio_patches(wav, centres)
    ref = audio_patches_reference(wav, centres)
    assert fast.shape == ref.shape == (len(centres), 96, 64) and fast.dtype == np.float32
    np.testing.assert_allclose(fast, ref, rtol=0, atol=ATOL)
    # a window entirely past the end is silence: log(0 + offset) everywhere
    if centres.max() > 7.0:
        assert np.all(fast[-1] == np.float32(np.log(logmel.LOG_OFFSET)))


def test_decode_path_does_not_import_torch():
    """Decode workers stay light: decoding (video + audio patches) never imports torch."""
    code = ("import sys, numpy as np; import extract.decode; from extract.logmel import audio_patches; "
            "audio_patches(np.zeros(20000, np.float32), np.array([0.5])); "
            "import extract.decode_worker; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
