"""``import-features``: folders of ``<video_id>.npy`` files in the MUSIC-AVQA release layout
(VGGish [60, 128], visual [T, 512], T varying) become a normal store: rows padded/truncated to
T with the true n_segments, questions CLIP-encoded as ``extract`` does, the source in the
encoder identity, bad files recorded as failures, resume and the lock as in extraction; then
``train`` (1 epoch) and ``eval`` run on it unchanged."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from videos import write_music_annotations  # noqa: E402

from cli import app  # noqa: E402
from extract.config import ExtractConfig  # noqa: E402
from extract.encoders import get_encoders  # noqa: E402
from extract.importer import ImportConfig, folder_digest, import_features, list_features  # noqa: E402
from extract.errors import ExtractError  # noqa: E402
from store import FeatureStore, StoreError, StoreLock, store_info, verify_store  # noqa: E402
from train import evaluate, load_train_config, train  # noqa: E402
from infer.ask import Asker, AskError, AskSettings  # noqa: E402

torch.set_num_threads(2)

TEXT = dict(clip_model="ViT-S-32", clip_weights="random:0", text_len=8, device="cpu")
TYPES = ['["Audio", "Counting"]', '["Visual", "Location"]', '["Audio-Visual", "Existential"]']
ANSWERS = ["two", "left", "yes"]
LENGTHS = [60, 45, 75, 12, 60, 30, 61, 59, 60, 20]     # visual rows per good video
BAD = {"nan": "nan", "shape": "shape", "junk": "junk", "only_audio": "only_audio",
       "only_visual": "only_visual"}


def _write(folder: Path, vid: str, arr: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{vid}.npy", arr)


def make_release(root: Path) -> SimpleNamespace:
    """The release layout: audio/ and visual/ folders of <id>.npy, plus annotation files."""
    rng = np.random.default_rng(0)
    a_dir, v_dir = root / "vggish", root / "res18"
    good = {}
    for k, t in enumerate(LENGTHS):
        vid = f"{k:08d}"
        a = rng.standard_normal((60, 128)).astype(np.float32)
        v = rng.standard_normal((t, 512)).astype(np.float32)
        _write(a_dir, vid, a)
        _write(v_dir, vid, v)
        good[vid] = (a, v)
    good["silent"] = (np.zeros((60, 128), np.float32), rng.standard_normal((50, 512)).astype(np.float32))
    _write(a_dir, "silent", good["silent"][0])
    _write(v_dir, "silent", good["silent"][1])
    v_nan = rng.standard_normal((40, 512)).astype(np.float32)
    v_nan[3, 7] = np.nan
    _write(a_dir, "nan", rng.standard_normal((60, 128)).astype(np.float32))
    _write(v_dir, "nan", v_nan)
    _write(a_dir, "shape", rng.standard_normal((60, 64)).astype(np.float32))      # not 128-d
    _write(v_dir, "shape", rng.standard_normal((60, 512)).astype(np.float32))
    _write(a_dir, "junk", rng.standard_normal((60, 128)).astype(np.float32))
    (v_dir / "junk.npy").write_bytes(b"\x93NUMPY garbage, not an array")
    _write(a_dir, "only_audio", rng.standard_normal((60, 128)).astype(np.float32))
    _write(v_dir, "only_visual", rng.standard_normal((60, 512)).astype(np.float32))
    qs = {"train": [], "val": [], "test": []}
    split_of = lambda k: "train" if k < 6 else "val" if k < 8 else "test"  # noqa: E731
    qid = 0
    for k, vid in enumerate(list(good) + ["nan"]):
        for typ, ans in zip(TYPES, ANSWERS):
            qid += 1
            qs[split_of(k) if vid != "nan" else "test"].append(
                (qid, vid, typ, f"Question {qid} about the instruments?", ans))
    ann = root / "ann"
    for split, items in qs.items():
        write_music_annotations(ann / f"avqa-{split}.json", items)
    return SimpleNamespace(audio=a_dir, visual=v_dir, ann=ann, good=good, n_questions=qid)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("import")
    rel = make_release(root)
    cfg = ImportConfig(audio=str(rel.audio), visual=str(rel.visual), annotations=str(rel.ann),
                       out=str(root / "feats.h5"), shard_size=4, **TEXT)
    return rel, cfg, import_features(cfg)


def test_rows_padding_truncation_and_true_segments(imported):
    rel, cfg, summary = imported
    assert summary.videos_extracted == len(rel.good) and summary.store_videos == len(rel.good)
    assert not verify_store(cfg.out)
    with FeatureStore(cfg.out) as fs:
        assert (fs.attrs["T"], fs.attrs["visual_dim"], fs.attrs["audio_dim"]) == (60, 512, 128)
        ids = fs.video_ids.tolist()
        audio, visual = fs.videos("audio"), fs.videos("visual")
        n_seg, present = fs.videos("n_segments"), fs.videos("audio_present")
        for vid, (a, v) in rel.good.items():
            r = ids.index(vid)
            t = v.shape[0]
            assert n_seg[r] == min(t, 60)
            want = v[:60] if t >= 60 else np.concatenate([v, np.repeat(v[-1:], 60 - t, 0)])
            np.testing.assert_allclose(visual[r].astype(np.float32), want, rtol=2e-3, atol=2e-3)
            np.testing.assert_allclose(audio[r].astype(np.float32), a, rtol=2e-3, atol=2e-3)
        assert present.tolist() == [v != "silent" for v in ids]   # all-zero audio: no audio


def test_questions_are_encoded_as_extract_does(imported):
    rel, cfg, summary = imported
    enc = get_encoders(ExtractConfig(**TEXT), audio=False)
    with FeatureStore(cfg.out) as fs:
        texts = fs.questions("text").tolist()
        sent = fs.questions("sentence").astype(np.float32)
        # the question of the failed video is not written (no video), as in extraction
        assert fs.n_questions == rel.n_questions - 3 and summary.questions_without_video == 3
    ref, _, _ = enc.clip.encode_text(texts[:5])
    np.testing.assert_allclose(sent[:5], ref, rtol=2e-2, atol=2e-3)


def test_identity_names_the_source_and_store_info_shows_it(imported):
    rel, cfg, _ = imported
    info = store_info(cfg.out)
    enc = info["encoders"]
    assert enc["audio"]["name"] == "imported:vggish" and enc["visual"]["name"] == "imported:resnet18"
    assert enc["visual"]["weights"] == "sha256:" + folder_digest(list_features(rel.visual))
    assert enc["text"] == {"name": "ViT-S-32", "weights": "random:0"}
    out = CliRunner().invoke(app, ["store", "info", cfg.out])
    assert out.exit_code == 0 and "imported:resnet18" in out.output and "sha256:" in out.output


def test_bad_files_are_recorded_failures(imported):
    _, cfg, summary = imported
    errors = {Path(p).stem: e for p, e in summary.failures}
    assert set(errors) == set(BAD)
    assert "NaN" in errors["nan"] and "[60, 64]" in errors["shape"]
    assert "unreadable" in errors["junk"] and "no visual features" in errors["only_audio"]
    assert "no audio features" in errors["only_visual"]
    assert len(store_info(cfg.out)["failures"]) == len(BAD)


def test_resume_skips_stored_videos_and_the_lock_refuses_a_second_writer(imported, tmp_path):
    rel, cfg, _ = imported
    again = import_features(cfg)
    assert (again.videos_skipped, again.videos_extracted, again.questions_added) == (len(rel.good), 0, 0)
    with StoreLock(cfg.out):
        with pytest.raises(StoreError, match="pid"):
            import_features(cfg)
    # other files = another identity: refused, naming the field
    _write(rel.visual, "zz_new", np.ones((5, 512), np.float32))
    try:
        with pytest.raises(ExtractError, match="encoders"):
            import_features(cfg)
    finally:
        (rel.visual / "zz_new.npy").unlink()


def test_train_one_epoch_and_eval_run_unchanged(imported, tmp_path):
    _, cfg, _ = imported
    tcfg = load_train_config(None, {"store": cfg.out, "out": str(tmp_path / "runs"), "name": "imp",
                                    "epochs": 1, "batch_size": 8, "progress": False,
                                    "num_threads": 1, "model": {"d_model": 16, "n_layers": 1,
                                                                "d_state": 4, "n_heads": 2,
                                                                "curvature_hidden": 8}})
    run = train(tcfg).run_dir
    report = evaluate(run, split="test", plots=False)
    assert report["count"] == 9 and 0.0 <= report["overall"] <= 100.0
    # a run on imported features has no visual encoder to answer about a new video
    with pytest.raises(AskError, match="imported features.*imported:resnet18.*no visual encoder"):
        Asker(AskSettings(run=str(run), device="cpu"))


def test_cli_import_and_errors(imported, tmp_path):
    rel, cfg, _ = imported
    out = tmp_path / "r21d.h5"
    r = CliRunner().invoke(app, ["import-features", "--audio", str(rel.audio), "--visual",
                                 str(rel.visual), "--annotations", str(rel.ann), "--out", str(out),
                                 "--visual-name", "r2plus1d", "--clip-model", "ViT-S-32",
                                 "--clip-weights", "random:0", "--text-len", "8", "--device", "cpu",
                                 "--quiet", "--strict"])
    assert r.exit_code == 1 and "--strict: 5 file(s) failed" in r.output      # 5 bad files
    assert store_info(out)["encoders"]["visual"]["name"] == "imported:r2plus1d"
    assert store_info(out)["videos"] == len(rel.good)
    r = CliRunner().invoke(app, ["import-features", "--audio", str(tmp_path / "no"), "--visual",
                                 str(tmp_path / "no"), "--annotations", str(tmp_path),
                                 "--out", str(tmp_path / "f.h5")])
    assert r.exit_code == 2 and "not a folder" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["import-features", "--out", str(tmp_path / "f.h5")])
    assert r.exit_code == 2 and "--audio" in r.output
    r = CliRunner().invoke(app, ["import-features", "--audio", "a", "--visual", "b",
                                 "--annotations", "c", "--visual-name", "vgg"])
    assert r.exit_code == 2 and "visual_name" in r.output
