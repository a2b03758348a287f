"""QA annotation loading: the real annotation files under shared/data, a committed excerpt of
real records (tests/fixtures) and malformed variants of it."""
from __future__ import annotations

import ast
import collections
import json
from pathlib import Path

import pytest

from qa.annotations import (AnnotationError, UnknownLabelError, Vocabulary,
                                 avqa_vocabulary, derive_question_id, fill_question,
                                 find_annotation_files, load_annotations, music_avqa_vocabulary,
                                 normalize_answer, split_from_name, vocabulary_for)

FIXTURES = Path(__file__).parent / "fixtures"
MUSIC_EXCERPT = FIXTURES / "music_avqa_test_excerpt.json"
AVQA_EXCERPT = FIXTURES / "avqa_val_excerpt.json"
AVQA_MC_EXCERPT = FIXTURES / "avqa_train_mc_excerpt.json"

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MUSIC = DATA / "music_avqa"
needs_data = pytest.mark.skipif(not DATA.is_dir(),
                                reason=f"real annotation data not present at {DATA}")

MUSIC_TYPES = ["Audio/Counting", "Audio/Comparative", "Visual/Counting", "Visual/Location",
               "Audio-Visual/Existential", "Audio-Visual/Counting", "Audio-Visual/Location",
               "Audio-Visual/Comparative", "Audio-Visual/Temporal"]


def published_fill(sample: dict) -> str:
    """Reference: the question filling loop of the published code (AVST dataloader_avst.py /
    TSPM feature scripts), transcribed literally."""
    question = sample["question_content"].rstrip().split(" ")
    question[-1] = question[-1][:-1]
    p = 0
    for pos in range(len(question)):
        if "<" in question[pos]:
            question[pos] = ast.literal_eval(sample["templ_values"])[p]
            p += 1
    return " ".join(question)


def write(path: Path, records) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def excerpt() -> list[dict]:
    return json.loads(MUSIC_EXCERPT.read_text(encoding="utf-8"))


# ---- question filling ------------------------------------------------------------------------


def test_fill_question_published_rule():
    assert fill_question("Where is the <FL> sounding instrument? ", ["first"]) == \
        "Where is the first sounding instrument"
    assert fill_question("How many sounding <Object> in the video？", ["violin"]) == \
        "How many sounding violin in the video"
    # a placeholder in the last token: '?' dropped first, then the token replaced
    assert fill_question("Which is the musical instrument that sounds at the same time as the "
                         "<Object>?", ["pipa"]).endswith("same time as the pipa")
    assert fill_question("Is the <Object> louder than the <Object>?", ["clarinet", "piano"]) == \
        "Is the clarinet louder than the piano"
    assert fill_question("Is there a voiceover", []) == "Is there a voiceover"


def test_fill_question_count_mismatch_and_empty():
    with pytest.raises(AnnotationError, match="2 placeholder"):
        fill_question("Is the <Object> louder than the <Object>?", ["piano"])
    with pytest.raises(AnnotationError, match="0 placeholder"):
        fill_question("Is there a voiceover?", ["piano"])
    with pytest.raises(AnnotationError, match="empty"):
        fill_question("   ", [])


def test_fixture_excerpt_matches_published_fill():
    records, vocab = load_annotations(MUSIC_EXCERPT)
    raw = excerpt()
    assert len(records) == len(raw) == 27
    assert [r.text for r in records] == [published_fill(s) for s in raw]
    assert any(s["question_content"].endswith(" ") for s in raw)  # the trailing-space case
    assert collections.Counter(r.type_name for r in records) == {t: 3 for t in MUSIC_TYPES}
    for r, s in zip(records, raw):
        assert r.question_id == s["question_id"] and r.video_id == s["video_id"]
        assert r.split == "test" and r.dataset == "music-avqa" and r.options == ()
        assert vocab.answers[r.answer_index] == r.answer == s["anser"]
        assert vocab.types[r.type_index] == r.type_name
        assert r.template == s["question_content"]


# ---- vocabularies ----------------------------------------------------------------------------


def test_music_vocabulary():
    v = music_avqa_vocabulary()
    assert v.dataset == "music-avqa" and len(v.answers) == 42 and list(v.types) == MUSIC_TYPES
    assert v.groups == {"Audio": tuple(MUSIC_TYPES[:2]), "Visual": tuple(MUSIC_TYPES[2:4]),
                        "Audio-Visual": tuple(MUSIC_TYPES[4:])}
    assert v.answers[:3] == ("two", "cello", "congas") and v.answer_index("suona") == 41
    assert v.answer_index(" Acoustic_Guitar ") == v.answers.index("acoustic_guitar")
    assert v.group_of("Visual/Location") == "Visual" and v.group_of("nope") is None
    with pytest.raises(UnknownLabelError, match="banana") as err:
        v.answer_index("banana")
    assert isinstance(err.value, KeyError) and isinstance(err.value, AnnotationError)
    with pytest.raises(UnknownLabelError, match="Audio/Singing"):
        v.type_index("Audio/Singing")
    assert Vocabulary.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    assert vocabulary_for("music_avqa") is v


@needs_data
def test_music_vocabulary_is_published_order():
    ans2ix = json.loads((MUSIC / "qa_tiger" / "answer2idx.json").read_text())["ans2ix"]
    v = music_avqa_vocabulary()
    assert {a: v.answer_index(a) for a in v.answers} == ans2ix


def test_avqa_vocabulary():
    v = avqa_vocabulary(["Fishing", "fishing", "darts ", "Darts", "dog"])
    assert v.answers == ("darts", "dog", "fishing") and v.groups == {}
    assert v.types == ("Which", "Come From", "Happening", "Where", "Why", "Before Next", "When",
                       "Used For")
    with pytest.raises(AnnotationError, match="unknown dataset"):
        vocabulary_for("vqa-v2")
    with pytest.raises(AnnotationError, match="fixed"):
        vocabulary_for("music-avqa", answers=["x"])


def test_vocabulary_rejects_duplicates_and_bad_groups():
    with pytest.raises(AnnotationError, match="duplicate answers"):
        Vocabulary("x", ("a", "a"), ("T",), {})
    with pytest.raises(AnnotationError, match="unknown types"):
        Vocabulary("x", ("a",), ("T",), {"G": ("U",)})


# ---- malformed input -------------------------------------------------------------------------


def test_bad_json_names_file(tmp_path):
    bad = tmp_path / "avqa-test.json"
    bad.write_text('[{"video_id": "1",', encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"avqa-test\.json: not valid JSON"):
        load_annotations(bad)
    with pytest.raises(AnnotationError, match="expected a JSON list"):
        load_annotations(write(tmp_path / "x-test.json", {"a": 1}))


def test_missing_field_names_file_record_field(tmp_path):
    recs = excerpt()
    del recs[3]["type"]
    path = write(tmp_path / "avqa-test.json", recs)
    with pytest.raises(AnnotationError, match=r"avqa-test\.json: record 3: missing field 'type'"):
        load_annotations(path)


@pytest.mark.parametrize("field,value,match", [
    ("type", '["Audio"]', "expected \\[group, type\\]"),
    ("templ_values", "not a list", "not a JSON list"),
    ("templ_values", '["a", "b", "c"]', "placeholder"),
    ("question_id", "12", "non-negative integer"),
    ("question_deleted", "yes", "0 or 1"),
    ("anser", 3, "expected a string"),
    ("question_content", "", "non-empty string"),
])
def test_bad_field_values(tmp_path, field, value, match):
    recs = excerpt()
    recs[5][field] = value
    path = write(tmp_path / "avqa-val.json", recs)
    with pytest.raises(AnnotationError, match=rf"record 5: field '{field}': .*{match}"):
        load_annotations(path)


def test_unknown_answer_error_or_kept(tmp_path):
    recs = excerpt()
    recs[2]["anser"] = "theremin"
    path = write(tmp_path / "avqa-test.json", recs)
    with pytest.raises(UnknownLabelError, match=r"record 2: field 'anser': answer 'theremin'"):
        load_annotations(path)
    records, _ = load_annotations(path, keep_unknown=True)
    assert records[2].answer == "theremin" and records[2].answer_index == -1
    assert all(r.answer_index >= 0 for i, r in enumerate(records) if i != 2)


def test_unknown_type_error_or_kept(tmp_path):
    recs = excerpt()
    recs[4]["type"] = '["Audio", "Singing"]'
    path = write(tmp_path / "avqa-test.json", recs)
    with pytest.raises(UnknownLabelError, match=r"record 4: field 'type'.*Audio/Singing"):
        load_annotations(path)
    records, _ = load_annotations(path, keep_unknown=True)
    assert records[4].type_index == -1 and records[4].type_name == "Audio/Singing"


@pytest.mark.parametrize("video_id", ["../00000093", "a/b", "..", "", "x\\y"])
def test_video_id_must_be_plain_name(tmp_path, video_id):
    recs = excerpt()
    recs[1]["video_id"] = video_id
    path = write(tmp_path / "avqa-test.json", recs)
    with pytest.raises(AnnotationError, match=r"record 1: field 'video_id'"):
        load_annotations(path)


def test_avqa_video_name_must_be_plain(tmp_path):
    recs = json.loads(AVQA_EXCERPT.read_text())
    recs[0]["video_name"] = "../x_trimmed.mp4"
    with pytest.raises(AnnotationError, match=r"record 0: field 'video_name'"):
        load_annotations(write(tmp_path / "val_qa.json", recs))


def test_split_from_name_and_argument(tmp_path):
    assert [split_from_name(n) for n in ("avqa-test.json", "val_qa_all.json", "train_Where.json",
                                         "music_avqa_validation.json", "test_balance.json")] == \
        ["test", "val", "train", "val", "test"]
    path = write(tmp_path / "questions.json", excerpt())
    with pytest.raises(AnnotationError, match=r"questions\.json: the file name names no split"):
        load_annotations(path)
    with pytest.raises(AnnotationError, match="several splits"):
        split_from_name("train-test.json")
    records, _ = load_annotations(path, split="dev")
    assert {r.split for r in records} == {"dev"}
    with pytest.raises(AnnotationError, match="split"):
        load_annotations(path, split="a/b")


def test_deleted_questions_skipped_unless_asked(tmp_path):
    recs = excerpt()
    recs[0]["question_deleted"] = 1
    path = write(tmp_path / "avqa-test.json", recs)
    records, _ = load_annotations(path)
    assert len(records) == 26 and recs[0]["question_id"] not in {r.question_id for r in records}
    assert len(load_annotations(path, include_deleted=True)[0]) == 27


def test_derived_ids(tmp_path):
    recs = excerpt()
    for r in recs[:3]:
        del r["question_id"]
    recs[1]["templ_values"] = json.loads(recs[1]["templ_values"])  # v2.0 also has plain lists
    path = write(tmp_path / "test_balance.json", recs)
    records, _ = load_annotations(path)
    for r, raw in zip(records[:3], recs[:3]):
        values = raw["templ_values"]
        values = json.loads(values) if isinstance(values, str) else values
        assert r.question_id == derive_question_id(raw["video_id"], raw["question_content"],
                                                   values, raw["anser"])
        assert 10**9 <= r.question_id < 10**9 + 16**7
    assert [r.question_id for r in records[3:]] == [r["question_id"] for r in recs[3:]]
    assert [r.question_id for r in load_annotations(path)[0]] == [r.question_id for r in records]
    # the same content twice gives the same derived id: an error, never silently dropped
    recs.append(dict(recs[0]))
    with pytest.raises(AnnotationError, match="derived"):
        load_annotations(write(path, recs), duplicates="drop")


def test_duplicate_ids_within_and_across_files(tmp_path):
    recs = excerpt()
    a = write(tmp_path / "a-test.json", recs)
    b = write(tmp_path / "b-test.json", recs[:2])
    with pytest.raises(AnnotationError, match=r"two files: .*a-test\.json: record 0 and "
                                              r".*b-test\.json: record 0"):
        load_annotations([a, b])
    dup = dict(recs[7], anser="no" if recs[7]["anser"] == "yes" else "yes")
    c = write(tmp_path / "c-test.json", recs + [dup])
    with pytest.raises(AnnotationError, match=r"occurs twice in one file: .*record 7 and "
                                              r".*record 27"):
        load_annotations(c)
    records, _ = load_annotations(c, duplicates="drop")
    assert len(records) == 26 and recs[7]["question_id"] not in {r.question_id for r in records}
    with pytest.raises(AnnotationError, match="given twice"):
        load_annotations([a, a])


def test_avqa_official_multiple_choice_format(tmp_path):
    recs = json.loads(AVQA_MC_EXCERPT.read_text())[:5]
    for r in recs:  # official AVQA: the answer is the option index
        r["answer"] = r["multi_choice"].index(r["answer"])
    path = write(tmp_path / "avqa-train.json", recs)
    records, vocab = load_annotations(path)
    for r, raw in zip(records, recs):
        assert len(r.options) == 4 and r.answer_index == raw["answer"]
        assert r.answer == normalize_answer(raw["multi_choice"][raw["answer"]])
        assert r.video_id == raw["video_name"][:-4] and r.type_name == "Where"
        assert set(r.options) <= set(vocab.answers)
    recs[0]["answer"] = 4
    with pytest.raises(AnnotationError, match=r"record 0: field 'answer': option index 4"):
        load_annotations(write(path, recs))
    del recs[0]["multi_choice"]
    recs[0]["answer"] = 1
    with pytest.raises(AnnotationError, match="needs 'multi_choice'"):
        load_annotations(write(path, recs))


def test_avqa_excerpts(tmp_path):
    records, vocab = load_annotations(AVQA_EXCERPT)
    assert len(records) == 12 and vocab.dataset == "avqa" and vocab.groups == {}
    assert list(vocab.answers) == sorted(vocab.answers)
    assert all(vocab.answers[r.answer_index] == r.answer and r.split == "val" for r in records)
    assert {r.type_name for r in records} == {"Which", "Come From", "Happening", "Where"}
    with pytest.raises(UnknownLabelError, match=r"record 5: field 'answer'.*not among the options"):
        load_annotations(AVQA_MC_EXCERPT)
    mc, _ = load_annotations(AVQA_MC_EXCERPT, keep_unknown=True)
    assert [r.answer_index for r in mc][-1] == -1
    assert all(r.options[r.answer_index] == r.answer for r in mc[:-1])
    # a fixed vocabulary: answers outside it are unknown
    fixed = avqa_vocabulary(r.answer for r in records[:6])
    with pytest.raises(UnknownLabelError):
        load_annotations(AVQA_EXCERPT, vocabulary=fixed)
    kept, v2 = load_annotations(AVQA_EXCERPT, vocabulary=fixed, keep_unknown=True)
    assert v2 is fixed and all(r.answer_index >= 0 for r in kept[:6])


def test_mixing_datasets_is_an_error():
    with pytest.raises(AnnotationError, match="cannot mix datasets"):
        load_annotations([MUSIC_EXCERPT, AVQA_EXCERPT])
    with pytest.raises(AnnotationError, match="dataset='avqa'"):
        load_annotations(MUSIC_EXCERPT, dataset="avqa")


def test_find_annotation_files_ignores_other_json(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "avqa-test.json", excerpt())
    write(tmp_path / "labels.json", ["piano", "violin"])
    write(tmp_path / "answer2idx.json", {"ans2ix": {"two": 0}})
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    write(tmp_path / "empty.json", [])
    assert find_annotation_files(tmp_path) == [tmp_path / "sub" / "avqa-test.json"]
    assert len(load_annotations(tmp_path)[0]) == 27
    (tmp_path / "only").mkdir()
    write(tmp_path / "only" / "labels.json", ["piano"])
    with pytest.raises(AnnotationError, match="no MUSIC-AVQA or AVQA annotation files"):
        load_annotations(tmp_path / "only")
    with pytest.raises(AnnotationError, match="no such file"):
        load_annotations(tmp_path / "missing.json")


def test_empty_file_needs_dataset(tmp_path):
    path = write(tmp_path / "avqa-test.json", [])
    with pytest.raises(AnnotationError, match="hold no records"):
        load_annotations(path)
    records, vocab = load_annotations(path, dataset="music-avqa")
    assert records == [] and vocab is music_avqa_vocabulary()


# ---- the real files ----------------------------------------------------------------------------


@needs_data
def test_json_update_test_and_val():
    test, vocab = load_annotations(MUSIC / "json_update" / "avqa-test.json")
    assert len(test) == 9129 and len({r.video_id for r in test}) == 6399
    assert {r.type_index for r in test} == set(range(9)) and len(vocab.types) == 9
    used = {r.answer_index for r in test}
    assert len(used) == 41 and min(used) >= 0
    assert all("<" not in r.text and not r.text.endswith(("?", "\uff1f")) for r in test)
    assert {r.split for r in test} == {"test"}
    raw = json.loads((MUSIC / "json_update" / "avqa-test.json").read_text())
    assert [r.text for r in test] == [published_fill(s) for s in raw]
    assert collections.Counter(r.type_name for r in test) == collections.Counter(
        "/".join(json.loads(s["type"])) for s in raw)
    val, _ = load_annotations(MUSIC / "json_update" / "avqa-val.json")
    assert len(val) == 4568 and len({r.video_id for r in val}) == 3815
    assert {r.split for r in val} == {"val"}
    assert not {r.question_id for r in val} & {r.question_id for r in test}


@needs_data
def test_every_annotation_file_parses():
    files = find_annotation_files(DATA)
    names = sorted(str(f.relative_to(DATA)) for f in files)
    assert names == sorted([
        "avqa/avqacl_split_avqa/test_qa_all.json", "avqa/avqacl_split_avqa/val_qa_all.json",
        "avqa/avqacl_split_avqa/train_Happening.json", "avqa/avqacl_split_avqa/train_Where.json",
        *(f"music_avqa/avqacl_split_music_avqa/train_{t}.json"
          for t in ("Comparative", "Counting", "Existential", "Location", "Temporal")),
        "music_avqa/json_update/avqa-test.json", "music_avqa/json_update/avqa-val.json",
        "music_avqa/tspm_split_video_id/music_avqa_test.json",
        "music_avqa/tspm_split_video_id/music_avqa_val.json",
        "music_avqa_v2/balance_full_set/test_balance.json"])
    for f in files:
        raw = json.loads(f.read_text(encoding="utf-8"))
        id_key = "id" if "question_text" in raw[0] else "question_id"
        counts = collections.Counter(r.get(id_key) for r in raw if r.get(id_key) is not None)
        expected = len(raw) - sum(n for n in counts.values() if n > 1)
        records, vocab = load_annotations(f, keep_unknown=True, duplicates="drop")
        assert len(records) == expected, f
        assert len({r.question_id for r in records}) == len(records), f
        assert all(r.text and r.video_id and r.type_index >= 0 for r in records), f


@needs_data
def test_music_avqa_v2_derived_ids():
    path = DATA / "music_avqa_v2" / "balance_full_set" / "test_balance.json"
    records, _ = load_annotations(path)
    raw = json.loads(path.read_text())
    assert len(records) == len(raw) == 10819
    derived = [r for r, s in zip(records, raw) if s.get("question_id") is None]
    assert len(derived) == 1724 and all(r.question_id >= 10**9 for r in derived)
    assert len({r.question_id for r in records}) == 10819
    assert [r.question_id for r in load_annotations(path)[0]] == [r.question_id for r in records]
    assert all("<" not in r.text for r in records)


@needs_data
def test_avqacl_music_train_duplicates():
    folder = MUSIC / "avqacl_split_music_avqa"
    with pytest.raises(AnnotationError, match=r"question id 4493 occurs twice in one file: "
                                              r".*train_Comparative\.json: record 170"):
        load_annotations(folder)
    records, _ = load_annotations(folder, duplicates="drop")
    assert len(records) == 14535 - 2 * 81
    assert {r.split for r in records} == {"train"}
    assert {r.type_name.split("/")[0] for r in records} == {"Audio-Visual"}


@needs_data
def test_two_copies_of_a_split_clash():
    with pytest.raises(AnnotationError, match=r"two files: .*avqa-test\.json.*music_avqa_test"):
        load_annotations([MUSIC / "json_update" / "avqa-test.json",
                          MUSIC / "tspm_split_video_id" / "music_avqa_test.json"])


@needs_data
def test_avqa_resplit_loads():
    folder = DATA / "avqa" / "avqacl_split_avqa"
    with pytest.raises(UnknownLabelError, match=r"train_Happening\.json: record 4345: field "
                                                r"'answer'"):
        load_annotations(folder)
    records, vocab = load_annotations(folder, keep_unknown=True)
    assert len(records) == 5918 + 5729 + 5093 + 3620
    assert collections.Counter(r.split for r in records) == {"test": 5918, "val": 5729,
                                                             "train": 8713}
    assert len(vocab.types) == 8 and list(vocab.answers) == sorted(vocab.answers)
    unknown = [r for r in records if r.answer_index < 0]
    assert len(unknown) == 3 and all(r.options for r in unknown)
    for r in records:
        if r.options and r.answer_index >= 0:
            assert r.options[r.answer_index] == r.answer
        elif not r.options:
            assert vocab.answers[r.answer_index] == r.answer
    assert all(r.video_id.endswith("_trimmed") for r in records)
