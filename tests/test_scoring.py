"""The scorer: hand-built predictions with known accuracies, prediction files, the majority
baseline, the table and the `score` command."""
from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from qa.annotations import QARecord, load_annotations, music_avqa_vocabulary
from qa.scoring import (ScoringError, format_table, majority_baseline, read_predictions,
                           score, write_predictions)

FIXTURES = Path(__file__).parent / "fixtures"
MUSIC_EXCERPT = FIXTURES / "music_avqa_test_excerpt.json"
AVQA_EXCERPT = FIXTURES / "avqa_val_excerpt.json"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(),
                                reason=f"real annotation data not present at {DATA}")
VOCAB = music_avqa_vocabulary()


def rec(qid: int, type_name: str, answer: str, options: tuple[str, ...] = ()) -> QARecord:
    index = options.index(answer) if options else VOCAB.answer_index(answer)
    return QARecord(question_id=qid, video_id=f"{qid:08d}", text="q", type_name=type_name,
                    type_index=VOCAB.type_index(type_name), answer=answer, answer_index=index,
                    split="test", dataset="music-avqa", options=options)


def hand_built() -> tuple[list[QARecord], dict[int, str]]:
    """Audio/Counting 10 questions all right, Audio/Comparative 2 all wrong, Visual/Counting 3
    with 1 right; no Visual/Location or Audio-Visual questions."""
    records = [rec(i, "Audio/Counting", "two") for i in range(10)]
    records += [rec(10 + i, "Audio/Comparative", "yes") for i in range(2)]
    records += [rec(20 + i, "Visual/Counting", "three") for i in range(3)]
    preds = {r.question_id: r.answer for r in records}
    preds[10] = preds[11] = "no"
    preds[21] = preds[22] = "four"
    return records, preds


def test_pooled_group_accuracy_and_nulls():
    records, preds = hand_built()
    report = score(records, preds, VOCAB)
    assert report["types"]["Audio/Counting"] == 100.0
    assert report["types"]["Audio/Comparative"] == 0.0
    assert report["types"]["Visual/Counting"] == 33.33
    # pooled over questions: 10 / 12, not the mean of the type accuracies (50.0)
    assert report["groups"]["Audio"] == 83.33
    assert report["groups"]["Visual"] == 33.33
    assert report["groups"]["Audio-Visual"] is None
    assert report["types"]["Visual/Location"] is None
    assert list(report["types"]) == list(VOCAB.types)
    assert report["overall"] == round(100 * 11 / 15, 2) == 73.33
    assert report["count"] == 15 and report["missing"] == 0


def test_missing_predictions_count_as_wrong():
    records, preds = hand_built()
    del preds[0], preds[1], preds[21]  # two right answers and one wrong one removed
    report = score(records, preds, VOCAB)
    assert report["missing"] == 3 and report["count"] == 15
    assert report["types"]["Audio/Counting"] == 80.0
    assert report["groups"]["Audio"] == round(100 * 8 / 12, 2)
    assert report["overall"] == round(100 * 9 / 15, 2)


def test_unknown_prediction_id_is_an_error():
    records, preds = hand_built()
    preds[999] = "two"
    with pytest.raises(ScoringError, match="unknown question id.*999"):
        score(records, preds, VOCAB)


def test_answer_normalised_and_bad_predictions():
    records, _ = hand_built()
    assert score(records[:1], {0: "  TWO "}, VOCAB)["overall"] == 100.0
    with pytest.raises(ScoringError, match="has no options"):
        score(records[:1], {0: 0}, VOCAB)
    with pytest.raises(ScoringError, match="twice"):
        score(records[:1] * 2, {}, VOCAB)
    unanswered = QARecord(1, "v", "q", "Audio/Counting", 0, "", -1, "test", "music-avqa")
    with pytest.raises(ScoringError, match="no answer"):
        score([unanswered], {}, VOCAB)


def test_multiple_choice_predictions():
    records, vocab = load_annotations(AVQA_EXCERPT)
    opts = ("cat", "dog", "bird", "horse")
    mc = [QARecord(1, "v1", "q", "Which", 0, "dog", 1, "test", "avqa", opts),
          QARecord(2, "v2", "q", "Which", 0, "bird", 2, "test", "avqa", opts),
          QARecord(3, "v3", "q", "Where", 3, "cat", 0, "test", "avqa", opts)]
    report = score(mc, {1: 1, 2: 0, 3: "Cat"}, vocab)
    assert report["types"]["Which"] == 50.0 and report["types"]["Where"] == 100.0
    assert report["overall"] == 66.67 and report["groups"] == {}
    assert report["types"]["Why"] is None and len(report["types"]) == 8
    with pytest.raises(ScoringError, match="option index 4"):
        score(mc, {1: 4}, vocab)
    # free-text AVQA questions are scored by answer string
    free = score(records, {r.question_id: r.answer for r in records[:6]}, vocab)
    assert free["overall"] == 50.0 and free["missing"] == 6


def test_predictions_file_round_trip_and_errors(tmp_path):
    path = write_predictions(tmp_path / "p" / "preds.jsonl",
                             [{"question_id": 5, "answer": "two", "logit": 1.5},
                              {"question_id": 7, "answer": 2}])
    assert read_predictions(path) == {5: "two", 7: 2}
    assert read_predictions(write_predictions(tmp_path / "m.jsonl", {1: "yes"})) == {1: "yes"}
    cases = {
        '{"question_id": 1, "answer": "a"}\n{"question_id": 2, "answer": \n': r"bad\.jsonl:2: not valid JSON",
        '\n{"answer": "a"}\n': r"bad\.jsonl:2: missing key 'question_id'",
        '{"question_id": "1", "answer": "a"}\n': r"bad\.jsonl:1: 'question_id' must be an integer",
        '{"question_id": true, "answer": "a"}\n': r"bad\.jsonl:1: 'question_id' must be an integer",
        '{"question_id": 1, "answer": null}\n': r"bad\.jsonl:1: 'answer' must be",
        '{"question_id": 1, "answer": "a"}\n{"question_id": 1, "answer": "b"}\n':
            r"bad\.jsonl:2: question_id 1 already predicted on line 1",
        '[1, 2]\n': r"bad\.jsonl:1: expected a JSON object",
    }
    for text, match in cases.items():
        (tmp_path / "bad.jsonl").write_text(text, encoding="utf-8")
        with pytest.raises(ScoringError, match=match):
            read_predictions(tmp_path / "bad.jsonl")
    with pytest.raises(ScoringError, match="row 0"):
        write_predictions(tmp_path / "x.jsonl", [{"question_id": 1}])
    with pytest.raises(ScoringError, match="cannot read"):
        read_predictions(tmp_path / "absent.jsonl")


def hand_built_train() -> list[QARecord]:
    train = [rec(100 + i, "Audio/Counting", a) for i, a in enumerate(["two", "one", "two"])]
    train += [rec(200 + i, "Visual/Counting", a) for i, a in enumerate(["four", "three", "three",
                                                                          "four"])]
    return train + [rec(300, "Audio/Comparative", "no")]


def test_majority_baseline():
    train = hand_built_train()
    records, _ = hand_built()
    base = majority_baseline(train, records, VOCAB)
    assert base["types"]["Audio/Counting"] == 100.0      # majority "two"
    assert base["types"]["Audio/Comparative"] == 0.0     # majority "no", answers "yes"
    assert base["types"]["Visual/Counting"] == 0.0       # tie -> "four" (seen first)
    assert base["groups"]["Audio"] == 83.33 and base["missing"] == 0
    # a type without train answers falls back to the most frequent answer overall ("two"/"four"
    # tie at 2 each -> "two", seen first)
    only_audio = [r for r in train if r.type_name == "Audio/Counting"] + train[3:7]
    eval_ = [rec(1, "Audio-Visual/Counting", "two")]
    assert majority_baseline(only_audio, eval_, VOCAB)["overall"] == 100.0
    with pytest.raises(ScoringError, match="no answers"):
        majority_baseline([], records, VOCAB)


def test_format_table():
    records, preds = hand_built()
    report = score(records, preds, VOCAB)
    base = majority_baseline(hand_built_train(), records, VOCAB)
    table = format_table(report, base, name="model", baseline_name="majority")
    lines = table.strip().splitlines()
    assert lines[0] == "| question type | model | majority |"
    labels = [line.split("|")[1].strip() for line in lines[2:]]
    assert labels == ["Audio/Counting", "Audio/Comparative", "**Audio**", "Visual/Counting",
                      "Visual/Location", "**Visual**", "Audio-Visual/Existential",
                      "Audio-Visual/Counting", "Audio-Visual/Location", "Audio-Visual/Comparative",
                      "Audio-Visual/Temporal", "**Audio-Visual**", "**Overall**",
                      "questions (missing)"]
    assert "| **Audio** | 83.33 | 83.33 |" in lines
    assert "| Visual/Counting | 33.33 | 0.00 |" in lines
    assert "| Visual/Location | — | — |" in lines
    assert "| **Overall** | 73.33 | 66.67 |" in lines
    assert lines[-1] == "| questions (missing) | 15 (0) | 15 (0) |"
    assert len(format_table(report).splitlines()[0].split("|")) == 4


def reference_score(records, preds):
    """Slow reference: explicit per-group loops over the records."""
    groups = defaultdict(lambda: [0, 0])
    overall = [0, 0]
    for r in records:
        ok = preds.get(r.question_id, None) == r.answer
        g = groups[r.type_name.split("/")[0]]
        g[0] += ok
        g[1] += 1
        overall[0] += ok
        overall[1] += 1
    return ({k: round(100 * c / n, 2) for k, (c, n) in groups.items()},
            round(100 * overall[0] / overall[1], 2))


@needs_data
def test_real_test_set_against_reference():
    records, vocab = load_annotations(DATA / "music_avqa" / "json_update" / "avqa-test.json")
    rng = random.Random(0)
    preds = {r.question_id: (r.answer if rng.random() < 0.6 else rng.choice(vocab.answers))
             for r in records if rng.random() < 0.9}
    report = score(records, preds, vocab)
    groups, overall = reference_score(records, preds)
    assert report["groups"] == groups and report["overall"] == overall
    assert report["missing"] == len(records) - len(preds)
    perfect = score(records, {r.question_id: r.answer for r in records}, vocab)
    assert perfect["overall"] == 100.0 and set(perfect["types"].values()) == {100.0}


def test_cli_round_trip(tmp_path):
    records, vocab = load_annotations(MUSIC_EXCERPT)
    preds = {r.question_id: ("yes" if i % 2 else r.answer) for i, r in enumerate(records) if i != 4}
    pred_path = write_predictions(tmp_path / "preds.jsonl", preds)
    out = tmp_path / "report.json"
    runner = CliRunner()
    result = runner.invoke(app, ["score", "--annotations", str(MUSIC_EXCERPT), "--predictions",
                                 str(pred_path), "--json-out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Overall" in result.output and "Audio-Visual/Temporal" in result.output
    assert json.loads(out.read_text()) == score(records, read_predictions(pred_path), vocab)
    assert json.loads(out.read_text())["missing"] == 1

    # with a baseline column, filtered by split
    out2 = tmp_path / "with_baseline.json"
    result = runner.invoke(app, ["score", "--annotations", str(MUSIC_EXCERPT), "--predictions",
                                 str(pred_path), "--json-out", str(out2), "--split", "test",
                                 "--train-annotations", str(MUSIC_EXCERPT)])
    assert result.exit_code == 0, result.output
    both = json.loads(out2.read_text())
    assert both["majority_baseline"] == majority_baseline(records, records, vocab)

    (tmp_path / "bad.jsonl").write_text('{"question_id": 123456, "answer": "two"}\n')
    result = runner.invoke(app, ["score", "--annotations", str(MUSIC_EXCERPT), "--predictions",
                                 str(tmp_path / "bad.jsonl")])
    assert result.exit_code == 2 and "123456" in result.output


def test_cli_refuses_an_empty_predictions_file_and_names_the_split_of_foreign_ids(tmp_path):
    """An empty file exits 2 instead of scoring every question as missing; predictions of the
    val split scored against the test split name the split they belong to."""
    import shutil

    ann = tmp_path / "ann"
    ann.mkdir()
    shutil.copy(MUSIC_EXCERPT, ann / "avqa-test.json")
    val = json.loads(MUSIC_EXCERPT.read_text())
    for r in val:
        r["question_id"] += 1_000_000
    (ann / "avqa-val.json").write_text(json.dumps(val))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    res = CliRunner().invoke(app, ["score", "--annotations", str(ann / "avqa-test.json"),
                                   "--predictions", str(empty)], env={"COLUMNS": "400"})
    assert res.exit_code == 2 and "no predictions in the file" in res.output, res.output
    preds = tmp_path / "val.jsonl"
    write_predictions(preds, [{"question_id": r["question_id"], "answer": "two"} for r in val])
    res = CliRunner().invoke(app, ["score", "--annotations", str(ann), "--split", "test",
                                   "--predictions", str(preds)], env={"COLUMNS": "400"})
    assert res.exit_code == 2, res.output
    assert f"{len(val)} prediction(s) are for questions of split val, not of split test" \
        in res.output and "Traceback" not in res.output, res.output
    res = CliRunner().invoke(app, ["score", "--annotations", str(ann), "--split", "tset",
                                   "--predictions", str(preds)], env={"COLUMNS": "400"})
    assert res.exit_code == 2 and "no questions of split 'tset' (its splits: test, val)" \
        in res.output, res.output
