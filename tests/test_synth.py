"""The synthetic demo dataset: real decodable mp4 files, MUSIC-AVQA annotation files that the
annotation loader reads, answers that agree with the scenes (recomputed here independently),
determinism for a seed, all nine question types, and balanced answers."""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import decord
import numpy as np
import pytest
from typer.testing import CliRunner

from qa.annotations import load_annotations
from synth.generate import SynthConfig, SynthError, plan, synthesize
from synth.questions import TYPES, answer_vocabulary, scene_answers

SMALL = dict(n_videos=12, seed=7, min_seconds=2.0, max_seconds=5.0, long_fraction=0.05,
             long_min_seconds=61.0, long_max_seconds=62.0, no_audio_fraction=0.15,
             sizes=["64x48", "54x96", "96x54"], fps=[8.0, 10.0], workers=2)
KEYS = {"video_id", "question_id", "type", "question_content", "templ_values", "anser",
        "question_deleted"}
TYPE_NAMES = {f"{g}/{k}" for g, k in TYPES}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "demo"
    summary = synthesize(out, **SMALL)
    doc = json.loads((out / "scenes.json").read_text())
    recs = {s: json.loads((out / "annotations" / f"avqa-{s}.json").read_text())
            for s in ("train", "val", "test")}
    return out, summary, doc, recs


def _all(recs):
    return [r for rs in recs.values() for r in rs]


def test_videos_decode_as_described(small):
    out, summary, doc, _ = small
    assert summary.n_videos == len(doc["scenes"]) == 12
    assert sorted(p.name for p in (out / "videos").iterdir()) == \
        sorted(Path(s["file"]).name for s in doc["scenes"])
    for s in doc["scenes"]:
        path = str(out / s["file"])
        vr = decord.VideoReader(path)
        assert len(vr) == max(1, math.floor(s["duration"] * s["fps"] + 1e-9)), s["video_id"]
        assert vr[0].shape == (s["height"], s["width"], 3)
        assert vr.get_avg_fps() == pytest.approx(s["fps"])
        if s["has_audio"]:
            ar = decord.AudioReader(path, sample_rate=16000, mono=True)
            assert ar.shape[1] / 16000 == pytest.approx(s["duration"], abs=0.1)
        else:
            with pytest.raises(decord.DECORDError):
                decord.AudioReader(path, sample_rate=16000, mono=True)


def test_picture_and_sound_match_the_scene(small):
    """Each visible instrument's colour is where its slot says; a lone sounding tone has its
    pitch; silence is silent."""
    out, _, doc, _ = small
    checked_pitch = checked_color = 0
    for s in doc["scenes"]:
        vr = decord.VideoReader(str(out / s["file"]))
        frame = vr[0].asnumpy().astype(int)
        side = min(s["width"], s["height"])
        left, top = (s["width"] - side) / 2, (s["height"] - side) / 2
        y = int(top + 0.3 * side)  # through the shapes' box
        for inst in s["instruments"]:
            if not inst["visible"] or inst["shape"] in ("ring", "hourglass", "cross"):
                continue  # shapes hollow or narrow at their centre
            k = ("left", "middle", "right").index(inst["slot"])
            shift = inst["motion"]["amp"] * side / 3 * math.sin(inst["motion"]["phase"])
            x = int(left + (k + 0.5) * side / 3 + shift)
            assert np.abs(frame[y, x] - inst["color"]).max() < 40, (s["video_id"], inst["name"])
            checked_color += 1
        if not s["has_audio"]:
            continue
        wav = decord.AudioReader(str(out / s["file"]), sample_rate=16000, mono=True)[:].asnumpy()[0]
        for sec in range(int(s["duration"])):
            on = [i for i in s["instruments"]
                  if any(a <= sec and sec + 1 <= b for a, b in i["intervals"])]
            partly = [i for i in s["instruments"]
                      if any(a < sec + 1 and sec < b for a, b in i["intervals"])]
            chunk = wav[sec * 16000:(sec + 1) * 16000]
            if not partly:
                assert np.abs(chunk).max() < 0.02
            elif len(on) == 1 and len(partly) == 1 and on[0]["timbre"] == "tone":
                spec = np.abs(np.fft.rfft(chunk))
                assert abs(np.argmax(spec) - on[0]["pitch_hz"]) < 0.03 * on[0]["pitch_hz"] + 2
                checked_pitch += 1
    assert checked_pitch > 0 and checked_color > 5


def test_durations_sizes_rates_vary(small):
    _, summary, doc, _ = small
    scenes = doc["scenes"]
    durations = [s["duration"] for s in scenes]
    long = [d for d in durations if d > 60]
    assert len(long) == 1 and 61.0 <= long[0] <= 62.0  # round(0.05 * 12) = 1
    assert all(2.0 <= d <= 5.0 for d in durations if d <= 60)
    assert len(set(durations)) > 6
    assert {(s["width"], s["height"]) for s in scenes} == {(64, 48), (54, 96), (96, 54)}
    assert {s["fps"] for s in scenes} == {8.0, 10.0}
    assert summary.n_without_audio == sum(not s["has_audio"] for s in scenes) == 2
    assert summary.min_duration == min(durations) and summary.max_duration == max(durations)


def test_annotation_files_are_music_avqa_format(small):
    out, summary, doc, recs = small
    vocab = set(answer_vocabulary())
    assert len(vocab) == 42
    qids = [r["question_id"] for r in _all(recs)]
    assert len(qids) == len(set(qids)) == summary.n_questions == 12 * 5
    for r in _all(recs):
        assert set(r) == KEYS
        kind = json.loads(r["type"])
        assert isinstance(r["type"], str) and f"{kind[0]}/{kind[1]}" in TYPE_NAMES
        values = json.loads(r["templ_values"])
        assert isinstance(values, list) and all(isinstance(v, str) for v in values)
        assert sum("<" in w for w in r["question_content"].split(" ")) == len(values)
        assert r["anser"] in vocab and r["question_deleted"] == 0
    # split by video: every video in exactly one split, ~70/15/15
    vids = {s: {r["video_id"] for r in rs} for s, rs in recs.items()}
    assert not (vids["train"] & vids["val"]) and not (vids["train"] & vids["test"]) \
        and not (vids["val"] & vids["test"])
    assert {s: len(v) for s, v in vids.items()} == {"train": 8, "val": 2, "test": 2}
    assert summary.videos_per_split == {"train": 8, "val": 2, "test": 2}
    assert all(doc["split"][r["video_id"]] == s for s, rs in recs.items() for r in rs)
    # the project's annotation loader reads them, filling every placeholder
    loaded, vocabulary = load_annotations(out / "annotations")
    assert len(loaded) == len(qids)
    assert Counter(q.split for q in loaded) == {s: len(rs) for s, rs in recs.items()}
    assert all("<" not in q.text and q.answer_index >= 0 and q.type_index >= 0 for q in loaded)
    by_id = {r["question_id"]: r for r in _all(recs)}
    q = next(q for q in loaded if json.loads(by_id[q.question_id]["templ_values"]))
    for v in json.loads(by_id[q.question_id]["templ_values"]):
        assert v in q.text.split(" ")


def _heard(s):
    return [i for i in s["instruments"] if i["intervals"]]


def _expected(s, template, values):
    """Answers recomputed from the scene for a few templates, independently of synth.questions."""
    vis = [i for i in s["instruments"] if i["visible"]]
    words = ["zero", "one", "two", "three", "four"]
    if template == "How many musical instruments were heard throughout the video?":
        return words[len(_heard(s))]
    if template == "How many instruments are sounding in the video?":
        return words[sum(1 for i in vis if i["intervals"])]
    if template == "How many <Object> are in the entire video?":
        return words[sum(1 for i in vis if i["name"] == values[0])]
    if template == "Where is the <Object>?":
        (inst,) = [i for i in vis if i["name"] == values[0]]
        return inst["slot"]
    if template == "Is the <Object> in the video always playing?":
        (inst,) = [i for i in vis if i["name"] == values[0]]
        always = len(inst["intervals"]) == 1 and inst["intervals"][0][0] == 0 and \
            inst["intervals"][0][1] >= s["duration"] - 1e-6
        return "yes" if always else "no"
    if template == "Is this sound from the instrument in the video?":
        assert _heard(s)
        return "yes" if all(i["visible"] for i in _heard(s)) else "no"
    if template == "What kind of instrument is the <LRer> instrument?":
        order = sorted(vis, key=lambda i: ("left", "middle", "right").index(i["slot"]))
        return order[0 if values[0] == "leftest" else -1]["name"]
    return None


def test_answers_agree_with_the_scene(small):
    _, _, doc, recs = small
    scenes = {s["video_id"]: s for s in doc["scenes"]}
    checked = 0
    for r in _all(recs):
        s = scenes[r["video_id"]]
        values = json.loads(r["templ_values"])
        item = {"type": json.loads(r["type"]), "template": r["question_content"],
                "templ_values": values, "answer": r["anser"]}
        assert s["palette"] == [p["name"] for p in doc["palette"]]
        assert item in [{k: q[k] for k in item} for q in scene_answers(s)]
        exp = _expected(s, r["question_content"], values)
        if exp is not None:
            assert r["anser"] == exp, r
            checked += 1
    # and over many scenes, every candidate of those templates
    p = plan(SynthConfig(n_videos=150, seed=11))
    for s in p.scenes:
        for q in scene_answers(s):
            exp = _expected(s, q["template"], q["templ_values"])
            if exp is not None:
                assert q["answer"] == exp, (s["video_id"], q)
                checked += 1
    assert checked > 500


def test_scene_answers_on_a_hand_made_scene():
    scene = {"duration": 10.0, "instruments": [
        {"name": "violin", "visible": True, "slot": "left", "level": "loud", "style": "sustained",
         "pitch_hz": 300.0, "intervals": [[0.0, 10.0]]},
        {"name": "cello", "visible": True, "slot": "right", "level": "quiet",
         "style": "staccato", "pitch_hz": 200.0, "intervals": []},
        {"name": "drum", "visible": False, "slot": None, "level": "quiet", "style": "staccato",
         "pitch_hz": 900.0, "intervals": [[2.0, 4.0], [6.0, 7.0]]},
    ]}
    got = {(q["template"], tuple(q["templ_values"])): q["answer"]
           for q in scene_answers(scene, ["violin", "cello", "drum", "flute"])}
    want = {
        ("How many musical instruments were heard throughout the video?", ()): "two",
        ("Is there a <Object> sound?", ("cello",)): "no",
        ("Are there <Object> and <Object> sound?", ("drum", "violin")): "yes",
        ("Is the <Object> louder than the <Object>?", ("drum", "violin")): "no",
        ("Is the <Object> playing longer than the <Object>?", ("violin", "drum")): "yes",
        ("Is the <Object> more rhythmic than the <Object>?", ("drum", "violin")): "yes",
        ("How many <Object> are in the entire video?", ("drum",)): "zero",
        ("How many types of musical instruments appeared in the entire video?", ()): "two",
        ("What kind of instrument is the <LRer> instrument?", ("leftest",)): "violin",
        ("What is the instrument on the <LR> of <Object>?", ("right", "violin")): "cello",
        ("Where is the <Object>?", ("cello",)): "right",
        ("Is the <Object> in the video always playing?", ("violin",)): "yes",
        ("Is the <Object> in the video always playing?", ("cello",)): "no",
        ("Is this sound from the instrument in the video?", ()): "no",
        ("How many instruments are sounding in the video?", ()): "one",
        ("How many instruments in the video did not sound from beginning to end?", ()): "one",
        ("Where is the <LL> instrument?", ("loudest",)): "left",
        ("Is the <FL> sound coming from the <LR> instrument?", ("first", "left")): "yes",
        ("Is the <FL> sound coming from the <LR> instrument?", ("last", "left")): "no",
        ("Which is the musical instrument that sounds at the same time as the <Object>?",
         ("drum",)): "violin",
        ("What is the <TH> instrument that comes in?", ("second",)): "drum",
        ("Where is the <FL> sounding instrument?", ("first",)): "left",
        ("Which instrument makes sounds <BA> the <Object>?", ("after", "violin")): "drum",
    }
    for key, answer in want.items():
        assert got[key] == answer, key
    # questions that have no single answer in this scene are not asked
    assert got[("Where is the <LL> instrument?", ("lowest",))] == "left"  # silent cello not counted
    assert ("Where is the <FL> sounding instrument?", ("last",)) not in got  # the drum is off screen
    assert not any(k[0].startswith("Is the instrument on the <LR> louder") for k in got)


def test_deterministic_for_a_seed(small, tmp_path):
    out, _, _, _ = small
    again = tmp_path / "again"
    synthesize(again, **{**SMALL, "workers": 1})  # one process vs two: same bytes
    for rel in ["scenes.json", "annotations/avqa-train.json", "annotations/avqa-val.json",
                "annotations/avqa-test.json"] + [f"videos/{p.name}" for p in (out / "videos").iterdir()]:
        assert (again / rel).read_bytes() == (out / rel).read_bytes(), rel
    a, b = plan(SynthConfig(n_videos=40, seed=1)), plan(SynthConfig(n_videos=40, seed=2))
    assert a.scenes != b.scenes and a.records != b.records
    assert plan(SynthConfig(n_videos=40, seed=1)).records == a.records


def test_rerun_reuses_and_cli_matches_api(small, tmp_path):
    from cli import app

    out, _, _, _ = small
    cli_out = tmp_path / "cli"
    args = ["synth", "--out", str(cli_out), "--videos", "12", "--seed", "7", "--min-seconds", "2",
            "--max-seconds", "5", "--long-fraction", "0.05", "--no-audio-fraction", "0.15",
            "--size", "64x48", "--size", "54x96", "--size", "96x54", "--fps", "8", "--fps", "10",
            "--workers", "2"]
    cfg = cli_out.parent / "long.toml"
    cfg.write_text("long_min_seconds = 61.0\nlong_max_seconds = 62.0\n")
    res = CliRunner().invoke(app, args + ["--config", str(cfg)])
    assert res.exit_code == 0, res.output
    for rel in ["scenes.json", "annotations/avqa-test.json"]:
        assert (cli_out / rel).read_bytes() == (out / rel).read_bytes()
    # same config again: nothing re-encoded; a missing video (interrupted run): only it
    assert synthesize(cli_out, **SMALL).n_written == 0
    (cli_out / "videos" / "synth_00003.mp4").unlink()
    (cli_out / "annotations" / "avqa-val.json").unlink()
    assert synthesize(cli_out, **SMALL).n_written == 1
    for rel in ["videos/synth_00003.mp4", "annotations/avqa-val.json"]:
        assert (cli_out / rel).read_bytes() == (out / rel).read_bytes()
    # another config: the old files go
    s = synthesize(cli_out, **{**SMALL, "n_videos": 5})
    assert s.n_written == 5 and len(list((cli_out / "videos").iterdir())) == 5


def test_bad_input_is_reported(tmp_path):
    with pytest.raises(ValueError, match="unknown name"):
        SynthConfig(instruments=["violin", "kazoo"])
    with pytest.raises(ValueError, match="not WxH"):
        SynthConfig(sizes=["320by180"])
    with pytest.raises(ValueError, match="decord"):
        SynthConfig(sizes=["72x96"])
    with pytest.raises(ValueError, match="min_seconds"):
        SynthConfig(min_seconds=5, max_seconds=2)
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(SynthError, match="not a synth output"):
        synthesize(tmp_path, n_videos=2)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    res = CliRunner().invoke(__import__("cli").app, ["synth", "--out", str(tmp_path / "x"),
                                                     "--size", "10x10"])
    assert res.exit_code == 2 and "too small" in res.output


def test_all_types_present(small):
    _, summary, _, recs = small
    types = Counter("/".join(json.loads(r["type"])) for r in _all(recs))
    assert set(types) == TYPE_NAMES
    assert summary.questions_per_type == dict(types)


def test_answers_are_balanced():
    """Over 500 scenes the majority answer of a type is no shortcut.  Yes/no types cannot go
    below 50 %; the greedy balancer keeps them within a few questions of it, so 55 % allows
    for what the scenes cannot offer.  Every other type has at least four possible answers
    (numbers, or names / positions); 40 % is less than half of what an unbalanced generator
    gives for them (e.g. 'zero' for "How many <Object> ..." over 8 instruments: ~80 %)."""
    p = plan(SynthConfig(n_videos=500, seed=0))
    by_type: dict[str, Counter] = {}
    for r in (r for rs in p.records.values() for r in rs):
        by_type.setdefault("/".join(json.loads(r["type"])), Counter())[r["anser"]] += 1
    assert set(by_type) == TYPE_NAMES
    vocab = set(answer_vocabulary())
    assert all(set(c) <= vocab for c in by_type.values())
    for name, counts in by_type.items():
        n = sum(counts.values())
        share = counts.most_common(1)[0][1] / n
        yes_no = set(counts) <= {"yes", "no"}
        assert n >= 150, name
        assert share <= (0.55 if yes_no else 0.40), (name, counts.most_common(3))
    # the type mix is even too: no type is more than twice as frequent as another
    sizes = [sum(c.values()) for c in by_type.values()]
    assert max(sizes) <= 2 * min(sizes)
