"""The audio-encoder registry: a toy encoder (tiny front end, tiny torch module, width 16)
registered at run time drives a real extraction of real mp4 files, its front end running in a
decode worker process; the store's audio width and identity are the toy's."""
from __future__ import annotations

import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from extract.audio import (AudioEncoderEntry, audio_encoder_names, get_audio_encoder,
                           register_audio_encoder, unregister_audio_encoder)
from extract.config import ExtractConfig
from extract.decode import DecodeSpec, decode_video
from extract.discover import stat_video
from extract.encode import encode_videos, extract_video_reference
from extract.encoders import get_encoders
from extract.errors import ExtractError
from extract.pipeline import extract
from store import FeatureStore, verify_store
from toy_audio import TOY, WIDTH, EnergyFrontEnd
from videos import make_video, store_by_id, write_music_annotations

torch.set_num_threads(2)

BASE = dict(T=4, clip_weights="random:0", vggish_weights="random:0", text_len=8, batch_size=6,
            image_size=64, shard_size=2, device="cpu", text_batch_size=4)
F16 = dict(rtol=2e-2, atol=2e-3)
QUESTIONS = [(1, "a", '["Audio", "Counting"]', "How many instruments are sounding?", "two")]


@pytest.fixture(scope="module")
def toy():
    register_audio_encoder(TOY)
    yield TOY
    unregister_audio_encoder(TOY.name)


@pytest.fixture(scope="module")
def data(toy, tmp_path_factory):
    d = tmp_path_factory.mktemp("toy-audio")
    vids = d / "videos"
    make_video(vids / "a.mp4", 3.0, audio=True)
    make_video(vids / "b.mp4", 2.4, audio=False, seed=1)
    make_video(vids / "c.mp4", 5.5, audio=True, seed=2)
    ann = write_music_annotations(d / "ann" / "qa-test.json", QUESTIONS)
    # workers=1: the front end runs in a spawned decode worker, unpickled there from the spec
    cfg = ExtractConfig(videos=str(vids), annotations=str(ann), out=str(d / "feats.h5"),
                        audio_encoder="toy", workers=1, **BASE)
    summary = extract(cfg, progress=False)
    return SimpleNamespace(dir=d, vids=vids, cfg=cfg, summary=summary)


def test_vggish_is_the_first_entry():
    entry = get_audio_encoder("vggish")
    assert entry.width == 128 and entry.front_end.shape == (96, 64)
    assert entry.front_end.sample_rate == 16000
    assert ExtractConfig().audio_encoder == "vggish"


def test_toy_encoder_store_has_its_width_and_identity(data):
    s = data.summary
    assert (s.videos_found, s.videos_extracted, len(s.failures)) == (3, 3, 0)
    assert not verify_store(data.cfg.out)
    with FeatureStore(data.cfg.out) as fs:
        a = fs.attrs
        assert a["audio_dim"] == WIDTH
        assert a["encoders"]["audio"] == {"name": "toy", "weights": "random:0"}
        assert a["extractor_config"]["audio_encoder"] == "toy"
        audio = fs.videos("audio")
        assert audio.shape == (3, 4, WIDTH)
        present = dict(zip(fs.video_ids.tolist(), fs.videos("audio_present").tolist()))
    assert present == {"a": True, "b": False, "c": True}


def test_toy_features_equal_the_one_video_reference(data):
    enc = get_encoders(data.cfg)
    assert enc.audio_dim == WIDTH and enc.audio_entry is TOY
    vids, _ = store_by_id(data.cfg.out)
    for vid in ("a", "b", "c"):
        ref = extract_video_reference(stat_video(data.vids / f"{vid}.mp4"), data.cfg, enc)
        np.testing.assert_allclose(vids[vid]["audio"].astype(np.float32), ref.audio, **F16)
        assert vids[vid]["audio_present"] == ref.audio_present
    assert not vids["b"]["audio"].any() and vids["a"]["audio"].any()
    # the audio differs from second to second (it is the toy's, not a constant)
    assert not np.allclose(vids["c"]["audio"][0], vids["c"]["audio"][1], atol=1e-3)


def test_decode_spec_carries_the_front_end_to_the_workers(toy, data):
    spec = DecodeSpec.from_config(data.cfg, 64)
    assert spec.front_end == EnergyFrontEnd()
    assert pickle.loads(pickle.dumps(spec)) == spec
    d = decode_video(data.vids / "a.mp4", spec)
    assert d.audio.shape == (4, 8) and d.audio.dtype == np.float32


def test_a_store_of_another_audio_encoder_is_not_extended(data):
    cfg = ExtractConfig(**dict(vars(data.cfg), audio_encoder="vggish"))
    with pytest.raises(ExtractError, match="different settings: .(audio_dim|encoders)"):
        extract(cfg, progress=False)


def test_unknown_and_duplicate_names_are_errors(toy):
    with pytest.raises(ValueError, match="registered are.*toy.*vggish|registered are.*vggish"):
        get_audio_encoder("wav2vec")
    with pytest.raises(ValueError, match="audio_encoder must be one of"):
        ExtractConfig(audio_encoder="wav2vec")
    with pytest.raises(ValueError, match="already registered"):
        register_audio_encoder(TOY)
    with pytest.raises(ValueError, match="width"):
        register_audio_encoder(AudioEncoderEntry("zero", 0, TOY.front_end, TOY.weights, TOY.build))
    assert "toy" in audio_encoder_names() and "zero" not in audio_encoder_names()


def test_an_encoder_wider_than_its_entry_says_is_an_error(data):
    liar = AudioEncoderEntry("toy-liar", 12, TOY.front_end, TOY.weights, TOY.build)
    register_audio_encoder(liar)
    try:
        cfg = ExtractConfig(**dict(vars(data.cfg), audio_encoder="toy-liar", workers=0))
        enc = get_encoders(cfg)
        video = stat_video(data.vids / "a.mp4")
        decoded = decode_video(video.path, DecodeSpec.from_config(cfg, enc.clip.image_size))
        with pytest.raises(ExtractError, match="'toy-liar' returned \\(16,\\).*registered width is 12"):
            encode_videos([(video, decoded)], enc, cfg)
    finally:
        unregister_audio_encoder("toy-liar")
