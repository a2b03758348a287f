"""Stage one: videos + annotations -> sharded feature store.  :func:`extract` is the entry point:
prepare the store under its lock, plan (resume: what is already there), start decoding, build
the encoders, then write failures, videos and questions into shards.  How a run goes, step by
step: docs/EXTRACTION.md."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from qa.annotations import find_annotation_files, load_annotations, stored_vocabulary, vocabulary_for
from store import FeatureStore, StoreLock, drop_videos, rebuild_index
from store.attrs import attr_differences
from store.index import read_shard_summary
from store.layout import complete_shards, temp_files
from store.lock import describe

from .ahead import DecodeAhead, clip_input_size, decode_window, resolve_workers, startup_window
from .config import LEGACY_AUDIO_READER, ExtractConfig
from .decode import DecodeSpec
from .discover import VIDEO_EXTENSIONS, VideoFile, discover_videos
from .encode import (EncodedVideo, encode_questions, encode_stream, options_count, random_weight_names,
                     store_attrs)
from .errors import ExtractError
from .shards import ChunkResult, ShardQueue, utf8, write_shard

if TYPE_CHECKING:  # torch is imported only when the encoders are built (after decoding started)
    from .encoders import Encoders

log = logging.getLogger(__name__)

@dataclass
class ExtractSummary:
    out: str
    videos_found: int = 0
    videos_skipped: int = 0          # already in the store, unchanged
    videos_changed: int = 0          # in the store but changed on disk: dropped, re-extracted
    videos_extracted: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)   # this run: (path, error)
    questions_found: int = 0
    questions_added: int = 0
    questions_skipped: int = 0       # already in the store
    questions_without_video: int = 0
    #: inputs whose failure an earlier run recorded and that did not change since: not retried
    failed_before: list[tuple[str, str]] = field(default_factory=list)
    shards_written: int = 0
    store_videos: int = 0
    store_questions: int = 0
    encoders: dict = field(default_factory=dict)
    random_weights: list[str] = field(default_factory=list)
    runner: str = "in-process"
    seconds: float = 0.0
    phases: dict = field(default_factory=dict)   # seconds since the start, by milestone

    @property
    def ok(self) -> bool:
        return not self.failures


#: videos in the first shard a run writes (later shards hold ``shard_size``)
FIRST_SHARD_VIDEOS = 8


class LocalRunner:
    """Runs the stages in this process: decoding ahead in worker processes, the encode stage
    (:func:`extract.encode.encode_stream`) on this process's encoders, shards written by a
    background thread.  :class:`extract.distributed.DaskRunner` has the same interface."""

    def __init__(self, cfg: ExtractConfig, enc: Encoders, decoder: DecodeAhead | None = None):
        self.cfg, self.enc = cfg, enc
        self.decoder = decoder   # already started over the videos of run_videos (else one is made)

    def describe(self) -> str:
        return "in-process"

    def run_videos(self, todo: Sequence[VideoFile], attrs: dict, entry: Path,
                   on_result: Callable[[ChunkResult], None],
                   on_video: Callable[[bool], None] = lambda failed: None) -> None:
        """Shards of ``shard_size`` videos (the run's first one smaller, so that progress shows on
        disk early) with the failures since the previous shard; ``on_video(failed)`` per video."""
        decoder = self.decoder or self._decoder(todo)
        writer = ShardQueue(entry, attrs, on_result)
        done: list[EncodedVideo] = []
        failures: list[tuple[str, str]] = []
        limit = min(self.cfg.shard_size, FIRST_SHARD_VIDEOS)
        try:
            for v, res in encode_stream(decoder, self.enc, self.cfg):
                if isinstance(res, str):
                    failures.append((v.path, res))
                else:
                    done.append(res)
                on_video(isinstance(res, str))
                if len(done) >= limit:
                    writer.submit(done[:limit], failures)
                    done, failures, limit = done[limit:], [], self.cfg.shard_size
            if done or failures:
                writer.submit(done, failures)
        finally:
            decoder.close()
            writer.close()

    def _decoder(self, todo: Sequence[VideoFile]) -> DecodeAhead:
        spec = DecodeSpec.from_config(self.cfg, self.enc.clip.image_size)
        workers = resolve_workers(self.cfg.workers)
        return DecodeAhead(todo, spec, workers, decode_window(self.cfg, workers))

    def run_questions(self, records: Sequence[Any], attrs: dict, entry: Path,
                      on_result: Callable[[ChunkResult], None]) -> None:
        k = int(attrs["n_options"])
        for lo in range(0, len(records), self.cfg.question_shard_size):
            chunk = records[lo:lo + self.cfg.question_shard_size]
            on_result(write_shard(entry, attrs, questions=encode_questions(chunk, self.enc, self.cfg, k)))

    def close(self) -> None:
        if self.decoder is not None:
            self.decoder.close()


# ---- the run ---------------------------------------------------------------------------------


def _load_records(cfg: ExtractConfig, store_vocab: Any = None) -> tuple[list, Any]:
    """Annotation records (filtered by split) and their vocabulary; ([], None) when none."""
    if cfg.annotations:
        paths: Any = cfg.annotations
    elif cfg.videos and Path(cfg.videos).is_dir():
        paths = find_annotation_files(cfg.videos)
        if not paths:
            return [], None
    else:
        return [], None
    kwargs: dict[str, Any] = {"keep_unknown": cfg.keep_unknown}
    if store_vocab is not None:
        kwargs["vocabulary"] = store_vocab
    records, vocab = load_annotations(paths, **kwargs)
    if cfg.split:
        records = [r for r in records if r.split == cfg.split]
    return records, vocab


#: extractor settings that change the video features without changing a store attribute
VIDEO_FEATURE_SETTINGS = ("sampling", "image_size", "audio_reader")
#: what a store made by ``extract`` before a setting existed was made with
SETTINGS_BEFORE = {"audio_reader": LEGACY_AUDIO_READER}


def _check_compatible(attrs: dict, existing: dict, entry: Path, questions_only: bool = False) -> None:

    was, now = existing.get("extractor_config") or {}, attrs.get("extractor_config") or {}
    if was and "imported" not in was:   # import-features records no extract settings
        was = {**SETTINGS_BEFORE, **was}
    for k in () if questions_only else VIDEO_FEATURE_SETTINGS:
        if k in was and k in now and was[k] != now[k]:   # stores of older versions lack some
            flag = k.replace("_", "-")
            raise ExtractError(f"the store {entry} was made with different settings: "
                               f"--{flag} is {was[k]!r} there but {now[k]!r} now; pass --{flag} "
                               f"{was[k]} (or --set {k}={was[k]}) to extend it, or write a new "
                               "store with --out")
    diff = attr_differences(attrs, existing)
    if diff:
        k = diff[0]
        raise ExtractError(
            f"the store {entry} was made with different settings: {k!r} is "
            f"{existing.get(k)!r} there but {attrs.get(k)!r} now"
            + (f" (also differ: {diff[1:]})" if len(diff) > 1 else "")
            + "; use the store's settings or write a new store with --out")
    made_at, now_at = was.get("compute_precision"), now.get("compute_precision")
    if made_at and now_at and made_at != now_at:   # rounding-level differences: warn, not refuse
        log.warning("the store %s was made at %s precision but this run computes at %s; extending "
                    "it anyway (the features differ at rounding level, not in kind); pass "
                    "--precision %s to match the store", entry, made_at, now_at, made_at)


def recorded_failures(entry: Path) -> dict[str, tuple[str, float]]:
    """Input path -> (error, when it was last recorded: the mtime of the newest shard holding
    that failure), from every complete shard of the store."""

    known: dict[str, tuple[str, float]] = {}
    for shard in complete_shards(entry):
        s = read_shard_summary(shard)
        when = shard.stat().st_mtime
        for p, e in zip(s.failure_path.tolist(), s.failure_error.tolist()):
            if when >= known.get(p, ("", -1.0))[1]:
                known[p] = (e, when)
    return known


def _failed_before(path: str, mtime: float, known: dict, summary: ExtractSummary) -> bool:
    """Whether ``path`` failed in an earlier run and was not modified since (then it is neither
    decoded nor recorded again; a file changed after its failure is tried again)."""
    hit = known.get(utf8(path))
    if hit is None or mtime > hit[1]:
        return False
    summary.failed_before.append((path, hit[0]))
    return True


def _not_failed_before(rejected: list[tuple[str, str]], known: dict,
                       summary: ExtractSummary) -> list[tuple[str, str]]:
    """The files that cannot be inputs, less those an earlier run recorded with the same reason."""
    out = []
    for path, err in rejected:
        if known.get(utf8(path), ("",))[0] == utf8(err):
            summary.failed_before.append((path, err))
        else:
            out.append((path, err))
    return out


def _check_something_to_do(cfg: ExtractConfig, entry: Path, inputs: bool, records: list,
                           existing_attrs: dict | None) -> None:
    """ExtractError when the run could write nothing: questions without any video (no video
    inputs and no store; or, with ``questions_only``, none of their videos in the store)."""

    if not cfg.questions_only and not inputs and existing_attrs is None:
        raise ExtractError(f"nothing to extract: no videos ({', '.join(VIDEO_EXTENSIONS)}) under "
                           f"{cfg.videos} and no store at {entry} for the {len(records)} "
                           "question(s) of the annotations; check the --videos folder")
    if cfg.questions_only and records:
        with FeatureStore(entry) as fs:
            in_store, have = set(fs.video_ids.tolist()), set(fs.question_ids.tolist())
        if not any(r.video_id in in_store or r.question_id in have for r in records):
            raise ExtractError(f"--questions-only: none of the {len(records)} question(s) is about "
                               f"one of the {len(in_store)} videos in {entry}; extract their "
                               "videos first (or check --annotations and --split)")


class _Progress:
    """A rich progress bar (videos/s, ETA, failures) on a terminal; when the output is a file
    or a pipe, a log line at every 10 % of the videos and at least every :data:`LOG_SECONDS`
    (a bar would show nothing before the end there); or nothing."""

    def __init__(self, enabled: bool, console: Any = None):
        self.enabled = enabled
        self.bar = None
        self.task = None
        self.failures = 0
        self.console = console
        self.lines = False
        if enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn)

            self.console = console or Console()
            self.lines = not self.console.is_terminal
            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]} videos/s"),
                                TextColumn("ETA {task.fields[eta]}"),
                                TextColumn("elapsed"), TimeElapsedColumn(),
                                TextColumn("[red]{task.fields[failures]} failed"),
                                console=self.console, transient=False, disable=self.lines)

    def start(self, total: int, what: str = "extracting") -> None:
        if self.bar is not None:
            self.bar.start()
            self.t0 = self.logged_at = time.monotonic()
            self.total, self.what, self.logged_tenth = total, what, 0
            self.task = self.bar.add_task(what, total=total, rate="-", eta="-", failures=0)

    def advance(self, failed: bool = False) -> None:
        if self.bar is None:
            return
        self.failures += int(failed)
        self.bar.advance(self.task)
        done = int(self.bar.tasks[0].completed)
        now = time.monotonic()
        if done == 1:
            self.first = now
        # the mean rate since the first video (which may have been decoded while the encoders
        # loaded, and failures are instant): rich's recent-window estimate swings early on
        rate = (done - 1) / (now - self.first) if done > 1 and now > self.first else 0.0
        eta = _clock((self.total - done) / rate) if rate else "-"
        self.bar.update(self.task, rate=f"{rate:.2f}" if rate else "-", eta=eta,
                        failures=self.failures)
        tenth = done * 10 // max(self.total, 1)
        if self.lines and (tenth > self.logged_tenth or now - self.logged_at >= LOG_SECONDS):
            self.logged_tenth, self.logged_at = tenth, now
            speed = f"{rate:.2f}" if rate else "-"
            self.console.print(f"{self.what}: {done}/{self.total} videos, {self.failures} failed, "
                               f"{speed} videos/s, ETA {eta}, elapsed {_clock(now - self.t0)}",
                               highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


#: seconds between progress lines when the output is not a terminal
LOG_SECONDS = 30.0


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@dataclass
class _Plan:
    """What a run will do, worked out before the store is changed."""

    existing: dict | None                     # the store's attributes, None for a new store
    records: list                             # annotation records (questions)
    vocab: Any
    n_options: int
    rejected: list[tuple[str, str]]           # inputs that cannot be videos: recorded failures
    todo: list[VideoFile] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)   # in the store, changed on disk


def extract(cfg: ExtractConfig, progress: bool = True, console: Any = None) -> ExtractSummary:
    """Run stage one for ``cfg`` (see the module doc); returns what was done."""
    t0 = time.monotonic()
    entry = Path(cfg.out)
    summary = ExtractSummary(out=str(entry))
    if not cfg.questions_only and not cfg.videos:
        raise ExtractError("--videos is required (or use --questions-only with an existing store)")
    if cfg.questions_only and not cfg.annotations and not cfg.videos:
        raise ExtractError("--questions-only needs --annotations (or --videos holding annotation files)")
    entry.parent.mkdir(parents=True, exist_ok=True)
    with StoreLock(entry) as lock:
        existing = _prepare_store(entry, lock)
        plan = _plan(cfg, entry, existing, summary)
        decoder = _start_decoding(cfg, plan.todo)
        try:
            enc, attrs = _encoders(cfg, plan, entry, summary, t0)
            if decoder is not None and decoder.spec.image_size != enc.clip.image_size:
                decoder.close()          # the model's input size was not the one looked up
                decoder = None
        except BaseException:
            if decoder is not None:
                decoder.close()
            raise
        if plan.changed:
            log.info("%d input videos changed since extraction; re-extracting them", len(plan.changed))
            drop_videos(entry, plan.changed)
        summary.videos_changed = len(plan.changed)
        _write(cfg, entry, plan, enc, attrs, decoder, summary, _Progress(progress, console), t0)
        if entry.exists():
            with FeatureStore(entry) as fs:
                summary.store_videos, summary.store_questions = fs.n_videos, fs.n_questions
    summary.seconds = time.monotonic() - t0
    return summary


def _prepare_store(entry: Path, lock: StoreLock) -> dict | None:
    """Under the lock: clear temp files of crashed writers, re-index, return the attributes of
    the store (None if there is none yet)."""
    if lock.took_over is not None:
        log.warning("took over the store lock left by %s (that process is gone)",
                    describe(lock.took_over))
    for t in temp_files(entry):     # we hold the lock: no writer of ours is running
        t.unlink(missing_ok=True)
    if complete_shards(entry):
        rebuild_index(entry)
    if not entry.exists():
        return None
    with FeatureStore(entry) as fs:
        return dict(fs.attrs)


def _plan(cfg: ExtractConfig, entry: Path, existing: dict | None, summary: ExtractSummary) -> _Plan:
    """Inputs, questions and vocabulary; which videos to extract (resume: unchanged videos in the
    store and unchanged failures of earlier runs are skipped).  The store is not changed."""
    if cfg.questions_only and existing is None:
        raise ExtractError(f"--questions-only: no store at {entry}; extract the videos first")
    videos: list[VideoFile] = []
    rejected: list[tuple[str, str]] = []
    if not cfg.questions_only:
        videos = discover_videos(cfg.videos, rejected)
    summary.videos_found = len(videos) + len(rejected)
    store_vocab = stored_vocabulary(existing) if existing else None
    records, vocab = _load_records(cfg, store_vocab)
    vocab = next((v for v in (vocab, store_vocab) if v is not None), None) or vocabulary_for(cfg.dataset)
    summary.questions_found = len(records)
    if not videos and not rejected and not records:
        what = f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under {cfg.videos}" \
            if not cfg.questions_only else "no questions in the annotations"
        raise ExtractError(f"nothing to extract: {what}" + ("" if cfg.questions_only else
                           " and no annotation files; check the --videos folder"))
    _check_something_to_do(cfg, entry, bool(videos or rejected), records, existing)
    n_options = options_count(records) if records else \
        int(existing["n_options"]) if existing else 0
    have: dict[str, tuple[int, float]] = {}
    if existing is not None:
        with FeatureStore(entry) as fs:
            have = fs.source_index()
    known = recorded_failures(entry) if existing is not None else {}
    plan = _Plan(existing, records, vocab, n_options, _not_failed_before(rejected, known, summary))
    for v in videos:
        if v.video_id not in have and _failed_before(v.path, v.mtime, known, summary):
            continue
        if v.video_id in have:
            if have[v.video_id] == (v.size, v.mtime):
                summary.videos_skipped += 1
                continue
            plan.changed.append(v.video_id)
        plan.todo.append(v)
    return plan


def _start_decoding(cfg: ExtractConfig, todo: list[VideoFile]) -> DecodeAhead | None:
    """Decoding started now runs while the encoders load (torch, weights, CUDA): in-process
    runs whose CLIP input size is known without the model."""
    if not todo or cfg.scheduler or cfg.dask_workers:
        return None
    size = cfg.image_size or clip_input_size(cfg.clip_model)
    workers = resolve_workers(cfg.workers)
    if not size or workers <= 0:
        return None
    spec = DecodeSpec.from_config(cfg, int(size))
    return DecodeAhead(todo, spec, workers, decode_window(cfg, workers),
                       startup_window=startup_window(cfg, workers, size)).start()


def _encoders(cfg: ExtractConfig, plan: _Plan, entry: Path, summary: ExtractSummary,
              t0: float) -> tuple[Any, dict]:
    """The encoders and the store attributes they give; an existing store must agree."""
    from .warmup import start_warmup  # imports torch: after decoding has started

    warmup = start_warmup(cfg.device, cfg.precision, cfg.clip_model)
    from .encoders import get_encoders  # open_clip: while the GPU warms up

    try:
        enc = get_encoders(cfg, audio=not cfg.questions_only)
    finally:
        if warmup is not None:
            warmup.join()
    summary.phases["encoders ready"] = time.monotonic() - t0
    attrs = store_attrs(cfg, enc, plan.vocab, plan.n_options)
    if cfg.questions_only:
        attrs["encoders"] = dict(attrs["encoders"], audio=plan.existing["encoders"]["audio"])
    if plan.existing is not None:
        _check_compatible(attrs, plan.existing, entry, cfg.questions_only)
    summary.encoders = attrs["encoders"]
    summary.random_weights = random_weight_names(attrs["encoders"])
    return enc, attrs


def _write(cfg: ExtractConfig, entry: Path, plan: _Plan, enc: Any, attrs: dict,
           decoder: DecodeAhead | None, summary: ExtractSummary, bar: "_Progress", t0: float) -> None:
    """Failures of unusable inputs, then the videos, then their questions, into shards."""
    def on_result(r: ChunkResult) -> None:
        if r.shard is not None:
            summary.shards_written += 1
        summary.videos_extracted += r.videos
        summary.questions_added += r.questions
        summary.failures.extend(r.failures)

    runner: Any = None
    try:
        if plan.rejected:
            on_result(write_shard(entry, attrs, failures=plan.rejected))
        if cfg.scheduler or cfg.dask_workers:
            from .distributed import DaskRunner  # imports torch (the encoders): only for dask runs

            runner = DaskRunner(cfg)
        else:
            runner = LocalRunner(cfg, enc, decoder)
        summary.runner = runner.describe()
        if plan.todo:
            bar.start(len(plan.todo), "extracting")
            runner.run_videos(plan.todo, attrs, entry, on_result, on_video=bar.advance)
            bar.stop()
            summary.phases["videos done"] = time.monotonic() - t0
        if complete_shards(entry):
            rebuild_index(entry)
        if plan.records:
            _write_questions(entry, plan.records, attrs, runner, summary, on_result)
    finally:
        bar.stop()
        if decoder is not None:
            decoder.close()
        if runner is not None:
            runner.close()


def pending_questions(entry: Path, records: list, summary: ExtractSummary) -> list:
    """The records whose video is in the store at ``entry`` and whose id is not there yet; the
    others are counted in ``summary`` (already stored / no video)."""
    in_store: set[str] = set()
    have_q: set[int] = set()
    if entry.exists():
        with FeatureStore(entry) as fs:
            in_store = set(fs.video_ids.tolist())
            have_q = set(fs.question_ids.tolist())
    pending = []
    for r in records:
        if r.question_id in have_q:
            summary.questions_skipped += 1
        elif r.video_id in in_store:
            pending.append(r)
        else:
            summary.questions_without_video += 1
    return pending


def _write_questions(entry: Path, records: list, attrs: dict, runner: Any, summary: ExtractSummary,
                     on_result: Callable[[ChunkResult], None]) -> None:
    """Questions whose video is in the store and that are not there yet."""
    pending = pending_questions(entry, records, summary)
    if summary.questions_without_video:
        log.warning("%d questions are about videos that are not in the store (missing or failed); "
                    "they were not written", summary.questions_without_video)
    if pending:
        runner.run_questions(pending, attrs, entry, on_result)
        rebuild_index(entry)


def print_summary(summary: ExtractSummary, console: Any = None) -> None:
    """A rich summary: counts, weight identities (random weights said plainly), failures."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title=f"extract -> {summary.out}", show_header=False)
    t.add_column("what")
    t.add_column("value", overflow="fold")
    rows = [
        ("videos found", summary.videos_found),
        ("videos extracted now", summary.videos_extracted),
        ("videos skipped (already in the store)", summary.videos_skipped),
        ("videos changed on disk (re-extracted)", summary.videos_changed),
        ("failures", len(summary.failures)),
        ("failed in an earlier run, unchanged (not retried)", len(summary.failed_before)),
        ("questions in the annotations", summary.questions_found),
        ("questions added", summary.questions_added),
        ("questions skipped (already in the store)", summary.questions_skipped),
        ("questions without a video in the store (not written)", summary.questions_without_video),
        ("shards written", summary.shards_written),
        ("store now holds", f"{summary.store_videos} videos, {summary.store_questions} questions"),
        ("runner", summary.runner),
        ("seconds", f"{summary.seconds:.1f}" + ("" if not summary.phases else " (" + ", ".join(
            f"{k} at {v:.1f}" for k, v in summary.phases.items()) + ")")),
    ]
    for k, v in summary.encoders.items():
        rows.append((f"{k} encoder", f"{v.get('name')} weights={v.get('weights')}"))
    for k, v in rows:
        t.add_row(str(k), str(v))
    console.print(t)
    if summary.random_weights:
        console.print("[bold yellow]RANDOM WEIGHTS:[/] " + ", ".join(summary.random_weights)
                      + " — these features are for tests and demos, not for real results.")
    failed = [(p, e, "") for p, e in summary.failures] + \
        [(p, e, " (earlier run)") for p, e in summary.failed_before]
    if failed:
        ft = Table(title=f"{len(failed)} video(s) could not be used (recorded in the store)")
        ft.add_column("path", overflow="fold")
        ft.add_column("error", overflow="fold")
        for p, e, when in failed:
            ft.add_row(p, short_error(p, e) + when)
        console.print(ft)


def short_error(path: str, error: str) -> str:
    """A failure's reason without the path the row already shows (decode errors start with it
    and decord repeats it at the end)."""
    for text in (str(path), utf8(path)):
        error = error.removeprefix(f"{text}: ").replace(f": '{text}'", "")
    return error
