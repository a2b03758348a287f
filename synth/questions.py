"""Questions about a synthetic scene, their answers, and a balanced choice of them per video.

:func:`scene_answers` lists every question the templates can ask about one scene, with the
answer computed from the scene description alone (a pure function).  :func:`select_questions`
then picks a few per video over a whole dataset, greedily keeping every question type equally
frequent and, inside a type and inside a template, the answers as even as the scenes allow —
so that the majority answer of a type is no shortcut.

Templates are MUSIC-AVQA's own where they fit (same wording, same placeholders, same type), plus
"Where is the <Object>?" (Visual/Location).  Every placeholder is its own space-separated
token, so the usual filling rule (split on spaces, drop the final '?', replace each token with
'<' by the next template value) rebuilds :attr:`question`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import permutations
from typing import Any, Callable

import numpy as np

from qa.annotations import music_avqa_vocabulary

from .scene import LEVELS, SLOTS

NUMBERS = ("zero", "one", "two", "three", "four")

#: (group, kind) of the nine MUSIC-AVQA question types, in the usual order
TYPES: tuple[tuple[str, str], ...] = (
    ("Audio", "Counting"), ("Audio", "Comparative"),
    ("Visual", "Counting"), ("Visual", "Location"),
    ("Audio-Visual", "Existential"), ("Audio-Visual", "Counting"), ("Audio-Visual", "Location"),
    ("Audio-Visual", "Comparative"), ("Audio-Visual", "Temporal"),
)


def answer_vocabulary() -> list[str]:
    """The 42 MUSIC-AVQA answers, in the published order."""
    return list(music_avqa_vocabulary().answers)


def fill(template: str, values: list[str]) -> str:
    """MUSIC-AVQA's filling rule: split on spaces, drop the final '?', replace each token that
    contains '<' by the next value; joined with spaces and a final '?'."""
    words = template.strip().split(" ")
    words[-1] = words[-1].rstrip("?？")
    it = iter(values)
    out = [next(it) if "<" in w else w for w in words]
    return " ".join(out) + "?"


@dataclass(frozen=True)
class _Inst:
    idx: int
    name: str
    visible: bool
    slot: str | None
    gain: float
    staccato: bool
    pitch: float
    intervals: tuple[tuple[float, float], ...]

    @property
    def sounding(self) -> bool:
        return bool(self.intervals)

    @property
    def start(self) -> float:
        return min(s for s, _ in self.intervals)

    @property
    def total(self) -> float:
        return sum(e - s for s, e in self.intervals)

    def overlaps(self, other: "_Inst") -> bool:
        return any(s < e2 and s2 < e for s, e in self.intervals for s2, e2 in other.intervals)


def _always(inst: _Inst, duration: float) -> bool:
    """Sounds from 0 to the end (intervals cover [0, duration] up to 1 ms)."""
    covered = 0.0
    for s, e in sorted(inst.intervals):
        if s > covered + 1e-3:
            return False
        covered = max(covered, e)
    return covered >= duration - 1e-3


def _unique(items, key):
    """The single item with the extreme key if it is unique, else None (items sorted by key)."""
    if not items:
        return None
    ordered = sorted(items, key=key)
    if len(ordered) > 1 and key(ordered[0]) == key(ordered[1]):
        return None
    return ordered[0]


@dataclass
class _Facts:
    """What the questions of one scene are computed from."""

    names_all: list[str]          # the dataset's instruments (may be asked about though absent)
    D: float                      # duration (s)
    vis: list                     # instruments on screen
    snd: list                     # instruments that sound
    vis_snd: list                 # on screen and sounding
    by_slot: dict                 # slot -> the instrument on screen there
    vis_names: Counter
    snd_names: Counter
    first: Any                    # the sounding instrument that starts first / last (None if tied)
    last: Any


def _facts(scene: dict, instruments: list[str] | None) -> _Facts:
    names_all = list(instruments or scene.get("palette") or
                     dict.fromkeys(i["name"] for i in scene["instruments"]))
    insts = [_Inst(k, i["name"], bool(i["visible"]), i["slot"], LEVELS[i["level"]],
                   i["style"] == "staccato", float(i["pitch_hz"]),
                   tuple((float(s), float(e)) for s, e in i["intervals"]))
             for k, i in enumerate(scene["instruments"])]
    vis = [i for i in insts if i.visible]
    snd = [i for i in insts if i.sounding]
    return _Facts(names_all, float(scene["duration"]), vis, snd, [i for i in vis if i.sounding],
                  {i.slot: i for i in vis}, Counter(i.name for i in vis), Counter(i.name for i in snd),
                  _unique(snd, key=lambda i: i.start), _unique(snd, key=lambda i: -i.start))


def _yn(b: bool) -> str:
    return "yes" if b else "no"


def _audio_counting(f: _Facts, ask: Callable[[str, list[str], str], None]) -> None:
    """Audio / Counting."""
    names_all, snd, snd_names = f.names_all, f.snd, f.snd_names
    ask("How many musical instruments were heard throughout the video?", [],
        NUMBERS[len(snd)])
    for n in names_all:
        ask("Is there a <Object> sound?", [n], _yn(n in snd_names))
    for a in sorted(snd_names):
        for b in names_all:
            if b != a:
                for pair in ((a, b), (b, a)):
                    ask("Are there <Object> and <Object> sound?", list(pair),
                        _yn(b in snd_names))


def _audio_comparative(f: _Facts, ask: Callable[[str, list[str], str], None]) -> None:
    """Audio / Comparative."""
    snd, snd_names = f.snd, f.snd_names
    uniq_snd = [i for i in snd if snd_names[i.name] == 1]
    for a, b in permutations(uniq_snd, 2):
        if a.gain != b.gain:
            ask("Is the <Object> louder than the <Object>?", [a.name, b.name],
                _yn(a.gain > b.gain))
        if abs(a.total - b.total) >= 2.0:
            ask("Is the <Object> playing longer than the <Object>?", [a.name, b.name],
                _yn(a.total > b.total))
        if a.staccato != b.staccato:
            ask("Is the <Object> more rhythmic than the <Object>?", [a.name, b.name],
                _yn(a.staccato))


def _visual_counting(f: _Facts, ask: Callable[[str, list[str], str], None]) -> None:
    """Visual / Counting."""
    names_all, vis_names = f.names_all, f.vis_names
    for n in names_all:
        ask("How many <Object> are in the entire video?", [n], NUMBERS[vis_names[n]])
        ask("Is there a <Object> in the entire video?", [n], _yn(n in vis_names))
    ask("How many types of musical instruments appeared in the entire video?", [],
        NUMBERS[len(vis_names)])
    for a in sorted(vis_names):
        for b in names_all:
            if b != a:
                for pair in ((a, b), (b, a)):
                    ask("Are there <Object> and <Object> instruments in the video?",
                        list(pair), _yn(b in vis_names))


def _visual_location(f: _Facts, ask: Callable[[str, list[str], str], None]) -> None:
    """Visual / Location."""
    vis, vis_names = f.vis, f.vis_names
    ordered = sorted(vis, key=lambda i: SLOTS.index(i.slot))
    if len(ordered) == 1:
        ask("What kind of musical instrument is it?", [], ordered[0].name)
    if len(ordered) >= 2:
        ask("What kind of instrument is the <LRer> instrument?", ["leftest"], ordered[0].name)
        ask("What kind of instrument is the <LRer> instrument?", ["rightest"],
            ordered[-1].name)
    for k, i in enumerate(ordered):
        if vis_names[i.name] != 1:
            continue
        ask("Where is the <Object>?", [i.name], i.slot)
        if k > 0:
            ask("What is the instrument on the <LR> of <Object>?", ["left", i.name],
                ordered[k - 1].name)
        if k + 1 < len(ordered):
            ask("What is the instrument on the <LR> of <Object>?", ["right", i.name],
                ordered[k + 1].name)


def _audio_visual_existential(f: _Facts, ask: Callable[[str, list[str], str], None]) -> None:
    """Audio-Visual / Existential."""
    D, vis, snd, vis_names = f.D, f.vis, f.snd, f.vis_names
    for i in vis:
        if vis_names[i.name] == 1:
            ask("Is the <Object> in the video always playing?", [i.name],
                _yn(i.sounding and _always(i, D)))
    if snd:
        ask("Is this sound from the instrument in the video?", [],
            _yn(all(i.visible for i in snd)))


def _audio_visual_counting(f: _Facts, ask: Callable[[str, list[str], str], None]) -> None:
    """Audio-Visual / Counting."""
    vis, vis_snd, vis_names = f.vis, f.vis_snd, f.vis_names
    ask("How many instruments are sounding in the video?", [], NUMBERS[len(vis_snd)])
    ask("How many types of musical instruments sound in the video?", [],
        NUMBERS[len({i.name for i in vis_snd})])
    ask("How many instruments in the video did not sound from beginning to end?", [],
        NUMBERS[len(vis) - len(vis_snd)])
    for n in sorted(vis_names):
        ask("How many sounding <Object> in the video?", [n],
            NUMBERS[sum(1 for i in vis_snd if i.name == n)])


def _audio_visual_location(f: _Facts, ask: Callable[[str, list[str], str], None]) -> None:
    """Audio-Visual / Location."""
    snd, by_slot, snd_names, first, last = f.snd, f.by_slot, f.snd_names, f.first, f.last
    loudest = _unique(snd, key=lambda i: -i.gain)
    lowest = _unique(snd, key=lambda i: i.pitch)
    for word, who in (("loudest", loudest), ("lowest", lowest)):
        if who is not None and who.visible:
            ask("Where is the <LL> instrument?", [word], who.slot)
    if len(snd) >= 2:
        for word, who in (("first", first), ("last", last)):
            if who is None:
                continue
            for slot in SLOTS:
                if slot in by_slot:
                    ask("Is the <FL> sound coming from the <LR> instrument?", [word, slot],
                        _yn(who.visible and who.slot == slot))
    for i in snd:
        if snd_names[i.name] != 1:
            continue
        partners = {j.name for j in snd if j is not i and j.overlaps(i)}
        if len(partners) == 1:
            ask("Which is the musical instrument that sounds at the same time as the "
                   "<Object>?", [i.name], partners.pop())


def _audio_visual_comparative(f: _Facts, ask: Callable[[str, list[str], str], None]) -> None:
    """Audio-Visual / Comparative."""
    vis_snd = f.vis_snd
    for a, b in permutations(vis_snd, 2):
        if a.gain != b.gain:
            ask("Is the instrument on the <LR> louder than the instrument on the <LR>?",
                [a.slot, b.slot], _yn(a.gain > b.gain))
            ask("Is the <Object> on the <LR> louder than the <Object> on the <LR>?",
                [a.name, a.slot, b.name, b.slot], _yn(a.gain > b.gain))
        if a.staccato != b.staccato:
            ask("Is the instrument on the <LR> more rhythmic than the instrument on the "
                   "<LR>?", [a.slot, b.slot], _yn(a.staccato))
            ask("Is the <Object> on the <LR> more rhythmic than the <Object> on the <LR>?",
                [a.name, a.slot, b.name, b.slot], _yn(a.staccato))


def _audio_visual_temporal(f: _Facts, ask: Callable[[str, list[str], str], None]) -> None:
    """Audio-Visual / Temporal."""
    snd, vis_snd, vis_names, snd_names, first, last = f.snd, f.vis_snd, f.vis_names, f.snd_names, f.first, f.last
    starts = sorted({i.start for i in snd})
    for th, word in enumerate(("first", "second", "third")):
        if th < len(starts) and len(snd) >= 2:
            at = {i.name for i in snd if i.start == starts[th]}
            if len(at) == 1 and sum(1 for i in snd if i.start == starts[th]) == 1:
                ask("What is the <TH> instrument that comes in?", [word], at.pop())
    if len(snd) >= 2:
        for word, who in (("first", first), ("last", last)):
            if who is not None and who.visible:
                ask("Where is the <FL> sounding instrument?", [word], who.slot)
    for n, c in vis_names.items():
        same = [i for i in vis_snd if i.name == n]
        if c >= 2 and len(same) >= 2:
            for word in ("first", "last"):
                pick = _unique(same, key=(lambda i: i.start) if word == "first" else
                               (lambda i: -i.start))
                ask("Which <Object> makes the sound <FL>?", [n, word],
                    pick.slot if pick is not None else "simultaneously")
    for i in snd:
        if snd_names[i.name] != 1:
            continue
        k = starts.index(i.start)
        for word, nb in (("before", k - 1), ("after", k + 1)):
            if 0 <= nb < len(starts):
                at = [j for j in snd if j.start == starts[nb]]
                if len(at) == 1:
                    ask("Which instrument makes sounds <BA> the <Object>?", [word, i.name],
                        at[0].name)


#: the question types in the order their questions are generated, each with its generator
QUESTION_KINDS: tuple = (
    (("Audio", "Counting"), _audio_counting),
    (("Audio", "Comparative"), _audio_comparative),
    (("Visual", "Counting"), _visual_counting),
    (("Visual", "Location"), _visual_location),
    (("Audio-Visual", "Existential"), _audio_visual_existential),
    (("Audio-Visual", "Counting"), _audio_visual_counting),
    (("Audio-Visual", "Location"), _audio_visual_location),
    (("Audio-Visual", "Comparative"), _audio_visual_comparative),
    (("Audio-Visual", "Temporal"), _audio_visual_temporal),
)


def scene_answers(scene: dict, instruments: list[str] | None = None) -> list[dict]:
    """Every question the templates ask about ``scene``, answered from the scene alone.

    ``instruments`` is the dataset's instrument set (names that may be asked about although
    absent from the scene); default: ``scene['palette']`` (written by the generator), else the
    scene's own instruments.
    Each item: ``{"type": [group, kind], "template", "templ_values", "question", "answer"}``.
    """
    facts = _facts(scene, instruments)
    out: list[dict] = []
    for kind, generate in QUESTION_KINDS:
        def ask(template: str, values: list[str], answer: str, kind=kind) -> None:
            out.append({"type": list(kind), "template": template, "templ_values": list(values),
                        "question": fill(template, values), "answer": answer})

        generate(facts, ask)
    return out


def type_name(kind: list[str] | tuple[str, str]) -> str:
    """'Audio/Counting' style name of a ``[group, kind]`` type."""
    return f"{kind[0]}/{kind[1]}"


def select_questions(candidates: list[list[dict]], per_video: int, seed: int) -> list[list[dict]]:
    """Pick up to ``per_video`` questions per video (each from a different type while there are
    types left), balancing over the whole dataset, video by video in order:

    1. the type asked least so far (among the types this video can answer),
    2. inside it, the answer least frequent so far for that type, then for that template,
    3. ties broken by a generator seeded with ``seed`` (deterministic).
    """
    rng = np.random.default_rng(seed)
    type_n: Counter = Counter()
    type_ans: dict[str, Counter] = {}
    tmpl_ans: dict[str, Counter] = {}
    chosen_all: list[list[dict]] = []
    for cands in candidates:
        seen_q: set[str] = set()
        pool = []
        for c in cands:
            if c["question"] not in seen_q:
                seen_q.add(c["question"])
                pool.append(c)
        order = rng.permutation(len(pool))
        pool = [pool[int(k)] for k in order]  # random tie-break order
        chosen: list[dict] = []
        used_types: set[str] = set()
        for _ in range(per_video):
            left = [c for c in pool if c not in chosen]
            if not left:
                break
            fresh = [c for c in left if type_name(c["type"]) not in used_types] or left
            tn = min({type_name(c["type"]) for c in fresh}, key=lambda n: (type_n[n], n))
            of_type = [c for c in fresh if type_name(c["type"]) == tn]
            ta = type_ans.setdefault(tn, Counter())
            best = min(of_type, key=lambda c: ta[c["answer"]] +
                       tmpl_ans.get(c["template"], Counter())[c["answer"]])
            chosen.append(best)
            used_types.add(tn)
            type_n[tn] += 1
            ta[best["answer"]] += 1
            tmpl_ans.setdefault(best["template"], Counter())[best["answer"]] += 1
        chosen_all.append(chosen)
    return chosen_all
