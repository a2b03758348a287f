"""Accuracy of answer predictions, per question type, per type group and overall.

Predictions are JSON Lines, one object per question: ``{"question_id": 12, "answer": "one"}``
(other keys are allowed and ignored).  For a multiple-choice question ``"answer"`` may be the
option index (an integer); otherwise it is the answer string, compared after
:func:`qa.annotations.normalize_answer` with the record's (normalised) answer.

Accounting, as in published MUSIC-AVQA tables: percentages with 2 decimals; a group's and the
overall accuracy are *pooled over questions* (correct / questions), not means of type
accuracies.  A question without a prediction counts as wrong and is counted in ``missing``; a
prediction for a question that is not among the records is an error.  A type (or group) with no
questions scores ``None`` (JSON ``null``).  Records of a type outside the vocabulary
(``type_index == -1``) count towards the overall accuracy only.
"""
from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping

from common.files import atomic_write
from qa.annotations import QARecord, Vocabulary, normalize_answer



class ScoringError(ValueError):
    """Predictions or records that cannot be scored; the message names the file/line or id."""


# ---- predictions files -----------------------------------------------------------------------


def _check_answer(value: Any, where: str) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ScoringError(f"{where}: 'answer' must be a string or an option index, got {value!r}")
    return value


def read_predictions(path: str | os.PathLike) -> dict[int, str | int]:
    """``{question_id: answer}`` from a JSON Lines file; blank lines are skipped.  Errors name
    the file and line (bad JSON, missing keys, wrong types, a question id given twice)."""
    path = Path(path)
    out: dict[int, str | int] = {}
    line_of: dict[int, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoringError(f"{path}: cannot read predictions: {exc}") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ScoringError(f"{where}: not valid JSON: {exc}") from exc
        if not isinstance(row, dict):
            raise ScoringError(f"{where}: expected a JSON object, got {type(row).__name__}")
        for key in ("question_id", "answer"):
            if key not in row:
                raise ScoringError(f"{where}: missing key {key!r}")
        qid = row["question_id"]
        if isinstance(qid, bool) or not isinstance(qid, int):
            raise ScoringError(f"{where}: 'question_id' must be an integer, got {qid!r}")
        if qid in out:
            raise ScoringError(f"{where}: question_id {qid} already predicted on line {line_of[qid]}")
        out[qid] = _check_answer(row["answer"], where)
        line_of[qid] = n
    return out


def write_predictions(path: str | os.PathLike,
                      rows: Mapping[int, str | int] | Iterable[Mapping[str, Any]]) -> Path:
    """Write predictions as JSON Lines (atomically: temp file, then rename).  ``rows`` is a
    ``{question_id: answer}`` mapping or an iterable of objects that have at least
    ``question_id`` and ``answer`` (extra keys are written too)."""
    path = Path(path)
    if isinstance(rows, Mapping):
        rows = [{"question_id": q, "answer": a} for q, a in rows.items()]
    lines = []
    for i, row in enumerate(rows):
        if "question_id" not in row or "answer" not in row:
            raise ScoringError(f"prediction row {i}: needs 'question_id' and 'answer', got {row!r}")
        qid = row["question_id"]
        if isinstance(qid, bool) or not isinstance(qid, int):
            raise ScoringError(f"prediction row {i}: 'question_id' must be an integer, got {qid!r}")
        _check_answer(row["answer"], f"prediction row {i}")
        lines.append(json.dumps(dict(row), ensure_ascii=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "".join(line + "\n" for line in lines))
    return path


# ---- scoring ---------------------------------------------------------------------------------


def _pct(correct: int, total: int) -> float | None:
    return None if total == 0 else round(100.0 * correct / total, 2)


def _is_correct(record: QARecord, pred: str | int) -> bool:
    if isinstance(pred, bool) or not isinstance(pred, (str, int)):
        raise ScoringError(f"question {record.question_id}: prediction must be a string or an "
                           f"option index, got {pred!r}")
    if isinstance(pred, int):
        if not record.options:
            raise ScoringError(f"question {record.question_id} has no options, so its prediction "
                               f"must be the answer string, not the index {pred}")
        if not 0 <= pred < len(record.options):
            raise ScoringError(f"question {record.question_id}: option index {pred} outside "
                               f"0..{len(record.options) - 1}")
        return record.answer_index >= 0 and pred == record.answer_index
    return normalize_answer(pred) == record.answer


def check_predictions(predictions: Mapping[int, str | int], records: list[QARecord],
                      all_records: list[QARecord], path: str | os.PathLike) -> None:
    """ScoringError for a predictions file that cannot be what was meant: one without any
    prediction, or one whose questions belong to another split of the annotations (named)."""
    if not predictions:
        raise ScoringError(f"{path}: no predictions in the file (one JSON object per line)")
    wanted = {r.question_id for r in records}
    split_of = {r.question_id: r.split for r in all_records}
    elsewhere = Counter(split_of[q] for q in predictions if q not in wanted and q in split_of)
    if elsewhere:
        here = sorted({r.split for r in records})
        raise ScoringError(f"{path}: {sum(elsewhere.values())} prediction(s) are for questions of "
                           f"split {', '.join(sorted(elsewhere))}, not of split {', '.join(here)}; "
                           "pass --split to score that split")


def score(records: list[QARecord], predictions: Mapping[int, str | int],
          vocab: Vocabulary) -> dict[str, Any]:
    """Score ``predictions`` ({question_id: answer string or option index}) against ``records``.

    Returns ``{"overall", "groups": {group: pct}, "types": {type: pct for every vocabulary
    type}, "count": questions scored, "missing": questions without a prediction}``.
    """
    by_id: dict[int, QARecord] = {}
    for r in records:
        if r.question_id in by_id:
            raise ScoringError(f"question id {r.question_id} appears twice in the records")
        if not r.answer:
            raise ScoringError(f"question {r.question_id} has no answer in the annotations; "
                               "cannot score it")
        by_id[r.question_id] = r
    unknown = sorted(q for q in predictions if q not in by_id)
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise ScoringError(f"predictions for unknown question id(s) {unknown[:5]}{more}")

    total: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    n_correct = missing = 0
    for r in records:
        pred = predictions.get(r.question_id)
        ok = False
        if pred is None:
            missing += 1
        else:
            ok = _is_correct(r, pred)
        n_correct += ok
        if r.type_index >= 0:
            total[r.type_name] += 1
            correct[r.type_name] += ok
    groups = {}
    for group, members in vocab.groups.items():
        groups[group] = _pct(sum(correct[t] for t in members), sum(total[t] for t in members))
    return {
        "overall": _pct(n_correct, len(records)),
        "groups": groups,
        "types": {t: _pct(correct[t], total[t]) for t in vocab.types},
        "count": len(records),
        "missing": missing,
    }


def majority_baseline(train_records: Iterable[QARecord], eval_records: list[QARecord],
                      vocab: Vocabulary) -> dict[str, Any]:
    """Predict, for every evaluation question, the most frequent train answer of its type and
    score that like a model.  Ties go to the answer seen first in the train records; a type
    with no train answers gets the most frequent train answer overall."""
    per_type: dict[str, Counter[str]] = defaultdict(Counter)
    overall: Counter[str] = Counter()
    for r in train_records:
        if r.answer:
            per_type[r.type_name][r.answer] += 1
            overall[r.answer] += 1
    if not overall:
        raise ScoringError("majority baseline: the train records have no answers")
    fallback = overall.most_common(1)[0][0]  # most_common keeps first-seen order on ties
    choice = {t: c.most_common(1)[0][0] for t, c in per_type.items()}
    preds = {r.question_id: choice.get(r.type_name, fallback) for r in eval_records}
    return score(eval_records, preds, vocab)


# ---- table -----------------------------------------------------------------------------------


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def format_table(report: Mapping[str, Any], baseline: Mapping[str, Any] | None = None, *,
                 name: str = "accuracy", baseline_name: str = "baseline") -> str:
    """Markdown table of a :func:`score` report: each group's types followed by the group
    (pooled), types outside any group, then overall and the question count.  ``baseline`` (a
    second report, e.g. :func:`majority_baseline`) adds a column."""
    reports = [report] + ([baseline] if baseline is not None else [])
    header = ["question type", name] + ([baseline_name] if baseline is not None else [])
    rows: list[list[str]] = []
    types = list(report["types"])
    placed: set[str] = set()
    for group in report["groups"]:
        for t in types:
            if t.split("/", 1)[0] == group:
                rows.append([t] + [_cell(r["types"].get(t)) for r in reports])
                placed.add(t)
        rows.append([f"**{group}**"] + [_cell(r["groups"].get(group)) for r in reports])
    for t in types:
        if t not in placed:
            rows.append([t] + [_cell(r["types"].get(t)) for r in reports])
    rows.append(["**Overall**"] + [_cell(r["overall"]) for r in reports])
    rows.append(["questions (missing)"] + [f"{r['count']} ({r['missing']})" for r in reports])
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
