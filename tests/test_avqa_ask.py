"""AVQA (multiple choice) end to end, and ``ask``.

One synthetic AVQA-format dataset (real mp4 files) goes through synth -> extract -> train ->
eval; the test split's accuracy must beat chance (25 %, 4 options) by 20 points, reported by
type.  Then ``ask`` answers every test question from its mp4 and must give ``eval``'s
prediction; it refuses encoders whose weights differ from the store's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

from cli import app  # noqa: E402
from common.config import resolve  # noqa: E402
from infer.ask import Asker, AskError, AskSettings  # noqa: E402
from qa.annotations import load_annotations  # noqa: E402
from synth.avqa import AVQA_TYPES  # noqa: E402
from synth.generate import SynthConfig  # noqa: E402
from train import read_predictions  # noqa: E402

torch.set_num_threads(2)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# the README's AVQA commands' configs (docs/AVQA_SYNTH.md says why 4 of the 6 types)
SYNTH = resolve(SynthConfig, CONFIGS / "avqa_synth.toml", {"workers": 2})
TYPES = list(SYNTH.types)
OFFICIAL_KEYS = ["id", "video_name", "video_id", "question_text", "multi_choice", "answer",
                 "question_relation", "question_type"]


#: the pipeline runs in a fresh interpreter, as the README's commands do: its arithmetic must
#: not depend on process-wide state other tests leave behind (thread count, caches)
PIPELINE = """
import sys
from pathlib import Path
import torch
torch.set_num_threads(2)
from common.config import resolve
from extract.config import load_extract_config
from extract.pipeline import extract
from synth.generate import SynthConfig, synthesize
from train import evaluate, load_train_config, train
configs, root = Path(sys.argv[1]), Path(sys.argv[2])
synthesize(root / "data", config=resolve(SynthConfig, configs / "avqa_synth.toml", {"workers": 2}))
cfg = load_extract_config(configs / "avqa_extract.toml", {
    "videos": str(root / "data" / "videos"), "annotations": str(root / "data" / "annotations"),
    "out": str(root / "feats.h5"), "workers": 1, "device": "cpu"})
extract(cfg, progress=False)
tcfg = load_train_config(configs / "avqa_train.toml", {
    "store": cfg.out, "out": str(root / "runs"), "name": "avqa", "progress": False})
evaluate(train(tcfg).run_dir, split="test", plots=False)
"""


@pytest.fixture(scope="module")
def avqa(tmp_path_factory):
    import subprocess

    root = tmp_path_factory.mktemp("avqa")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", PIPELINE, str(CONFIGS), str(root)], cwd=repo,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = root / "runs" / "avqa"
    report = json.loads((run / "report_test.json").read_text())
    report["table"] = (run / "report_test.md").read_text()
    return SimpleNamespace(root=root, data=root / "data", store=str(root / "feats.h5"), run=run,
                           report=report)


def test_synth_writes_the_official_avqa_record_format(avqa):
    recs = json.loads((avqa.data / "annotations" / "avqa-test.json").read_text())
    for r in recs:
        assert list(r) == OFFICIAL_KEYS
        assert len(r["multi_choice"]) == 4 and len(set(r["multi_choice"])) == 4
        assert isinstance(r["answer"], int) and 0 <= r["answer"] < 4
        assert r["question_type"] in AVQA_TYPES and r["video_name"].endswith(".mp4")
    records, vocab = load_annotations(avqa.data / "annotations")
    assert vocab.dataset == "avqa" and {len(r.options) for r in records} == {4}
    assert {r.type_name for r in records} == set(TYPES) and set(TYPES) < set(AVQA_TYPES)
    positions = [r.answer_index for r in records]
    assert min(positions.count(k) for k in range(4)) > len(positions) / 8   # no position shortcut


def test_avqa_end_to_end_beats_chance_by_20_points(avqa):
    rep = avqa.report
    print(avqa.report["table"])
    assert rep["count"] > 100 and rep["missing"] == 0
    assert rep["overall"] >= 25.0 + 20.0
    assert {t for t, v in rep["types"].items() if v is not None} == set(TYPES)
    assert (Path(avqa.run) / "report_test.md").read_text().count("|") > 20


def test_ask_gives_evals_prediction_for_every_test_question(avqa):
    preds = {p["question_id"]: p for p in map(json.loads, (Path(avqa.run) / "predictions_test.jsonl")
                                               .read_text().splitlines())}
    records, _ = load_annotations(avqa.data / "annotations")
    by_video: dict[str, list] = {}
    for r in records:
        if r.split == "test":
            by_video.setdefault(r.video_id, []).append(r)
    asker = Asker(AskSettings(run=str(avqa.run), device="cpu"))
    n = 0
    for vid, recs in by_video.items():
        feats = asker.video(avqa.data / "videos" / f"{vid}.mp4")
        answers = asker.ask(feats, [r.text for r in recs], [list(r.options) for r in recs])
        for r, a in zip(recs, answers):
            assert a.answer == r.options[preds[r.question_id]["answer"]], (vid, r.text)
            assert abs(sum(t["p"] for t in a.top) - 1.0) < 1e-3
            n += 1
    assert n == len(preds) and n > 100
    assert read_predictions(Path(avqa.run) / "predictions_test.jsonl")


def test_ask_cli_json_and_refusals(avqa):
    video = str(avqa.data / "videos" / "synth_00000.mp4")
    opts = "violin|cello|piano|flute"
    r = CliRunner().invoke(app, ["ask", video, "Which instrument is playing in the video?",
                                 "--question", "What is the main sound source of the video?",
                                 "--options", opts, "--run", str(avqa.run), "--json",
                                 "--device", "cpu", "--top", "2", "--type", "Which",
                                 "--checkpoint", "last"])
    assert r.exit_code == 0, r.output
    objs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(objs) == 2
    for o in objs:
        assert {"answer", "top", "curvature", "audio_present", "n_segments", "seconds"} <= set(o)
        assert len(o["top"]) == 2 and o["answer"] in opts.split("|") and o["n_segments"] >= 1
        assert o["curvature"] > 0 and isinstance(o["audio_present"], bool)
    r = CliRunner().invoke(app, ["ask", video, "Which instrument?", "--run", str(avqa.run)])
    assert r.exit_code == 2 and "--options" in r.output
    r = CliRunner().invoke(app, ["ask", video, "Which?", "--options", opts, "--run",
                                 str(avqa.run), "--type", "Counting"])
    assert r.exit_code == 2 and "not a question type" in r.output
    with pytest.raises(AskError, match=r"visual encoder differs.*random:1.*random:0"):
        Asker(AskSettings(run=str(avqa.run), device="cpu", clip_weights="random:1"))


def test_cli_synth_avqa(tmp_path):
    r = CliRunner().invoke(app, ["synth", "--format", "avqa", "--out", str(tmp_path / "d"),
                                 "--videos", "4", "--max-seconds", "3", "--min-seconds", "2",
                                 "--long-fraction", "0", "--size", "64x48", "--workers", "1",
                                 "--type", "Where", "--type", "When"])
    assert r.exit_code == 0, r.output
    recs = [x for s in ("train", "val", "test")
            for x in json.loads((tmp_path / "d" / "annotations" / f"avqa-{s}.json").read_text())]
    assert recs and {x["question_type"] for x in recs} <= {"Where", "When"}
    assert all(list(x) == OFFICIAL_KEYS for x in recs)
    r = CliRunner().invoke(app, ["synth", "--format", "avqa", "--out", str(tmp_path / "e"),
                                 "--type", "Counting"])
    assert r.exit_code == 2 and "not types of format" in r.output


def test_ask_latency_benchmark_runs_end_to_end(avqa, tmp_path):
    """benchmarks/ask_latency.py on this run (its synth/extract/train build is skipped with
    --run/--video: too slow for the suite): the cold command, the loaded calls, the JSON.  No
    timing is asserted, only that every figure is there and positive."""
    repo = Path(__file__).resolve().parents[1]
    js = tmp_path / "ask.json"
    proc = subprocess.run(
        [sys.executable, str(repo / "benchmarks" / "ask_latency.py"), "--run", str(avqa.run),
         "--video", str(avqa.data / "videos" / "synth_00000.mp4"), "--device", "cpu",
         "--repeats", "1", "--cold-runs", "1", "--options", "violin|cello|piano|flute",
         "--question", "Which instrument is playing?", "--question", "Where is the sound?",
         "--json", str(js)], cwd=repo, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "2", "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(js.read_text())
    assert "| " + " | ".join(data["columns"]) + " |" in proc.stdout  # the table was printed
    assert [r[0].split(" (")[0] for r in data["rows"][:3]] == [
        "cold: python cli.py ask VIDEO QUESTION", "loaded: build the Asker", "loaded: first call"]
    assert data["rows"][-1][0] == "loaded: 2 questions in one call"
    for key in ("model_load_s", "loaded_median_s", "loaded_min_s", "many_median_s"):
        assert data[key] > 0, key
    assert len(data["cold_cli_s"]) == 1 and data["cold_cli_s"][0] > 0
    meta = data["meta"]
    assert set(meta["split"]) == {"decode", "encode_video", "encode_text", "model"}
    assert all(s["median_s"] > 0 and s["runs"] == 1 for s in meta["split"].values())
    assert meta["cold_cli_timing"]["decode"] > 0 and meta["video"]["seconds"] > 0
    assert meta["questions"] == ["Which instrument is playing?", "Where is the sound?"]
