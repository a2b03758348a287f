"""``evaluate``: score a trained run on a split of a store and write its report.

Defaults: the latest run (``runs/latest``) and the store recorded in it.  A store whose dims
differ from the checkpoint's is refused (the error names the dims); one with the same dims but a
different fingerprint (other features) gives a warning.  Writes into the run directory, with
``<name>`` = the split for the best checkpoint on the store the run was trained on, and the split
plus ``-<checkpoint>`` and/or ``-store-<fingerprint[:8]>`` otherwise (:func:`output_name`), so
no evaluation overwrites another's files::

    predictions_<name>.jsonl    one object per question: question_id, answer, (option), video_id,
                                type, correct
    report_<name>.json          the scorer's report (+ the majority baseline under
                                "majority_baseline", as ``score --json-out`` writes it)
    report_<name>.md            markdown table: accuracy and the train-split majority baseline
    plots/<name>_types.png, <name>_confusion.png, <name>_curvature.png, training_curves.png,
          <name>_poincare.png, <name>_tsne.png (embedding views, train/views.py)
                                (without plots, this name's earlier plots are removed)

Everything the scorer needs comes from the store's question arrays (ids, type index ->
``attrs['type_names']``, answer index -> ``attrs['answer_vocab']`` or, for multiple choice,
``questions/options_text``, split); no annotation file is read.
"""
from __future__ import annotations

import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.device import resolve_device
from common.files import atomic_write, write_json_atomic
from model import SHMambaConfig, build_model
from qa.annotations import QARecord, Vocabulary, normalize_answer
from qa.scoring import format_table, majority_baseline, score, write_predictions

from .checkpoint import check_compatible, find_checkpoint
from .data import SplitInfo, StoreData, open_store, store_dims
from .runs import CONFIG_FILE, STORE_FILE, read_json, read_metrics, resolve_run_dir
from .predict import predict, prediction_map
from .views import embedding_views

log = logging.getLogger(__name__)


#: the plots of one evaluation: plots/<name>_<kind>.png
PLOT_KINDS = ("types", "confusion", "curvature", "poincare", "tsne")


class StoreMismatchWarning(UserWarning):
    """The store has the checkpoint's dims but not the fingerprint of the store it was trained on."""


def store_vocabulary(attrs: dict) -> Vocabulary:
    """The scorer's vocabulary from store attributes (:meth:`Vocabulary.from_attrs`)."""
    return Vocabulary.from_attrs(attrs)


def records_for_rows(store, rows: np.ndarray) -> list[QARecord]:
    """QARecords (as the scorer takes them) for the given global question rows of ``store``."""
    attrs = store.attrs
    vocab = list(attrs["answer_vocab"])
    types = list(attrs["type_names"])
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return []
    qids = np.asarray(store.question_ids)[rows]
    answer = store.questions("answer", rows=rows).astype(np.int64)
    qtype = store.questions("type", rows=rows).astype(np.int64)
    split = store.questions("split", rows=rows)
    text = store.questions("text", rows=rows)
    vrow = np.asarray(store.question_video_row)[rows]
    video_ids = np.asarray(store.video_ids)
    mc = int(attrs.get("n_options", 0)) > 0
    options = store.questions("options_text", rows=rows) if mc else None
    out = []
    for i in range(len(rows)):
        a, t = int(answer[i]), int(qtype[i])
        opts: tuple[str, ...] = ()
        if mc:
            opts = tuple(normalize_answer(o) for o in options[i])
            ans = opts[a] if 0 <= a < len(opts) else ""
        else:
            ans = normalize_answer(vocab[a]) if a >= 0 else ""
        out.append(QARecord(
            question_id=int(qids[i]),
            video_id=str(video_ids[vrow[i]]) if vrow[i] >= 0 else "",
            text=str(text[i]), type_name=types[t] if t >= 0 else "", type_index=t,
            answer=ans, answer_index=a, split=str(split[i]), dataset=str(attrs.get("dataset", "")),
            options=opts))
    return out


def store_records(store, info: SplitInfo) -> list[QARecord]:
    """Records of the questions of a :class:`~train.data.SplitInfo`, in its order."""
    return records_for_rows(store, info.q_rows)


def output_name(split: str, checkpoint: str, ckpt_name: str, foreign_fingerprint: str | None) -> str:
    """The name of an evaluation's files: the split, tagged with the checkpoint unless it is
    ``best`` and with the store's fingerprint when it is not the store the run was trained on."""
    name = split
    if checkpoint != "best":
        name += f"-{checkpoint if checkpoint == 'last' else ckpt_name}"
    if foreign_fingerprint:
        name += f"-store-{foreign_fingerprint[:8]}"
    return name


@dataclass
class _Evaluation:
    """One evaluation: the run, its checkpoint and model, the store, and what it predicted."""

    run: Path
    cfg: dict
    ckpt: Any
    fs: Any
    identity: dict
    name: str                  # output name: report_<name>.json, predictions_<name>.jsonl
    split: str
    model: Any = None
    data: Any = None
    preds: Any = None


def evaluate(run_dir: str | Path | None = None, store: str | None = None, split: str = "test",
             checkpoint: str = "best", *, out: str | Path = "runs", device: str = "auto",
             batch_size: int | None = None, backend: str | None = None, plots: bool = True,
             baseline_split: str = "train") -> dict[str, Any]:
    """Evaluate a run's checkpoint on ``split``; write predictions, reports and plots into the
    run directory; return the scorer's report with ``"majority_baseline"`` (majority answer per type from
    ``baseline_split``, if the store has it), ``"files"`` and ``"table"`` added."""
    ev = _open(run_dir, store, split, checkpoint, out)
    _predict(ev, device, batch_size, backend)
    records_all = records_for_rows(ev.fs, np.asarray(ev.fs.split_rows(split), dtype=np.int64))
    records = [r for r in records_all if r.answer]   # questions without an answer are not scored
    vocab = store_vocabulary(ev.fs.attrs)
    report, baseline = _score(ev, records, vocab, baseline_split)
    files = {"predictions": str(write_predictions(ev.run / f"predictions_{ev.name}.jsonl",
                                                  _prediction_rows(ev, records_all)))}
    table = format_table(report, baseline, name=f"{ev.run.name} ({ev.ckpt.path.name})",
                         baseline_name="majority baseline") if records else ""
    full = {**report, "split": split, "checkpoint": ev.ckpt.path.name,
            "epoch": ev.ckpt.meta.get("epoch"), "store": ev.identity,
            "unanswered": len(records_all) - len(records), "majority_baseline": baseline}
    files.update(_write_reports(ev, full, table))
    files.update(_write_plots(ev, report, baseline, records, records_all, vocab, plots))
    full["files"] = files
    full["table"] = table
    return full


def _open(run_dir: str | Path | None, store: str | None, split: str, checkpoint: str,
          out: str | Path) -> _Evaluation:
    """The run, its checkpoint and the store to evaluate on (dims checked; a store the run was
    not trained on warns and gets its own output name)."""
    run = resolve_run_dir(run_dir, out)
    cfg = read_json(run / CONFIG_FILE)
    recorded_store = read_json(run / STORE_FILE) if (run / STORE_FILE).is_file() else {}
    ckpt = find_checkpoint(run, checkpoint)
    store_path = store or _recorded_store_path(cfg, recorded_store)
    fs = open_store(str(store_path))
    check_compatible(ckpt.meta, dims=store_dims(fs), where=f"checkpoint {ckpt.path}")
    identity = fs.identity()
    trained_on = ckpt.meta.get("store", recorded_store)
    foreign = bool(trained_on.get("fingerprint")) and \
        trained_on.get("fingerprint") != identity["fingerprint"]
    name = output_name(split, checkpoint, ckpt.path.name, identity["fingerprint"] if foreign else None)
    if foreign:
        msg = (f"store {store_path} has the checkpoint's dims but is not the store it was trained "
               f"on (fingerprint {identity['fingerprint'][:12]} vs "
               f"{str(trained_on.get('fingerprint'))[:12]} of {trained_on.get('path')}); "
               f"results go to *_{name}.*")
        warnings.warn(msg, StoreMismatchWarning, stacklevel=3)
    return _Evaluation(run, cfg, ckpt, fs, identity, name, split)


def _predict(ev: _Evaluation, device: str, batch_size: int | None, backend: str | None) -> None:
    """The checkpoint's model on ``device``, and its predictions for every question of the split."""
    dev = resolve_device(device)
    mcfg = dict(ev.ckpt.meta["model_config"])
    if backend is not None:
        mcfg["backend"] = backend
    ev.model = build_model(SHMambaConfig(**mcfg))
    ev.ckpt.load_weights(ev.model)
    ev.model.to(dev).eval()
    ev.data = StoreData(ev.fs, [ev.split], dev, with_tokens=bool(mcfg.get("use_tokens", False)))
    ev.preds = predict(ev.model, ev.data, ev.split, batch_size or int(ev.cfg.get("eval_batch_size", 512)),
                       str(ev.cfg.get("amp", "auto")))


def _score(ev: _Evaluation, records: list[QARecord], vocab: Vocabulary,
           baseline_split: str) -> tuple[dict, dict | None]:
    """The scorer's report, and the majority baseline of ``baseline_split`` (None without it)."""
    if not records:
        return {"overall": None, "groups": {}, "types": {}, "count": 0, "missing": 0}, None
    pmap = prediction_map(ev.preds, ev.data, ev.split)
    scored = {r.question_id for r in records}
    report = score(records, {q: a for q, a in pmap.items() if q in scored}, vocab)
    rows = np.asarray(ev.fs.split_rows(baseline_split), dtype=np.int64) if baseline_split else []
    train = [r for r in records_for_rows(ev.fs, rows) if r.answer] if len(rows) else []
    return report, majority_baseline(train, records, vocab) if train else None


def _prediction_rows(ev: _Evaluation, records_all: list[QARecord]) -> list[dict]:
    """One row per question: the answer (or option index), its video, type and correctness."""
    by_id = {r.question_id: r for r in records_all}
    vocab_list = list(ev.fs.attrs["answer_vocab"])
    info = ev.data.splits[ev.split]
    rows = []
    for qid, p in zip(info.question_ids.tolist(), ev.preds.pred.tolist()):
        r = by_id[int(qid)]
        if ev.data.with_options:
            row = {"question_id": int(qid), "answer": int(p),
                   "answer_text": r.options[int(p)] if r.options else None}
            correct = r.answer_index >= 0 and int(p) == r.answer_index
        else:
            row = {"question_id": int(qid), "answer": vocab_list[int(p)]}
            correct = bool(r.answer) and normalize_answer(vocab_list[int(p)]) == r.answer
        row.update({"video_id": r.video_id, "type": r.type_name,
                    "correct": bool(correct) if r.answer else None})
        rows.append(row)
    return rows


def _write_reports(ev: _Evaluation, full: dict, table: str) -> dict[str, str]:
    write_json_atomic(ev.run / f"report_{ev.name}.json", full)
    md = (f"# {ev.run.name}: {ev.split} split, checkpoint {ev.ckpt.path.name} (epoch "
          f"{ev.ckpt.meta.get('epoch')})\n\nStore `{ev.identity['path']}` (fingerprint "
          f"`{ev.identity['fingerprint'][:16]}`), variant `{ev.ckpt.meta.get('variant')}`.\n\n" + table)
    if full["unanswered"]:
        md += f"\n{full['unanswered']} question(s) of the split have no answer and are not scored.\n"
    atomic_write(ev.run / f"report_{ev.name}.md", md)
    return {"report_json": str(ev.run / f"report_{ev.name}.json"),
            "report_md": str(ev.run / f"report_{ev.name}.md")}


def _write_plots(ev: _Evaluation, report: dict, baseline: dict | None, records: list[QARecord],
                 records_all: list[QARecord], vocab: Vocabulary, plots: bool) -> dict[str, str]:
    """This output name's plots (earlier ones of the same name removed: they would not match)."""
    from .plots import plot_confusion, plot_curvature, plot_training_curves, plot_type_accuracy

    pdir, name, title = ev.run / "plots", ev.name, f"{ev.run.name} {ev.split}"
    for kind in PLOT_KINDS:
        (pdir / f"{name}_{kind}.png").unlink(missing_ok=True)
    if not plots:
        return {}
    pdir.mkdir(exist_ok=True)
    files: dict[str, str] = {}
    info = ev.data.splits[ev.split]
    if records:
        files["plot_types"] = str(plot_type_accuracy(report, pdir / f"{name}_types.png",
                                                     baseline=baseline, title=title,
                                                     counts=_question_counts(records, vocab)))
        labels, true, pred = _confusion_inputs(ev.data, info, ev.preds.pred)
        files["plot_confusion"] = str(plot_confusion(true, pred, labels, pdir / f"{name}_confusion.png",
                                                     title=title))
    finite = ev.preds.curvature[np.isfinite(ev.preds.curvature)]
    if finite.size:
        files["plot_curvature"] = str(plot_curvature(finite, pdir / f"{name}_curvature.png", title=title))
    by_id = {r.question_id: r for r in records_all}
    answers = [by_id[int(q)].answer for q in info.question_ids.tolist()]
    files.update(embedding_views(ev.model, ev.data, ev.split, answers, pdir, title=title, name=name))
    metrics = read_metrics(ev.run)
    if metrics:
        files["plot_training"] = str(plot_training_curves(metrics, pdir / "training_curves.png",
                                                          title=ev.run.name))
    return files


def _question_counts(records: list[QARecord], vocab: Vocabulary) -> dict[str, int]:
    """Scored questions per type, per group and overall (the n= of the accuracy bars)."""
    counts = dict(Counter(r.type_name for r in records))
    for group, members in vocab.groups.items():
        counts[group] = sum(counts.get(t, 0) for t in members)
    counts["overall"] = len(records)
    return counts


def _recorded_store_path(cfg: dict, recorded_store: dict) -> str:
    """The store a run was trained on: the absolute path in ``store.json`` if it still exists,
    else the config's (possibly relative) path."""
    absolute = recorded_store.get("path")
    if absolute and Path(absolute).exists():
        return str(absolute)
    return str(cfg.get("store") or absolute or "")


def _confusion_inputs(data: StoreData, info: SplitInfo, pred: np.ndarray):
    """Labels and (true, predicted) class indices for the confusion matrix; multiple choice uses
    option slots as classes."""
    keep = info.answer >= 0
    if data.with_options:
        k = int(data.store.attrs["n_options"])
        return [f"option {i}" for i in range(k)], info.answer[keep], pred[keep]
    return list(data.store.attrs["answer_vocab"]), info.answer[keep], pred[keep]
