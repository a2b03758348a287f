"""``eval``: predictions cover the split and agree with a per-question reference, the report has
every key and matches re-scoring the predictions file, plots are written, and a store whose dims
differ from the checkpoint is refused naming the dims."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from storegen import make_store  # noqa: E402

from model import SHMambaConfig, build_model  # noqa: E402
from store.index import rebuild_index  # noqa: E402
from store.reader import FeatureStore  # noqa: E402
from store.writer import ShardWriter  # noqa: E402
from train import (CheckpointError, StoreMismatchWarning, evaluate, find_checkpoint,  # noqa: E402
                   load_train_config, read_predictions, reference_batch, score, store_vocabulary,
                   train)
from train.evaluate import records_for_rows  # noqa: E402

torch.set_num_threads(1)

TINY = {"d_model": 16, "n_layers": 1, "d_state": 4, "n_heads": 2, "curvature_hidden": 8,
        "dropout": 0.1}


def quick_run(store, out, name, epochs=2):
    cfg = load_train_config(None, {"store": str(store), "out": str(out), "name": name,
                                   "epochs": epochs, "batch_size": 16, "lr": 3e-3,
                                   "progress": False, "num_threads": 1, "model": dict(TINY)})
    return train(cfg).run_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    gen = make_store(root / "feats.h5", seed=1)
    return gen, quick_run(gen.path, root / "runs", "r1")


def test_eval_writes_predictions_reports_and_plots(trained):
    gen, run = trained
    report = evaluate(run, split="test")
    store = FeatureStore(gen.path)
    test_ids = set(store.question_ids[store.split_rows("test")].tolist())
    preds = read_predictions(run / "predictions_test.jsonl")
    assert set(preds) == test_ids                                  # covers the split
    for key in ("overall", "groups", "types", "count", "missing", "majority_baseline"):
        assert key in report
    assert set(report["groups"]) == {"Audio", "Visual", "Audio-Visual"}
    assert len(report["types"]) == 9 and report["count"] == len(test_ids)
    assert report["missing"] == 0
    # the report is the scorer applied to the written predictions
    records = records_for_rows(store, store.split_rows("test"))
    again = score(records, preds, store_vocabulary(store.attrs))
    assert again == {k: report[k] for k in again}
    on_disk = json.loads((run / "report_test.json").read_text())
    assert on_disk["overall"] == report["overall"]
    assert on_disk["majority_baseline"] == report["majority_baseline"]    # score --json-out's key
    md = (run / "report_test.md").read_text()
    assert "| **Overall** |" in md and "majority baseline" in md
    for name in ("test_types.png", "test_confusion.png", "test_curvature.png",
                 "training_curves.png"):
        assert (run / "plots" / name).stat().st_size > 1000, name


def test_eval_predictions_equal_a_per_question_reference(trained):
    gen, run = trained
    evaluate(run, split="val", checkpoint="last", plots=False)
    preds = read_predictions(run / "predictions_val-last.jsonl")
    ckpt = find_checkpoint(run, "last")
    model = build_model(SHMambaConfig(**ckpt.meta["model_config"]))
    ckpt.load_weights(model)
    model.eval()
    store = FeatureStore(gen.path)
    vocab = store.attrs["answer_vocab"]
    rows = store.split_rows("val")
    with torch.no_grad(), torch.jit.optimized_execution(False):
        for pos in range(len(rows)):                      # one question at a time, slow path
            b = reference_batch(store, "val", [pos], with_tokens=False)
            out = model(b.audio, b.visual, b.sentence, video_index=b.video_index)
            qid = int(store.question_ids[rows[pos]])
            assert preds[qid] == vocab[int(out.logits.argmax(-1))], qid


def test_store_with_other_dims_is_refused_naming_them(trained, tmp_path):
    _, run = trained
    other = make_store(tmp_path / "other.h5", visual_dim=48, n_videos=8, seed=2)
    with pytest.raises(CheckpointError, match=r"visual_dim: checkpoint .* has 32, store has 48"):
        evaluate(run, store=str(other.path), split="test")
    from typer.testing import CliRunner

    import cli

    res = CliRunner().invoke(cli.app, ["eval", "--run", str(run), "--store", str(other.path)])
    assert res.exit_code == 2 and "visual_dim" in res.output


def test_other_features_same_dims_warn_and_missing_videos_count_as_missing(trained, tmp_path):
    gen, run = trained
    copy = make_store(tmp_path / "copy.h5", seed=1)                 # same content ...
    attrs = dict(copy.attrs)
    w = ShardWriter(copy.path, attrs)                               # ... plus 2 questions
    k = 2
    w.add_questions(np.array([90001, 90002]), ["ghost-video"] * k, ["test"] * k,
                    np.zeros(k, np.int16), np.zeros(k, np.int16), ["answer-0"] * k,
                    ["q"] * k, np.zeros((k, 32), np.float16), np.zeros((k, 6, 32), np.float16),
                    np.ones((k, 6), bool))
    w.close()
    rebuild_index(copy.path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = evaluate(run, store=str(copy.path), split="test", plots=False)
    assert any(issubclass(c.category, StoreMismatchWarning) for c in caught)
    assert report["missing"] == 2
    assert report["count"] == int((gen.splits == "test").sum()) + 2


def test_other_checkpoints_and_stores_never_overwrite_the_default_results(trained, tmp_path):
    """``--checkpoint last`` and ``--store other.h5`` write to their own names; the best
    checkpoint's results on the run's store stay byte for byte; ``--no-plots`` removes the
    plots that would no longer match; the foreign-store warning is printed once."""
    from typer.testing import CliRunner

    import cli

    gen, run = trained
    evaluate(run, split="test")
    default = {p.name: p.read_bytes() for p in list(run.glob("*_test.*")) + list(run.glob("plots/test_*"))}
    assert {"report_test.json", "predictions_test.jsonl", "test_types.png"} <= set(default)
    other = make_store(tmp_path / "other.h5", seed=9)
    fp = FeatureStore(other.path).identity()["fingerprint"][:8]
    runner = CliRunner()
    res = runner.invoke(cli.app, ["eval", "--run", str(run), "--checkpoint", "last"],
                        env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli.app, ["eval", "--run", str(run), "--store", str(other.path)],
                        env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    assert res.output.count("is not the store it was trained on") == 1, res.output
    for name in (f"report_test-store-{fp}.json", "report_test-last.json",
                 "predictions_test-last.jsonl", f"plots/test-store-{fp}_types.png"):
        assert (run / name).is_file(), name
    assert json.loads((run / "report_test-last.json").read_text())["checkpoint"] == \
        find_checkpoint(run, "last").path.name
    for name, data in default.items():
        assert (run / name if not name.startswith("test_") else run / "plots" / name).read_bytes() \
            == data, name
    res = runner.invoke(cli.app, ["eval", "--run", str(run), "--store", str(other.path),
                                  "--no-plots"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    assert not list((run / "plots").glob(f"test-store-{fp}_*"))
    assert (run / "plots" / "test_types.png").read_bytes() == default["test_types.png"]


def test_multiple_choice_store_predicts_option_indices(tmp_path):
    gen = make_store(tmp_path / "mc.h5", n_options=4, n_videos=20, seed=4)
    run = quick_run(gen.path, tmp_path / "runs", "mc", epochs=1)
    report = evaluate(run, split="test", plots=False)
    preds = read_predictions(run / "predictions_test.jsonl")
    assert len(preds) == int((gen.splits == "test").sum())
    assert all(isinstance(p, int) and 0 <= p < 4 for p in preds.values())
    assert report["groups"] and report["count"] == len(preds)


def test_cli_train_then_eval(tmp_path):
    from typer.testing import CliRunner

    import cli

    gen = make_store(tmp_path / "feats.h5", n_videos=16, seed=6)
    runner = CliRunner()
    res = runner.invoke(cli.app, ["train", "--store", str(gen.path), "--out", str(tmp_path / "runs"),
                                  "--epochs", "1", "--batch-size", "16", "--no-progress",
                                  "--set", "model.d_model=16", "--set", "model.n_layers=1",
                                  "--set", "model.n_heads=2", "--set", "num_threads=1"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli.app, ["eval", "--out", str(tmp_path / "runs"), "--split", "val",
                                  "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "Overall" in res.output and "predictions_val.jsonl" in res.output
    res = runner.invoke(cli.app, ["train", "--store", str(tmp_path / "nope.h5"), "--out",
                                  str(tmp_path / "runs")])
    assert res.exit_code == 2 and "nope.h5" in res.output
