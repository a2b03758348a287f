"""The dataset-format registry: MUSIC-AVQA and AVQA are registered formats; a toy format
registered at run time is detected, parsed and given its vocabulary by load_annotations; an
unknown format or a file of no registered format is an error naming the registered ones."""
from __future__ import annotations

import json

import pytest

from extract.config import ExtractConfig
from qa.annotations import (AnnotationError, DatasetFormat, ParsedRecord, Vocabulary,
                            dataset_names, detect_format, find_annotation_files, get_format,
                            load_annotations, normalize_answer, register_format,
                            unregister_format, vocabulary_for)


class ToyFormat(DatasetFormat):
    """Records like {"qid": 7, "clip": "a", "ask": "Is it loud?", "kind": "Loudness", "reply": "yes"}."""

    name, title, keys = "toy-qa", "TOY-QA", frozenset({"clip", "ask", "reply"})
    type_field, answer_field = "kind", "reply"

    def parse(self, record: dict, where: str) -> ParsedRecord:
        if not isinstance(record.get("qid"), int):
            raise AnnotationError(f"{where}: field 'qid': expected an integer")
        return ParsedRecord(record["qid"], False, record["clip"], record["ask"],
                            f"Toy/{record['kind']}", normalize_answer(record["reply"]), None, (),
                            record["ask"], False, where)

    def vocabulary(self, answers=None) -> Vocabulary:
        return Vocabulary(dataset=self.name, answers=("no", "yes"),
                          types=("Toy/Loudness", "Toy/Count"), groups={"Toy": ("Toy/Loudness", "Toy/Count")})


@pytest.fixture
def toy():
    register_format(ToyFormat)
    yield get_format("toy-qa")
    unregister_format("toy-qa")


def write(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


TOY_RECORDS = [{"qid": 7, "clip": "a", "ask": "Is it loud?", "kind": "Loudness", "reply": "Yes"},
               {"qid": 8, "clip": "b", "ask": "Is it loud?", "kind": "Loudness", "reply": "no"}]


def test_the_built_in_formats_are_registered_in_detection_order():
    assert dataset_names()[:2] == ("music-avqa", "avqa")
    assert detect_format({"question_content": "x", "anser": "y"}) == "music-avqa"
    assert detect_format({"question_text": "x", "question_type": "y"}) == "avqa"
    assert detect_format({"ask": "x"}) is None
    assert get_format("MUSIC_AVQA").title == "MUSIC-AVQA"


def test_a_registered_toy_format_loads_its_files(toy, tmp_path):
    path = write(tmp_path / "ann" / "toy-test.json", TOY_RECORDS)
    write(tmp_path / "ann" / "labels.json", ["not", "records"])
    assert find_annotation_files(tmp_path / "ann") == [path]
    records, vocab = load_annotations(tmp_path / "ann")
    assert vocab == toy.vocabulary() and vocab.dataset == "toy-qa"
    assert [(r.question_id, r.video_id, r.split, r.dataset) for r in records] == \
        [(7, "a", "test", "toy-qa"), (8, "b", "test", "toy-qa")]
    assert [r.answer_index for r in records] == [1, 0]
    assert [r.type_index for r in records] == [0, 0]
    assert vocabulary_for("toy_qa") == vocab
    assert ExtractConfig(dataset="toy-qa").dataset == "toy-qa"


def test_toy_format_errors_name_its_fields(toy, tmp_path):
    bad = dict(TOY_RECORDS[0], kind="Pitch")
    path = write(tmp_path / "toy-train.json", [bad])
    with pytest.raises(AnnotationError, match="field 'kind'"):
        load_annotations(path)
    with pytest.raises(AnnotationError, match="holds toy-qa records but dataset='avqa'"):
        load_annotations(path, dataset="avqa")


def test_unknown_format_is_an_error_naming_the_registered_ones(toy, tmp_path):
    with pytest.raises(AnnotationError, match=r"unknown dataset 'third'.*music-avqa.*avqa.*toy-qa"):
        vocabulary_for("third")
    with pytest.raises(AnnotationError, match="unknown dataset"):
        load_annotations(write(tmp_path / "toy-val.json", TOY_RECORDS), dataset="third")
    other = write(tmp_path / "other-test.json", [{"question": "x", "label": "y"}])
    with pytest.raises(AnnotationError, match=r"not a record of a registered format "
                                              r"\[MUSIC-AVQA .*; AVQA .*; TOY-QA .*\]"):
        load_annotations(other)
    with pytest.raises(ValueError, match="dataset must be one of"):
        ExtractConfig(dataset="third")


def test_unregistered_toy_files_are_not_taken_for_avqa(tmp_path):
    path = write(tmp_path / "toy-test.json", TOY_RECORDS)
    assert "toy-qa" not in dataset_names()
    with pytest.raises(AnnotationError, match="not a record of a registered format"):
        load_annotations(path)
