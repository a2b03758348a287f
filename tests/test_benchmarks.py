"""The benchmark scripts run end to end at tiny sizes on the CPU (so they don't rot), and the
peer-style pieces they time do what the peers do.  No timing is asserted anywhere.

Each script runs as a subprocess with the venv's python (as users run it) and must print its
table (rich + markdown) and write the JSON rows it promises.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from tests.videos import make_video  # noqa: E402


def run_script(name: str, *args: str, timeout: int = 240) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(BENCH / name), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def load_table(path: Path, out: str) -> dict:
    table = json.loads(path.read_text())
    # the table was printed: its markdown header line is in the output
    assert "| " + " | ".join(table["columns"]) + " |" in out
    return table


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "feats.h5"
    stdout = run_script("make_store.py", "--out", str(out), "--scale", "0.002", "--T", "8")
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["videos"] == 19 and summary["questions"] == 92
    return out


def test_make_store_small(store):
    from store import FeatureStore

    with FeatureStore(store) as fs:
        assert fs.n_videos == 19 and fs.n_questions == 92
        assert int(fs.attrs["T"]) == 8
        splits = fs.questions("split")
        assert {s: int((splits == s).sum()) for s in ("train", "val", "test", "unused")} == \
            {"train": 64, "val": 9, "test": 18, "unused": 1}
        assert fs.videos("audio").shape == (19, 8, 128)
        assert fs.questions("tokens").shape == (92, 32, 512)


def test_scaling_script(tmp_path):
    js = tmp_path / "scaling.json"
    out = run_script("scaling.py", "--T", "8", "16", "--batch", "2", "--d-model", "16",
                     "--warmup", "0", "--iters", "1", "--json", str(js))
    table = load_table(js, out)
    assert [r[0] for r in table["rows"]] == [8, 16]
    for r in table["rows"]:
        assert float(r[1]) > 0 and float(r[3]) > 0  # shmamba and transformer ms


def test_train_throughput_script(store, tmp_path):
    js = tmp_path / "train.json"
    out = run_script("train_throughput.py", str(store), "--batch-sizes", "16", "32", "--steps", "2",
                     "--warmup", "0", "--peer-workers", "0", "--peer-batch", "8", "--peer-steps", "2",
                     "--model", "d_model=16", "--json", str(js))
    table = load_table(js, out)
    rows = table["rows"]
    assert [r[1] for r in rows] == [16, 32, 8, 64]
    assert rows[0][0].startswith("ours") and rows[2][0].startswith("peer-style")
    # the command a user types, with its defaults (batch 64), in the same run
    assert rows[3][0].startswith("python cli.py train (defaults; step: eager")
    assert float(rows[3][2].replace(",", "")) > 0
    meta = table["meta"]
    assert meta["default_train_qa_per_s"] == meta["default_command"]["qa_per_s"] > 0
    assert len(meta["default_command"]["epochs"]) == 2
    assert meta["peer_train_qa_per_s"] == meta["peer_qa_per_s"]
    # summary.json of the run (no extraction results here: those keys are null)
    sys.path.insert(0, str(BENCH))
    from summary import summarise

    summary = summarise(tmp_path)
    assert summary["default_train_qa_per_s"] == meta["default_train_qa_per_s"]
    assert summary["best_train_qa_per_s"] == meta["best_train_qa_per_s"]
    assert summary["default_train_x_peer"] == round(meta["default_train_qa_per_s"] / meta["peer_qa_per_s"], 2)
    assert summary["default_extract_videos_per_s"] is None and summary["card"] == meta["device"]
    rows = rows[:3]
    for r in rows:
        assert float(r[2].replace(",", "")) > 0          # QA/s
        assert float(r[5]) > 0 and float(r[6]) > 0      # FLOP floor, measured / floor
    assert rows[2][4] == "1.000" and rows[2][7] == "1.00"  # peer: one video per question
    assert float(rows[1][4]) < 1.0                        # ours runs shared videos once
    meta = table["meta"]
    assert meta["flops_per_video"] > meta["flops_per_question"] > 0 and meta["flops_per_video_pair"] > 0
    assert meta["peer_export"] == {"videos": meta["peer_export"]["videos"], "questions": 64,
                                   "seconds": meta["peer_export"]["seconds"]}
    assert meta["ratio"] == pytest.approx(meta["best_qa_per_s"] / meta["peer_qa_per_s"])


def test_inference_script(store, tmp_path):
    js = tmp_path / "inference.json"
    out = run_script("inference.py", str(store), "--batch-sizes", "0", "8", "--repeats", "1",
                     "--warmup", "0", "--model", "d_model=16", "--json", str(js))
    table = load_table(js, out)
    assert [r[:4] for r in table["rows"]] == [["test", 18, "all", 18], ["test", 18, 8, 8]]
    assert all(float(r[4]) > 0 for r in table["rows"])
    assert "goal < 0.5 s" in out


def test_backends_script(tmp_path):
    js = tmp_path / "backends.json"
    out = run_script("backends.py", "--batch", "2", "--T", "8", "--iters", "1", "--warmup", "0",
                     "--model", "d_model=16", "--json", str(js))
    table = load_table(js, out)
    rows = {r[0]: r for r in table["rows"]}
    assert float(rows["mambapy"][1]) > 0
    if torch.cuda.is_available():
        assert rows["mamba-ssm"][1] != "-" or rows["mamba-ssm"][6].startswith("skipped")
    else:
        assert rows["mamba-ssm"][6] == "skipped: needs CUDA (this run is on the CPU)"


def test_extract_throughput_script(tmp_path):
    js = tmp_path / "extract.json"
    vids = tmp_path / "videos"
    out = run_script("extract_throughput.py", "--K", "2", "--seconds", "2", "--T", "2",
                     "--clip-model", "ViT-S-32", "--workers", "0", "1", "--warmup", "0",
                     "--stage-videos", "1", "--gen-workers", "1", "--videos-dir", str(vids),
                     "--file-weights-row", "--also-fp32", "--json", str(js))
    table = load_table(js, out)
    rows = table["rows"]
    # the command a user types, with its defaults (no tuning option), as a subprocess
    assert rows[0][0].startswith("ours, default command: python cli.py extract --videos DIR --out X")
    assert "--workers" not in rows[0][0] and "--batch-size" not in rows[0][0]
    # and again at float32, next to the default (bf16 on CPUs with native bf16)
    assert rows[1][0].endswith("--precision fp32") and rows[1][6] == "fp32"
    # and again with weight files, as the default weights are loaded
    assert "cli.py extract --videos DIR --out X --clip-weights CLIP.safetensors --vggish-weights VGGISH.pt" in rows[2][0]
    assert [(r[0], r[1]) for r in rows[3:5]] == [("ours (extract)", 0), ("ours (extract)", 1)]
    assert rows[5][0].startswith("peer-style") and rows[5][5] == "1.00"
    assert all(r[2] == 2 and float(r[4]) > 0 for r in rows)
    assert table["default_extract_videos_per_s"] == pytest.approx(float(rows[0][4]), rel=1e-2)
    assert table["default_fp32_videos_per_s"] == pytest.approx(float(rows[1][4]), rel=1e-2)
    assert table["default_files_videos_per_s"] == pytest.approx(float(rows[2][4]), rel=1e-2)
    assert table["peer_extract_videos_per_s"] == pytest.approx(float(rows[5][4]), rel=1e-2)
    # the precision each row ran at: ours as 'auto' resolves here, the peer's float32 on the CPU
    from common.device import cpu_has_native_bf16

    here = "bf16" if cpu_has_native_bf16() else "fp32"
    assert [r[6] for r in rows] == [here, "fp32", here, here, here, "fp32"]
    meta = table["meta"]
    assert (meta["ours_compute_precision"], meta["peer_compute_precision"]) == (here, "fp32")
    assert meta["videos_made_now"] == 2
    assert len(list(vids.rglob("*.mp4"))) == 2  # cached for the next run
    stages = {(r[0].split()[0], r[1]) for r in meta["stages"]["rows"]}
    assert {("ours", "decode"), ("ours", "CLIP"), ("ours", "VGGish"), ("ours", "write"),
            ("peer-style", "ffmpeg frames"), ("peer-style", "PIL + CLIP")} <= stages
    # our decode stage next to decord alone on the same videos and frames
    assert {("decord", "get_batch, same frames, native size, num_threads=1"),
            ("decord", "AudioReader 16 kHz mono"),
            ("ours", "read_audio (pyav) 16 kHz mono")} <= stages   # our audio read alone
    assert meta["decode_vs_decord_bare"] > 0 and meta["worker_start_s"] > 0
    assert meta["ours_read_audio_s_per_video"] > 0
    assert "Extraction: where the time goes" in out


def test_extract_startup_script(tmp_path):
    js = tmp_path / "startup.json"
    out = run_script("extract_startup.py", "--device", "cpu", "--clip-model", "ViT-S-32",
                     "--repeats", "1", "--json", str(js))
    table = load_table(js, out)
    assert [r[0] for r in table["rows"]] == [f"weights {w}, warm-up {o}" for w in ("random", "files")
                                             for o in ("off", "on")]
    for runs in table["runs"].values():   # every phase timed, in a fresh process each
        assert len(runs) == 1 and runs[0]["total"] == pytest.approx(
            sum(v for k, v in runs[0].items() if k != "total"))


def test_import_cost_script():
    out = run_script("import_cost.py", "--min", "0.5")
    assert "torch" in out and "open_clip" in out and "total of top-level imports" in out


def test_compile_check_script(store, tmp_path):
    out = run_script("compile_check.py", str(store), "--backend", "aot_eager", "--amp", "off",
                     "--rounds", "2", "--batch-size", "8", "--model", "d_model=32", "n_layers=1",
                     "--json", str(tmp_path / "c.json"))
    table = load_table(tmp_path / "c.json", out)
    assert [r[0] for r in table["rows"]] == [1, 2] and "agree: 0 of 2 rounds" in out


# ---- the pieces, in-process ----------------------------------------------------------------


@pytest.mark.parametrize("part", ["all", "regions", "fusion", "fusion:per_question", "align"])
def test_compile_check_catches_a_compiled_model_wrong_from_its_second_call(store, part):
    """The failure the check exists for (bf16 + inductor on the GPU, torch 2.11): the first call
    right, later ones not.  A backend that scales its outputs from the second call on stands in;
    whatever part is compiled (fusion through the methods the model calls), the check sees it."""
    import compile_check
    from model import build_model
    from store.reader import FeatureStore
    from train import StoreData
    from train_throughput import model_config_for_store

    def drifting(gm, example_inputs):
        calls = []

        def run(*args):
            calls.append(1)
            out = gm(*args)
            if len(calls) < 2:
                return out
            return type(out)(o * 1.5 if torch.is_tensor(o) and o.is_floating_point() else o for o in out)
        return run

    with FeatureStore(store) as fs:
        data = StoreData(fs, ["train"], torch.device("cpu"), with_tokens=False)
        cfg = model_config_for_store(fs, "shmamba", {"dropout": 0.0, "d_model": 32, "n_layers": 1})
        batches = compile_check.padded_batches(data, 8, 2)
        rows = compile_check.check(build_model(cfg, seed=0), batches, "off", 3, backend=drifting,
                                   part=part)
    rel = [r["grad_rel_diff"] for r in rows]
    assert rel[0] <= compile_check.TOLERANCE["off"] < min(rel[1:]), rel


@pytest.mark.parametrize("name", ["extract_throughput", "train_throughput", "inference", "backends",
                                  "ask_latency", "compile_check", "extract_startup"])
def test_help(name, capsys):
    import importlib

    module = importlib.import_module(name)
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage:") and "--json" in text


def test_synthetic_videos_are_cached_and_move(tmp_path):
    import av

    from extract_throughput import make_videos, synthetic_frames

    frames = list(synthetic_frames(3, 0.4, 64, 48, 10))
    assert len(frames) == 4 and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[-1])  # the shapes move
    paths, made = make_videos(tmp_path, 1, 1.0, 64, 48, 10, workers=1)
    assert made == 1 and paths[0].is_file()
    mtime = paths[0].stat().st_mtime_ns
    again, made2 = make_videos(tmp_path, 1, 1.0, 64, 48, 10, workers=1)
    assert made2 == 0 and again == paths and paths[0].stat().st_mtime_ns == mtime
    with av.open(str(paths[0])) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.audio[0].codec_context.name == "aac"
        assert c.streams.audio[0].codec_context.sample_rate == 44100


def test_peer_ffmpeg_steps(tmp_path):
    import soundfile as sf

    from peer_style import extract_jpegs, extract_wav

    video = make_video(tmp_path / "v.mp4", seconds=3.0, fps=10.0)
    jpgs = extract_jpegs(video, tmp_path / "frames")
    assert len(jpgs) in (3, 4) and all(p.suffix == ".jpg" for p in jpgs)
    wav, sr = sf.read(str(extract_wav(video, tmp_path / "a.wav")), dtype="int16")
    assert sr == 16000 and wav.ndim == 1 and abs(len(wav) / sr - 3.0) < 0.15
    with pytest.raises(RuntimeError, match="ffmpeg failed"):
        extract_jpegs(tmp_path / "missing.mp4", tmp_path / "none")


def test_peer_npy_export_matches_store(store, tmp_path):
    """The per-sample .npy path gives exactly the store's features (float16 -> float32)."""
    from peer_style import NpyQADataset, export_npy, peer_loader
    from store import FeatureStore

    with FeatureStore(store) as fs:
        counts = export_npy(fs, "train", tmp_path / "npy")
        ds = NpyQADataset(tmp_path / "npy")
        assert counts["questions"] == len(ds) == 64
        qid_row = {int(q): i for i, q in enumerate(fs.question_ids)}
        vrow = fs.question_video_row
        for i in (0, 17, 63):
            rec, item = ds.records[i], ds[i]
            r = qid_row[rec["question_id"]]
            v = int(vrow[r])
            assert fs.video_ids[v] == rec["video_id"]
            want = {"audio": fs.videos("audio", rows=slice(v, v + 1))[0],
                    "visual": fs.videos("visual", rows=slice(v, v + 1))[0],
                    "question": fs.questions("sentence", rows=slice(r, r + 1))[0]}
            for key, value in want.items():
                np.testing.assert_array_equal(item[key].numpy(), value.astype(np.float32))
            assert int(item["answer"]) == int(fs.questions("answer", rows=slice(r, r + 1))[0])
    batch = next(iter(peer_loader(tmp_path / "npy", batch_size=8, num_workers=0)))
    assert batch["audio"].shape == (8, 8, 128) and batch["audio"].dtype == torch.float32
    assert batch["question"].shape == (8, 512) and batch["answer"].shape == (8,)


def test_flop_count_split_predicts_another_batch_shape():
    """FLOPs per video / video pair / question, fitted on three batch shapes, predict the
    counted FLOPs of a fourth exactly."""
    from torch.utils.flop_counter import FlopCounterMode

    from model import build_model, variant_config
    from train_throughput import model_flops, scan_flops_per_video, step_flops

    torch.set_num_threads(2)
    cfg = variant_config("shmamba", d_model=16, n_heads=4, backend="mambapy", dropout=0.0)
    T = 4
    flops = model_flops(cfg, T)
    assert flops[0] > 0 and flops[1] > 0 and flops[2] > 0
    model = build_model(cfg, seed=0)
    V, B = 3, 7
    with FlopCounterMode(display=False) as fc:
        out = model(torch.randn(V, T, 128), torch.randn(V, T, 512), torch.randn(B, 512),
                    video_index=torch.arange(B) % V)
        (torch.nn.functional.cross_entropy(out.logits, torch.zeros(B, dtype=torch.long))
         + out.align_loss).backward()
    counted = fc.get_total_flops() + V * scan_flops_per_video(cfg, T)
    assert step_flops(flops, V, V * V, B) == pytest.approx(counted, rel=1e-9)


def test_vggish_layout_script(tmp_path):
    js = tmp_path / "vggish.json"
    out = run_script("vggish_layout.py", "--patches", "2", "--repeats", "1", "--json", str(js))
    rows = load_table(js, out)["rows"]
    assert [r[0] for r in rows] == ["fp32", "bf16"]
    assert float(rows[0][4]) < 1e-5 and float(rows[1][4]) < 5e-2  # same values, either layout
