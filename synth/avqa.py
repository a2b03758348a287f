"""AVQA-format (multiple choice) questions about a synthetic scene.

AVQA (Yang et al., ACM MM 2022) asks free-form questions of 8 types with 4 answer options, the
answer stored as the option index.  The synthetic scenes (:mod:`synth.scene`) hold
instruments with a place, a sound and a timing, but no causes and no purposes, so the types
**Why** and **Used For** are not generated; the other six are (docs/AVQA_SYNTH.md):

==============  ===============================================================  ==============
type            question (answer computed from the scene)                        answer space
==============  ===============================================================  ==============
Which           Which instrument is playing in the video? (one kind sounds)      instruments
                Which instrument is on the <left/middle/right> of the picture?
Come From       What is the main sound source of the video? (the loudest)        instruments
Happening       What is the <Object> doing in the video?                         4 activities
Where           Where is the <Object>?                                           4 places
When            When does the music start?                                       4 times
Before Next     Which instrument plays right after the <Object>?                 instruments
==============  ===============================================================  ==============

:func:`avqa_candidates` lists them (a pure function of the scene, like
:func:`synth.questions.scene_answers`, whose item keys it shares so the same balanced
:func:`synth.questions.select_questions` picks them); :func:`avqa_record` draws the 3 wrong
options from the answer space and puts the right one at a random position.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .scene import LEVELS, SLOTS

#: the AVQA types generated, in AVQA's order (Why and Used For have no meaning in the scenes)
AVQA_TYPES = ("Which", "Come From", "Happening", "Where", "When", "Before Next")
ACTIVITIES = ("playing all the time", "playing for a while", "staying silent", "not in the video")
PLACES = ("on the left", "in the middle", "on the right", "not in the picture")
TIMES = ("at the beginning", "in the middle of the video", "near the end", "there is no music")
N_OPTIONS = 4


def _always(intervals: list, duration: float) -> bool:
    covered = 0.0
    for s, e in sorted(intervals):
        if s > covered + 1e-3:
            return False
        covered = max(covered, e)
    return covered >= duration - 1e-3


def _when(start: float | None, duration: float) -> str:
    if start is None:
        return TIMES[3]
    if start < 1.0:
        return TIMES[0]
    return TIMES[1] if start < duration * 2 / 3 else TIMES[2]


def avqa_candidates(scene: dict) -> list[dict]:
    """Every AVQA question about ``scene``: ``{"type", "template", "question", "answer",
    "space"}`` where ``space`` is the answer space the options are drawn from."""
    names = list(scene.get("palette") or dict.fromkeys(i["name"] for i in scene["instruments"]))
    insts = scene["instruments"]
    D = float(scene["duration"])
    snd = [i for i in insts if i["intervals"]]
    vis = [i for i in insts if i["visible"]]
    vis_count = Counter(i["name"] for i in vis)
    snd_count = Counter(i["name"] for i in snd)
    all_count = Counter(i["name"] for i in insts)
    out: list[dict] = []

    def ask(kind: str, template: str, question: str, answer: str, space) -> None:
        out.append({"type": ["AVQA", kind], "template": template, "question": question,
                    "answer": answer, "space": list(space)})

    if len(snd_count) == 1:
        ask("Which", "which-playing", "Which instrument is playing in the video?",
            next(iter(snd_count)), names)
    for i in vis:
        ask("Which", "which-slot", f"Which instrument is on the {i['slot']} of the picture?",
            i["name"], names)
    loud = sorted(snd, key=lambda i: -LEVELS[i["level"]])
    if loud and (len(loud) == 1 or LEVELS[loud[0]["level"]] > LEVELS[loud[1]["level"]]):
        ask("Come From", "come-from", "What is the main sound source of the video?",
            loud[0]["name"], names)
    absent = [n for n in names if not all_count[n]]
    # one absent instrument per scene (picked by its duration), so "absent" answers do not dominate
    asked = {absent[int(D * 10) % len(absent)]} if absent else set()
    for n in names:
        if all_count[n] > 1 or (all_count[n] == 1 and not vis_count[n]) or \
                (not all_count[n] and n not in asked):
            continue    # several of a kind, or only heard: no single answer
        inst = next((i for i in vis if i["name"] == n), None)
        act = ACTIVITIES[3] if inst is None else ACTIVITIES[2] if not inst["intervals"] else \
            ACTIVITIES[0] if _always(inst["intervals"], D) else ACTIVITIES[1]
        ask("Happening", "happening", f"What is the {n} doing in the video?", act, ACTIVITIES)
        place = PLACES[3] if inst is None else PLACES[SLOTS.index(inst["slot"])]
        ask("Where", "where", f"Where is the {n}?", place, PLACES)
    start = min((s for i in snd for s, _ in i["intervals"]), default=None)
    ask("When", "when", "When does the music start?", _when(start, D), TIMES)
    starts = sorted({min(s for s, _ in i["intervals"]) for i in snd})
    for i in snd:
        if snd_count[i["name"]] != 1:
            continue
        k = starts.index(min(s for s, _ in i["intervals"]))
        nxt = [j for j in snd if k + 1 < len(starts) and min(s for s, _ in j["intervals"]) == starts[k + 1]]
        if len(nxt) == 1 and nxt[0]["name"] != i["name"]:
            ask("Before Next", "before-next", f"Which instrument plays right after the {i['name']}?",
                nxt[0]["name"], names)
    return out


def avqa_record(video_id: str, question_id: int, q: dict, rng: np.random.Generator,
                row: int) -> dict:
    """An AVQA multiple-choice record (official key order) for candidate ``q``: the answer and
    3 other members of its answer space, shuffled; ``answer`` is the right option's index."""
    others = [a for a in q["space"] if a != q["answer"]]
    wrong = [others[int(k)] for k in rng.permutation(len(others))[:N_OPTIONS - 1]]
    at = int(rng.integers(N_OPTIONS))
    options = wrong[:at] + [q["answer"]] + wrong[at:]
    return {"id": question_id, "video_name": f"{video_id}.mp4", "video_id": row,
            "question_text": q["question"], "multi_choice": options, "answer": at,
            "question_relation": "Both", "question_type": q["type"][1]}


__all__ = ["AVQA_TYPES", "avqa_candidates", "avqa_record", "N_OPTIONS"]
