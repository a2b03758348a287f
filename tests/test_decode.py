"""decode_video on real mp4 files: segment choice, padding, truncate/uniform, audio, failures."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torchvggish.vggish_input import waveform_to_examples

from extract.decode import (DecodeError, DecodeSpec, decode_video, resized_size, segment_centres)
from extract.discover import DiscoveryError, discover_videos
from extract.ahead import iter_decoded
from videos import SAMPLE_RATE, make_corrupt, make_video, second_hz, second_image

S = 64  # a small CLIP input size keeps these tests fast; the rules do not depend on it


def spec(T=6, sampling="truncate", fps=1.0):
    return DecodeSpec(T=T, fps=fps, sampling=sampling, image_size=S)


def expected_frame(second: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """What the decoder should show for a second: the source picture scaled so the short side
    is S (nearest neighbour), centre-cropped."""
    img = second_image(second, width, height, seed)
    rw, rh = resized_size(width, height, S)
    ys = (np.arange(rh) * height / rh).astype(int)
    xs = (np.arange(rw) * width / rw).astype(int)
    big = img[ys][:, xs]
    top, left = (rh - S) // 2, (rw - S) // 2
    return big[top:top + S, left:left + S].astype(np.float32)


def which_second(frame: np.ndarray, n: int, size=(64, 48), seed: int = 0) -> int:
    errs = [np.abs(frame.astype(np.float32) - expected_frame(s, *size, seed)).mean() for s in range(n)]
    return int(np.argmin(errs))


def tone_patch(second: int) -> np.ndarray:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    wav = 0.4 * np.sin(2 * np.pi * second_hz(second) * t)
    return waveform_to_examples(wav, SAMPLE_RATE, return_tensor=False)[0]


def which_tone(patch: np.ndarray, n: int) -> int:
    return int(np.argmin([np.abs(patch - tone_patch(s)).mean() for s in range(n)]))


@pytest.fixture(scope="module")
def vids(tmp_path_factory):
    d = tmp_path_factory.mktemp("decode")
    return {
        "av3": make_video(d / "av3.mp4", 3.0, fps=10, audio=True),
        "mute": make_video(d / "mute.mp4", 2.0, fps=8, size=(96, 64), audio=False, seed=1),
        "long": make_video(d / "long.mp4", 12.0, fps=8, audio=True),
        "blip": make_video(d / "blip.mp4", 0.4, fps=10, audio=True),
        "tiny": make_video(d / "tiny.mp4", 2.0, fps=12, size=(16, 12), audio=True, seed=3),
        "tall": make_video(d / "tall.mp4", 2.0, fps=8, size=(48, 64), audio=False, seed=4),
        "bad": make_corrupt(d / "bad.mp4"),
    }


def test_segment_centres_rules():
    s = spec(T=4)
    assert segment_centres(3.0, s)[1] == 3
    assert segment_centres(3.4, s)[1] == 3      # last partial second's centre is past the end
    assert segment_centres(3.6, s)[1] == 4
    assert segment_centres(0.3, s)[1] == 1      # a blip still gives one real segment
    assert segment_centres(0.0, s)[1] == 1      # no timing at all: one segment
    c, n = segment_centres(20.0, spec(T=4, sampling="uniform"))
    assert n == 4 and np.allclose(c, [2.5, 7.5, 12.5, 17.5])
    c, n = segment_centres(20.0, spec(T=4))
    assert n == 4 and np.allclose(c, [0.5, 1.5, 2.5, 3.5])
    c, n = segment_centres(4.0, spec(T=4, fps=2.0))
    assert n == 4 and np.allclose(c, [0.25, 0.75, 1.25, 1.75])


def test_with_audio_shorter_than_T_is_padded(vids):
    d = decode_video(vids["av3"], spec(T=6))
    assert d.frames.shape == (6, S, S, 3) and d.frames.dtype == np.uint8
    assert d.audio.shape == (6, 96, 64) and d.audio.dtype == np.float32
    assert d.audio_present and d.n_segments == 3
    assert d.duration == pytest.approx(3.0, abs=0.01)
    assert [which_second(d.frames[i], 3) for i in range(3)] == [0, 1, 2]
    assert [which_tone(d.audio[i], 3) for i in range(3)] == [0, 1, 2]
    for i in range(3, 6):  # padding repeats the last real second exactly
        assert np.array_equal(d.frames[i], d.frames[2])
        assert np.array_equal(d.audio[i], d.audio[2])


def test_without_audio(vids):
    d = decode_video(vids["mute"], spec(T=4))
    assert not d.audio_present
    assert d.n_segments == 2
    assert not d.audio.any()
    assert [which_second(d.frames[i], 2, size=(96, 64), seed=1) for i in range(2)] == [0, 1]


def test_longer_than_T_truncate_and_uniform(vids):
    t = decode_video(vids["long"], spec(T=4, sampling="truncate"))
    assert t.n_segments == 4 and t.duration == pytest.approx(12.0, abs=0.01)
    assert [which_second(t.frames[i], 12) for i in range(4)] == [0, 1, 2, 3]
    assert [which_tone(t.audio[i], 12) for i in range(4)] == [0, 1, 2, 3]
    u = decode_video(vids["long"], spec(T=4, sampling="uniform"))
    assert u.n_segments == 4
    # centres at 1.5, 4.5, 7.5, 10.5 s: seconds 1, 4, 7, 10 (frame and the second of audio)
    assert [which_second(u.frames[i], 12) for i in range(4)] == [1, 4, 7, 10]
    assert [which_tone(u.audio[i], 12) for i in range(4)] == [1, 4, 7, 10]


def test_under_one_second_gives_one_segment(vids):
    d = decode_video(vids["blip"], spec(T=4))
    assert d.n_segments == 1
    assert d.duration == pytest.approx(0.4, abs=0.01)
    assert all(np.array_equal(d.frames[i], d.frames[0]) for i in range(4))


def test_tiny_and_portrait_resolution(vids):
    d = decode_video(vids["tiny"], spec(T=3))
    assert d.frames.shape == (3, S, S, 3) and d.n_segments == 2
    assert [which_second(d.frames[i], 2, size=(16, 12), seed=3) for i in range(2)] == [0, 1]
    p = decode_video(vids["tall"], spec(T=2))
    assert p.frames.shape == (2, S, S, 3)
    assert [which_second(p.frames[i], 2, size=(48, 64), seed=4) for i in range(2)] == [0, 1]
    assert resized_size(48, 64, S) == (64, 85) and resized_size(96, 64, S) == (96, 64)


def test_corrupt_and_missing_files_raise_decode_error(vids, tmp_path):
    with pytest.raises(DecodeError, match="bad.mp4"):
        decode_video(vids["bad"], spec())
    with pytest.raises(DecodeError, match="not found"):
        decode_video(tmp_path / "nope.mp4", spec())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError, match="empty.mp4"):
        decode_video(empty, spec())


def test_worker_processes_decode_like_the_main_process(vids):
    from extract.discover import stat_video

    files = [stat_video(vids[k]) for k in ("av3", "bad", "mute", "tiny")]
    here = list(iter_decoded(files, spec(T=4), workers=0, window=2))
    pooled = list(iter_decoded(files, spec(T=4), workers=1, window=2))
    assert [v.video_id for v, _ in pooled] == ["av3", "bad", "mute", "tiny"]   # input order
    for (_, a), (_, b) in zip(here, pooled):
        if isinstance(a, str):
            assert isinstance(b, str) and "bad.mp4" in b
        else:
            assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
            assert (a.n_segments, a.audio_present) == (b.n_segments, b.audio_present)


def test_discover_finds_videos_and_rejects_duplicate_stems(tmp_path):
    make_video(tmp_path / "x" / "one.mp4", 1.0, audio=False)
    make_video(tmp_path / "two.MP4", 1.0, audio=False)
    (tmp_path / "notes.txt").write_text("not a video")
    found = discover_videos(tmp_path)
    assert [v.video_id for v in found] == ["one", "two"]
    assert found[0].size == (tmp_path / "x" / "one.mp4").stat().st_size
    make_corrupt(tmp_path / "y" / "one.mkv")
    with pytest.raises(DiscoveryError) as err:
        discover_videos(tmp_path)
    assert "one.mp4" in str(err.value) and "one.mkv" in str(err.value)
    with pytest.raises(DiscoveryError, match="not found"):
        discover_videos(tmp_path / "absent")


# ---- decode workers: defaults, single-threaded, light, started early -------------------------


def test_default_workers_follow_the_usable_cores():
    import os

    from extract.config import ExtractConfig
    from extract.ahead import resolve_workers

    assert ExtractConfig().workers == -1                      # auto
    assert resolve_workers(-1) == len(os.sched_getaffinity(0))
    assert resolve_workers(0) == 0 and resolve_workers(3) == 3
    with pytest.raises(ValueError, match="workers"):
        ExtractConfig(workers=-2)


def test_worker_processes_are_single_threaded_light_and_niced():
    from extract.decode_worker import single_threaded_env, worker_facts
    from extract.ahead import DECODE_NICE, _new_pool

    pool = _new_pool(1)
    try:
        with single_threaded_env():
            facts = pool.submit(worker_facts).result()
    finally:
        pool.shutdown(wait=True)
    assert set(facts["threads"].values()) == {"1"}
    assert not facts["torch_imported"] and not facts["open_clip_imported"]
    assert facts["nice"] >= DECODE_NICE


def test_decoding_started_ahead_gives_the_same_results(vids):
    from extract.discover import stat_video
    from extract.ahead import DecodeAhead

    files = [stat_video(vids[k]) for k in ("av3", "bad", "mute", "tiny", "long")]
    here = list(iter_decoded(files, spec(T=4), workers=0, window=2))
    ahead = DecodeAhead(files, spec(T=4), workers=2, window=1, startup_window=5).start()
    assert len(ahead.pending) == 5                            # all submitted before iterating
    folder = Path(ahead.folder)
    got = list(ahead)
    assert not folder.exists()                                # hand-off files removed with it
    assert [v.video_id for v, _ in got] == [v.video_id for v in files]
    for (_, a), (_, b) in zip(here, got):
        if isinstance(a, str):
            assert isinstance(b, str) and "bad.mp4" in b
        else:
            assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)


def test_handoff_files_round_trip_and_fall_back_to_the_pipe(vids, tmp_path):
    from extract.decode_worker import Handoff, decode_to_file, read_handoff

    direct = decode_video(vids["av3"], spec(T=4))
    h = decode_to_file(str(vids["av3"]), spec(T=4), str(tmp_path))
    assert isinstance(h, Handoff) and Path(h.file).parent == tmp_path
    back = read_handoff(h)
    assert not Path(h.file).exists()                          # consumed once
    assert np.array_equal(back.frames, direct.frames) and np.array_equal(back.audio, direct.audio)
    assert (back.n_segments, back.audio_present, back.duration) == \
        (direct.n_segments, direct.audio_present, direct.duration)
    gone = tmp_path / "gone"                                  # folder removed: arrays come inline
    inline = decode_to_file(str(vids["av3"]), spec(T=4), str(gone))
    assert np.array_equal(inline.frames, direct.frames)
    assert isinstance(decode_to_file(str(vids["bad"]), spec(T=4), str(tmp_path)), str)
    assert list(tmp_path.iterdir()) == []


def test_extract_command_starts_without_torch():
    """Decode workers start before torch is imported (it takes seconds): the CLI and everything
    extract() runs before the encoders are built stay torch-free."""
    import subprocess
    import sys

    code = ("import sys, cli, store, store.layout\n"
            "from extract.pipeline import extract\nfrom extract.ahead import DecodeAhead\n"
            "from extract.weights import WeightsError\n"
            "from qa.annotations import vocabulary_for\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_clip_input_size_is_read_without_building_the_model():
    from extract.ahead import clip_input_size

    assert clip_input_size("ViT-B-32") == 224
    assert clip_input_size("ViT-B/32") == 224
    assert clip_input_size("no-such-model") is None
