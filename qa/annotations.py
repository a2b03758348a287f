"""Question-answer annotations of MUSIC-AVQA (original, corrected ``json_update``, v2.0) and AVQA.

:func:`load_annotations` reads annotation files into :class:`QARecord` objects plus the
:class:`Vocabulary` (answers, question types, type groups) their indices refer to; every problem
is an :class:`AnnotationError` naming the file, the record index and the field.  Formats are
registered :class:`DatasetFormat` classes.  The fields of each format and every decision taken
on the released files (question text, answer normalisation, vocabularies, derived ids,
duplicates, splits): docs/DATASETS.md.
"""
from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

from store.schema import check_video_id

log = logging.getLogger(__name__)

MUSIC_AVQA = "music-avqa"
AVQA = "avqa"
#: the built-in formats; :func:`dataset_names` lists every registered one
DATASETS = (MUSIC_AVQA, AVQA)

#: first id given to records without ``question_id`` (see :func:`derive_question_id`)
DERIVED_ID_BASE = 10**9

_SPLIT_WORDS = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                "test": "test"}
_SPLIT_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_QUESTION_MARKS = ("?", "\uff1f")


class AnnotationError(ValueError):
    """An annotation file, record or label is unusable; the message names file, record, field."""


class UnknownLabelError(AnnotationError, KeyError):
    """An answer or type that is not in the vocabulary (a ``KeyError`` as well)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# ---- records and vocabulary ------------------------------------------------------------------


@dataclass(frozen=True)
class QARecord:
    """One question.  ``answer_index`` indexes ``options`` when the record has options
    (multiple choice), else ``Vocabulary.answers``; -1 = unknown or unanswered."""

    question_id: int
    video_id: str
    text: str
    type_name: str
    type_index: int
    answer: str
    answer_index: int
    split: str
    dataset: str
    options: tuple[str, ...] = ()
    template: str = ""


@dataclass(frozen=True)
class Vocabulary:
    """Answer strings, question type names and type groups (``{"Audio": ("Audio/Counting",
    ...)}``; empty for AVQA) of one dataset.  Indices are positions in the tuples."""

    dataset: str
    answers: tuple[str, ...]
    types: tuple[str, ...]
    groups: dict[str, tuple[str, ...]]
    _answer_ix: dict[str, int] = field(init=False, repr=False, compare=False)
    _type_ix: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, items in (("answers", self.answers), ("types", self.types)):
            dup = [k for k, n in Counter(items).items() if n > 1]
            if dup:
                raise AnnotationError(f"{self.dataset} vocabulary: duplicate {name} {dup[:5]}")
        for group, members in self.groups.items():
            bad = [t for t in members if t not in self.types]
            if bad:
                raise AnnotationError(f"{self.dataset} vocabulary: group {group!r} names unknown "
                                      f"types {bad}")
        object.__setattr__(self, "_answer_ix", {a: i for i, a in enumerate(self.answers)})
        object.__setattr__(self, "_type_ix", {t: i for i, t in enumerate(self.types)})

    def answer_index(self, answer: str) -> int:
        """Index of ``answer`` (normalised first); :class:`UnknownLabelError` if absent."""
        key = normalize_answer(answer)
        try:
            return self._answer_ix[key]
        except KeyError:
            raise UnknownLabelError(f"answer {answer!r} is not in the {self.dataset} answer "
                                    f"vocabulary ({len(self.answers)} answers)") from None

    def to_attrs(self) -> dict:
        """The store attributes that hold this vocabulary (:meth:`from_attrs` reads them back)."""
        return {"dataset": self.dataset, "answer_vocab": list(self.answers),
                "type_names": list(self.types)}

    @classmethod
    def from_attrs(cls, attrs: dict) -> "Vocabulary":
        """The vocabulary a store holds; groups come from the ``"Group/Type"`` type names (none
        when the names have no group, as in AVQA)."""
        types = tuple(attrs["type_names"])
        groups: dict[str, list[str]] = {}
        for t in types:
            if "/" in t:
                groups.setdefault(t.split("/", 1)[0], []).append(t)
        return cls(dataset=str(attrs.get("dataset", "")), answers=tuple(attrs["answer_vocab"]),
                   types=types, groups={g: tuple(m) for g, m in groups.items()})

    def type_index(self, type_name: str) -> int:
        """Index of ``type_name``; :class:`UnknownLabelError` if absent."""
        try:
            return self._type_ix[type_name]
        except KeyError:
            raise UnknownLabelError(f"question type {type_name!r} is not one of the {self.dataset} "
                                    f"types {list(self.types)}") from None

    def group_of(self, type_name: str) -> str | None:
        """The group a type belongs to, or None."""
        for group, members in self.groups.items():
            if type_name in members:
                return group
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the store records it); inverse of :meth:`from_dict`."""
        return {"dataset": self.dataset, "answers": list(self.answers), "types": list(self.types),
                "groups": {g: list(m) for g, m in self.groups.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Vocabulary":
        try:
            return cls(dataset=str(data["dataset"]), answers=tuple(data["answers"]),
                       types=tuple(data["types"]),
                       groups={str(g): tuple(m) for g, m in dict(data.get("groups", {})).items()})
        except (KeyError, TypeError) as exc:
            raise AnnotationError(f"vocabulary: bad mapping ({exc!r})") from exc


def normalize_answer(answer: str) -> str:
    """Answer as compared and stored: runs of white space collapsed to one space, lower case."""
    return " ".join(str(answer).split()).lower()


def _package_vocab(name: str) -> dict[str, Any]:
    text = resources.files("qa.vocab").joinpath(name).read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=None)
def music_avqa_vocabulary() -> Vocabulary:
    """The 42 MUSIC-AVQA answers in the published index order, 9 types, 3 groups."""
    return Vocabulary.from_dict(_package_vocab("music_avqa.json"))


def avqa_vocabulary(answers: Iterable[str] = ()) -> Vocabulary:
    """AVQA's 8 question types, no groups; answers = sorted set of the normalised ``answers``."""
    data = _package_vocab("avqa.json")
    data["answers"] = sorted({normalize_answer(a) for a in answers})
    return Vocabulary.from_dict(data)


def vocabulary_for(dataset: str, answers: Iterable[str] | None = None) -> Vocabulary:
    """The vocabulary of ``dataset`` (a registered format: ``'music-avqa'``, ``'avqa'``, ...;
    ``_`` may stand for ``-``).  ``answers`` builds the AVQA answer list; MUSIC-AVQA's is fixed
    and takes none."""
    return get_format(dataset).vocabulary(answers)


# ---- the format registry ---------------------------------------------------------------------


class DatasetFormat:
    """One annotation format (a JSON list of records).  Subclass it, set the class attributes,
    implement :meth:`parse` and :meth:`vocabulary`, and decorate the class with
    :func:`register_format`."""

    #: the dataset name (``attrs['dataset']``, ``dataset=``): lower case, ``-`` between words
    name: str = ""
    #: the name in messages
    title: str = ""
    #: record keys that identify the format (what :meth:`detect` checks by default)
    keys: frozenset[str] = frozenset()
    #: the record fields that hold the question type and the answer (named in errors)
    type_field: str = "type"
    answer_field: str = "answer"

    def detect(self, record: Any) -> bool:
        """Does ``record`` (the first record of a file) look like this format?"""
        return isinstance(record, dict) and self.keys <= record.keys()

    def parse(self, record: dict, where: str) -> "ParsedRecord":
        """One record (``where`` names it in errors) before its labels are indexed."""
        raise NotImplementedError

    def vocabulary(self, answers: Iterable[str] | None = None) -> Vocabulary:
        """The vocabulary; ``answers`` for formats whose answer list is built from the data."""
        raise NotImplementedError

    def vocabulary_of(self, records: Sequence["ParsedRecord"]) -> Vocabulary:
        """The vocabulary of loaded records when none is given (default: the fixed one)."""
        return self.vocabulary()


_FORMATS: dict[str, DatasetFormat] = {}


def register_format(cls: type[DatasetFormat]) -> type[DatasetFormat]:
    """Class decorator: register (an instance of) ``cls``.  Formats are detected in
    registration order; a name registered again replaces the earlier format."""
    fmt = cls()
    if not fmt.name or fmt.name != fmt.name.strip().lower().replace("_", "-"):
        raise ValueError(f"{cls.__name__}.name must be lower case with '-' between words, "
                         f"got {fmt.name!r}")
    _FORMATS[fmt.name] = fmt
    return cls


def unregister_format(name: str) -> None:
    _FORMATS.pop(name, None)


def dataset_names() -> tuple[str, ...]:
    """Every registered format, in detection order."""
    return tuple(_FORMATS)


def stored_vocabulary(attrs: dict) -> Vocabulary | None:
    """The vocabulary a store's attributes hold; None for a store of no registered dataset."""
    return Vocabulary.from_attrs(attrs) if attrs.get("dataset") in dataset_names() else None


def _dataset_name(dataset: str) -> str:
    name = str(dataset).strip().lower().replace("_", "-")
    if name not in _FORMATS:
        raise AnnotationError(f"unknown dataset {dataset!r}; expected one of {list(_FORMATS)}")
    return name


def get_format(dataset: str) -> DatasetFormat:
    """The registered format ``dataset``; an :class:`AnnotationError` naming the registered
    ones otherwise."""
    return _FORMATS[_dataset_name(dataset)]


def _format_titles(joiner: str = " or ") -> str:
    titles = [f.title or f.name for f in _FORMATS.values()]
    return ", ".join(titles[:-1]) + joiner + titles[-1] if len(titles) > 1 else "".join(titles)


# ---- question text and ids -------------------------------------------------------------------


def fill_question(template: str, values: Sequence[str]) -> str:
    """Fill a MUSIC-AVQA template the way the published systems do (see the module docstring):
    strip trailing white space, split on single spaces, drop a final ``'?'``/``'？'``, replace
    every token containing ``'<'`` by the next value.  Returns the words joined by spaces.

    >>> fill_question("Where is the <FL> sounding instrument? ", ["first"])
    'Where is the first sounding instrument'
    """
    tokens = template.rstrip().split(" ")
    if tokens == [""]:
        raise AnnotationError("empty question template")
    if tokens[-1].endswith(_QUESTION_MARKS):
        tokens[-1] = tokens[-1][:-1]
    slots = [i for i, tok in enumerate(tokens) if "<" in tok]
    if len(slots) != len(values):
        raise AnnotationError(f"template {template!r} has {len(slots)} placeholder(s) but "
                              f"{len(values)} value(s) {list(values)}")
    for pos, value in zip(slots, values):
        tokens[pos] = str(value)
    return " ".join(tokens)


def derive_question_id(video_id: str, question_content: str, values: Sequence[str],
                       answer: str) -> int:
    """Stable id for a record without ``question_id`` (MUSIC-AVQA v2.0):
    ``10**9 + int(sha1(f"{video_id}|{question_content}|{json.dumps(list(values))}|{answer}")
    .hexdigest()[:7], 16)``, with the raw (unnormalised) strings of the record."""
    key = f"{video_id}|{question_content}|{json.dumps(list(values))}|{answer}"
    return DERIVED_ID_BASE + int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:7], 16)


# ---- files -----------------------------------------------------------------------------------


def detect_format(record: Any) -> str | None:
    """The name of the first registered format that ``record`` looks like, None when none."""
    return next((f.name for f in _FORMATS.values() if f.detect(record)), None)


def _failing_record(text: str) -> int | None:
    """For a JSON text that does not parse: the index of the top-level list element where
    parsing stops (None when the text is not a list).  The slow path, run only after an error."""
    dec = json.JSONDecoder()
    ws = re.compile(r"[ \t\n\r]*")
    i = ws.match(text, 0).end()
    if not text.startswith("[", i):
        return None
    i, k = i + 1, 0
    while True:
        i = ws.match(text, i).end()
        try:
            _, i = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            return k
        i = ws.match(text, i).end()
        if text.startswith(",", i):
            i, k = i + 1, k + 1
        else:
            return k + 1 if not text.startswith("]", i) else None


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        return json.loads(text)
    except json.JSONDecodeError as exc:
        k = _failing_record(text)
        where = f" in record {k}" if k is not None else ""
        raise AnnotationError(f"{path}: not valid JSON{where} (line {exc.lineno}, column "
                              f"{exc.colno}): {exc.msg}") from exc
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read: {exc}") from exc


def find_annotation_files(folder: str | os.PathLike) -> list[Path]:
    """The ``*.json`` files under ``folder`` (recursive, sorted) that are lists of records of a
    registered format (MUSIC-AVQA, AVQA, ...), judged by their first record.  Other JSON (label lists,
    vocabularies, unreadable files) is skipped; unreadable files are logged."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AnnotationError(f"{folder}: not a folder")
    found = []
    for path in sorted(folder.rglob("*.json")):
        try:
            data = _read_json(path)
        except AnnotationError as exc:
            log.warning("skipping %s", exc)
            continue
        if isinstance(data, list) and data and detect_format(data[0]) is not None:
            found.append(path)
    return found


def _expand_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            inside = find_annotation_files(p)
            if not inside:
                raise AnnotationError(f"{p}: no {_format_titles()} annotation files in this folder")
            files.extend(inside)
        elif p.is_file():
            files.append(p)
        else:
            raise AnnotationError(f"{p}: no such file or folder")
    if not files:
        raise AnnotationError("no annotation files given")
    seen: dict[Path, Path] = {}
    for f in files:
        real = f.resolve()
        if real in seen:
            raise AnnotationError(f"{f}: given twice (also as {seen[real]})")
        seen[real] = f
    return files


def split_from_name(path: str | os.PathLike) -> str:
    """``'train'``/``'val'``/``'test'`` from a file name such as ``avqa-test.json``."""
    words = {_SPLIT_WORDS[w] for w in re.split(r"[^a-z0-9]+", Path(path).stem.lower())
             if w in _SPLIT_WORDS}
    if len(words) != 1:
        why = "names no split" if not words else f"names several splits {sorted(words)}"
        raise AnnotationError(f"{path}: the file name {why} (train/val/test); pass split=")
    return words.pop()


# ---- record parsing --------------------------------------------------------------------------


@dataclass
class ParsedRecord:
    """A record before its labels are indexed (what :meth:`DatasetFormat.parse` returns)."""

    question_id: int
    derived_id: bool
    video_id: str
    text: str
    type_name: str
    answer: str | None  # normalised; None = unanswered
    option_index: int | None  # official AVQA: answer given as option index
    options: tuple[str, ...]
    template: str
    deleted: bool
    where: str


def _field(rec: dict, name: str, where: str, optional: bool = False) -> Any:
    if name not in rec or (optional and rec[name] is None):
        if optional:
            return None
        raise AnnotationError(f"{where}: missing field {name!r}")
    return rec[name]


def _bad(where: str, name: str, msg: str) -> AnnotationError:
    return AnnotationError(f"{where}: field {name!r}: {msg}")


def _text(rec: dict, name: str, where: str) -> str:
    value = _field(rec, name, where)
    if not isinstance(value, str) or not value.strip():
        raise _bad(where, name, f"expected a non-empty string, got {value!r}")
    return value


def _int_id(rec: dict, name: str, where: str, optional: bool = False) -> int | None:
    value = _field(rec, name, where, optional=optional)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(where, name, f"expected a non-negative integer, got {value!r}")
    return value


def _str_list(rec: dict, name: str, where: str) -> list[str]:
    value = _field(rec, name, where)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                raise _bad(where, name, f"not a JSON list: {rec[name]!r}") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(where, name, f"expected a list of strings, got {rec[name]!r}")
    return value


def _video_id(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str):
        raise _bad(where, name, f"expected a string, got {value!r}")
    try:
        return check_video_id(value)
    except ValueError as exc:
        raise _bad(where, name, str(exc)) from None


@register_format
class MusicAvqaFormat(DatasetFormat):
    """MUSIC-AVQA: template questions, a fixed answer list of 42, 9 types in 3 groups."""

    name, title, keys = MUSIC_AVQA, "MUSIC-AVQA", frozenset({"question_content", "anser"})
    type_field, answer_field = "type", "anser"

    def parse(self, record: dict, where: str) -> ParsedRecord:
        return _parse_music(record, where)

    def vocabulary(self, answers: Iterable[str] | None = None) -> Vocabulary:
        if answers is not None:
            raise AnnotationError("the MUSIC-AVQA answer vocabulary is fixed; do not pass answers")
        return music_avqa_vocabulary()


@register_format
class AvqaFormat(DatasetFormat):
    """AVQA: free-text questions with options; answers = the sorted set seen, 8 types."""

    name, title, keys = AVQA, "AVQA", frozenset({"question_text", "question_type"})
    type_field, answer_field = "question_type", "answer"

    def parse(self, record: dict, where: str) -> ParsedRecord:
        return _parse_avqa(record, where)

    def vocabulary(self, answers: Iterable[str] | None = None) -> Vocabulary:
        return avqa_vocabulary(answers or ())

    def vocabulary_of(self, records: Sequence[ParsedRecord]) -> Vocabulary:
        return self.vocabulary([a for p in records for a in ((p.answer,) if p.answer else ())
                                + p.options])


def _parse_music(rec: dict, where: str) -> ParsedRecord:
    video_id = _video_id(_field(rec, "video_id", where), where, "video_id")
    type_parts = _str_list(rec, "type", where)
    if len(type_parts) != 2:
        raise _bad(where, "type", f"expected [group, type], got {rec['type']!r}")
    content = _text(rec, "question_content", where)
    values = _str_list(rec, "templ_values", where)
    try:
        text = fill_question(content, values)
    except AnnotationError as exc:
        raise _bad(where, "templ_values", str(exc)) from None
    raw_answer = _field(rec, "anser", where, optional=True)
    if raw_answer is not None and not isinstance(raw_answer, str):
        raise _bad(where, "anser", f"expected a string, got {raw_answer!r}")
    deleted = _field(rec, "question_deleted", where, optional=True) or 0
    if deleted not in (0, 1):
        raise _bad(where, "question_deleted", f"expected 0 or 1, got {deleted!r}")
    qid = _int_id(rec, "question_id", where, optional=True)
    derived = qid is None
    if derived:
        qid = derive_question_id(video_id, content, values, "" if raw_answer is None else raw_answer)
    answer = None if raw_answer is None or not raw_answer.strip() else normalize_answer(raw_answer)
    return ParsedRecord(qid, derived, video_id, text, "/".join(type_parts), answer, None, (), content,
                   bool(deleted), where)


def _parse_avqa(rec: dict, where: str) -> ParsedRecord:
    qid = _int_id(rec, "id", where)
    name = _video_id(_field(rec, "video_name", where), where, "video_name")
    video_id = _video_id(os.path.splitext(name)[0], where, "video_name")
    question = _text(rec, "question_text", where)
    type_name = _text(rec, "question_type", where).strip()
    options: tuple[str, ...] = ()
    if rec.get("multi_choice") is not None:
        choices = rec["multi_choice"]
        if not isinstance(choices, list) or len(choices) < 2 \
                or not all(isinstance(c, str) and c.strip() for c in choices):
            raise _bad(where, "multi_choice", f"expected a list of >= 2 strings, got {choices!r}")
        options = tuple(normalize_answer(c) for c in choices)
    raw = _field(rec, "answer", where, optional=True)
    answer: str | None = None
    option_index = None
    if isinstance(raw, bool):
        raise _bad(where, "answer", f"expected a string or an option index, got {raw!r}")
    if isinstance(raw, int):
        if not options:
            raise _bad(where, "answer", f"an option index ({raw}) needs 'multi_choice'")
        if not 0 <= raw < len(options):
            raise _bad(where, "answer", f"option index {raw} outside 0..{len(options) - 1}")
        option_index, answer = raw, options[raw]
    elif isinstance(raw, str):
        answer = normalize_answer(raw) or None
    elif raw is not None:
        raise _bad(where, "answer", f"expected a string or an option index, got {raw!r}")
    return ParsedRecord(qid, False, video_id, " ".join(question.split()), type_name, answer,
                   option_index, options, question, False, where)


# ---- loading ---------------------------------------------------------------------------------


def _parse_file(path: Path, dataset: str | None) -> tuple[str | None, list[ParsedRecord]]:
    data = _read_json(path)
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    if not data:
        return None, []
    fmt = detect_format(data[0])
    if fmt is None:
        keys = sorted(data[0]) if isinstance(data[0], dict) else type(data[0]).__name__
        known = "; ".join(f"{f.title or f.name} ({', '.join(sorted(f.keys))})"
                          for f in _FORMATS.values())
        raise AnnotationError(f"{path}: record 0: not a record of a registered format [{known}]; "
                              f"keys: {keys}")
    if dataset is not None and fmt != dataset:
        raise AnnotationError(f"{path}: holds {fmt} records but dataset={dataset!r} was asked for")
    parse = _FORMATS[fmt].parse
    out = []
    for i, rec in enumerate(data):
        where = f"{path}: record {i}"
        if not isinstance(rec, dict):
            raise AnnotationError(f"{where}: expected an object, got {type(rec).__name__}")
        out.append(parse(rec, where))
    return fmt, out


def _resolve_duplicates(parsed: list[tuple[Path, ParsedRecord]],
                        policy: str) -> list[tuple[Path, ParsedRecord]]:
    first: dict[int, tuple[Path, ParsedRecord]] = {}
    drop: set[int] = set()
    for path, p in parsed:
        if p.question_id not in first:
            first[p.question_id] = (path, p)
            continue
        other_path, other = first[p.question_id]
        if p.derived_id or other.derived_id:
            raise AnnotationError(f"question id {p.question_id} (derived from the record's content) "
                                  f"collides: {other.where} and {p.where}")
        if other_path != path:
            raise AnnotationError(f"question id {p.question_id} occurs in two files: {other.where} "
                                  f"and {p.where}")
        if policy != "drop":
            raise AnnotationError(f"question id {p.question_id} occurs twice in one file: "
                                  f"{other.where} and {p.where}; pass duplicates='drop' to drop "
                                  "such ids")
        drop.add(p.question_id)
    if drop:
        kept = [(f, p) for f, p in parsed if p.question_id not in drop]
        log.warning("dropped %d records of %d question ids that occur more than once in one file",
                    len(parsed) - len(kept), len(drop))
        return kept
    return parsed


def load_annotations(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    split: str | None = None,
    keep_unknown: bool = False,
    dataset: str | None = None,
    *,
    vocabulary: Vocabulary | None = None,
    duplicates: Literal["error", "drop"] = "error",
    include_deleted: bool = False,
) -> tuple[list[QARecord], Vocabulary]:
    """Read annotation files (a file, a folder searched by :func:`find_annotation_files`, or a
    list of either) into records, in file order then record order, and their vocabulary.

    ``split`` overrides the split read from each file name; ``keep_unknown`` turns unknown
    answers/types into index -1 instead of an error; ``dataset`` (``'music-avqa'``/``'avqa'``)
    asserts the format, which is otherwise detected; ``vocabulary`` fixes the vocabulary (default:
    the package one for MUSIC-AVQA, built from the loaded answers for AVQA); ``duplicates`` and
    ``include_deleted`` are explained in the module docstring.
    """
    if duplicates not in ("error", "drop"):
        raise AnnotationError(f"duplicates must be 'error' or 'drop', got {duplicates!r}")
    if split is not None and not _SPLIT_RE.match(str(split)):
        raise AnnotationError(f"split {split!r}: use letters, digits, '_' or '-'")
    want = _dataset_name(dataset) if dataset is not None else None
    if vocabulary is not None:
        vocab_ds = _dataset_name(vocabulary.dataset)
        if want is not None and vocab_ds != want:
            raise AnnotationError(f"vocabulary is for {vocab_ds} but dataset={dataset!r}")
        want = vocab_ds
    parsed: list[tuple[Path, ParsedRecord]] = []
    splits: dict[Path, str] = {}
    fmt_of: dict[Path, str] = {}
    for path in _expand_paths(paths):
        fmt, records = _parse_file(path, want)
        if fmt is None:
            continue
        fmt_of[path] = fmt
        splits[path] = split if split is not None else split_from_name(path)
        parsed.extend((path, p) for p in records)
    formats = set(fmt_of.values())
    if len(formats) > 1:
        by = {f: next(p for p, g in fmt_of.items() if g == f) for f in formats}
        raise AnnotationError("cannot mix datasets in one load: " +
                              ", ".join(f"{f} in {p}" for f, p in sorted(by.items())))
    ds = want or (formats.pop() if formats else None)
    if ds is None:
        raise AnnotationError("the annotation files hold no records; pass dataset= to get an "
                              "empty result")
    deleted = [fp for fp in parsed if fp[1].deleted]
    if deleted and not include_deleted:
        log.warning("skipped %d records marked question_deleted=1", len(deleted))
        parsed = [fp for fp in parsed if not fp[1].deleted]
    parsed = _resolve_duplicates(parsed, duplicates)

    if vocabulary is None:
        vocabulary = _FORMATS[ds].vocabulary_of([p for _, p in parsed])
    return [_index(p, splits[path], ds, vocabulary, keep_unknown) for path, p in parsed], vocabulary


def _index(p: ParsedRecord, split: str, dataset: str, vocab: Vocabulary, keep_unknown: bool) -> QARecord:
    type_field, answer_field = _FORMATS[dataset].type_field, _FORMATS[dataset].answer_field
    try:
        type_index = vocab.type_index(p.type_name)
    except UnknownLabelError as exc:
        if not keep_unknown:
            raise UnknownLabelError(f"{p.where}: field {type_field!r}: {exc} "
                                    "(keep_unknown=True keeps it as -1)") from None
        type_index = -1
    answer_index = -1
    if p.option_index is not None:
        answer_index = p.option_index
    elif p.answer is not None:
        try:
            if p.options:
                if p.answer not in p.options:
                    raise UnknownLabelError(f"answer {p.answer!r} is not among the options "
                                            f"{list(p.options)}")
                answer_index = p.options.index(p.answer)
            else:
                answer_index = vocab.answer_index(p.answer)
        except UnknownLabelError as exc:
            if not keep_unknown:
                raise UnknownLabelError(f"{p.where}: field {answer_field!r}: {exc} "
                                        "(keep_unknown=True keeps it as -1)") from None
    return QARecord(question_id=p.question_id, video_id=p.video_id, text=p.text,
                    type_name=p.type_name, type_index=type_index, answer=p.answer or "",
                    answer_index=answer_index, split=split, dataset=dataset, options=p.options,
                    template=p.template)
