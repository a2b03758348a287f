"""write_av writes real H.264 + AAC mp4 files that decord decodes with the right shape/duration."""
from __future__ import annotations

import decord
import numpy as np
import pytest

from synth.avwrite import write_av


def _tone(seconds: float, hz: float = 440.0, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_video_with_audio_decodes(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (25, 72, 96, 3), dtype=np.uint8)
    out = write_av(tmp_path / "a.mp4", frames, fps=10, audio=_tone(2.5))
    vr = decord.VideoReader(str(out))
    assert len(vr) == 25
    assert vr[0].shape == (72, 96, 3)
    assert vr.get_avg_fps() == pytest.approx(10.0)
    assert vr.get_frame_timestamp(24)[0] == pytest.approx(2.4, abs=1e-3)
    ar = decord.AudioReader(str(out), sample_rate=16000, mono=True)
    wav = ar[:].asnumpy()[0]
    # AAC rounds up to whole 1024-sample frames (decord's duration() truncates to whole seconds)
    assert len(wav) / 16000 == pytest.approx(2.5, abs=0.1)
    # the tone survives AAC: its energy sits at 440 Hz
    spec = np.abs(np.fft.rfft(wav[2000:2000 + 16000]))  # 1 s window: 1 Hz bins
    assert abs(int(np.argmax(spec)) - 440) <= 2
    assert 0.2 < np.abs(wav).max() < 0.7


def test_odd_size_iterable_no_audio(tmp_path):
    frames = (np.full((45, 33, 3), i * 10, dtype=np.uint8) for i in range(12))
    out = write_av(tmp_path / "b.mp4", frames, fps=12.5)
    vr = decord.VideoReader(str(out))
    assert len(vr) == 12
    assert vr[0].shape == (46, 34, 3)  # padded to even
    assert vr.get_avg_fps() == pytest.approx(12.5)
    # frame content is kept (gray levels 0, 10, ..., 110 up to codec error)
    assert abs(float(vr[5].asnumpy().mean()) - 50) < 4
    with pytest.raises(decord.DECORDError):
        decord.AudioReader(str(out), sample_rate=16000, mono=True)


def test_variable_frame_times(tmp_path):
    frames = np.zeros((6, 32, 32, 3), dtype=np.uint8)
    times = [0.0, 0.1, 0.35, 0.4, 0.9, 1.0]
    out = write_av(tmp_path / "c.mp4", frames, fps=10, frame_times=times)
    vr = decord.VideoReader(str(out))
    assert len(vr) == 6
    np.testing.assert_allclose(vr.get_frame_timestamp(np.arange(6))[:, 0], times, atol=2e-3)


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="bad.mp4: frame 0"):
        write_av(tmp_path / "bad.mp4", np.zeros((2, 8, 8), dtype=np.uint8), fps=10)
    with pytest.raises(ValueError, match="no frames"):
        write_av(tmp_path / "empty.mp4", [], fps=10)
    with pytest.raises(ValueError, match="mono"):
        write_av(tmp_path / "s.mp4", np.zeros((2, 8, 8, 3), np.uint8), fps=10,
                 audio=np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="strictly increasing"):
        write_av(tmp_path / "t.mp4", np.zeros((2, 8, 8, 3), np.uint8), fps=10, frame_times=[0, 0])
    assert not list(tmp_path.iterdir())  # nothing half-written is left behind


def test_rgb_to_yuv420p_matches_swscale(tmp_path):
    """Our numpy conversion (deterministic) against FFmpeg's swscale (the reference): equal
    luma, and equal chroma away from colour edges (swscale's chroma filter spans neighbours)."""
    import av

    from synth.avwrite import rgb_to_yuv420p

    rng = np.random.default_rng(1)
    frame = np.repeat(np.repeat(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), 8, 0), 8, 1)
    ref = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p").to_ndarray()
    ours = rgb_to_yuv420p(frame)
    assert ours.shape == ref.shape == (72, 64)
    assert np.abs(ours[:48].astype(int) - ref[:48]).max() <= 1
    flat = ours.reshape(-1)[48 * 64:].astype(int), ref.reshape(-1)[48 * 64:].astype(int)
    for a, b in ((flat[0][:768], flat[1][:768]), (flat[0][768:], flat[1][768:])):
        a, b = a.reshape(24, 32), b.reshape(24, 32)
        inner = np.ix_([i for i in range(24) if i % 4 in (1, 2)], [j for j in range(32) if j % 4 in (1, 2)])
        assert np.abs(a[inner] - b[inner]).max() <= 1
    # every byte of the frame handed to the encoder is set, row padding included
    from synth.avwrite import yuv420p_frame

    small = rng.integers(0, 256, (90, 240, 3), dtype=np.uint8)  # chroma rows 120 of 128 bytes
    vf = yuv420p_frame(rgb_to_yuv420p(small))
    for plane, (pw, ph) in zip(vf.planes, ((240, 90), (120, 45), (120, 45))):
        raw = np.frombuffer(bytes(plane), np.uint8).reshape(-1, plane.line_size)
        assert raw.shape[0] >= ph and plane.width == pw
        assert (raw[:ph, pw:] == raw[:ph, pw - 1:pw]).all()  # edge-replicated, not garbage
    np.testing.assert_array_equal(vf.to_ndarray(), rgb_to_yuv420p(small))
