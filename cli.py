"""SHMamba AVQA command line.

Thin by design: each command parses its options, calls one library function and prints the
result.  Run ``python cli.py --help`` for the list of commands.
"""
from __future__ import annotations

import atexit
import dataclasses
import importlib
import inspect
import logging
import os
import sys
import typing

import typer

app = typer.Typer(
    name="shmamba",
    help=(
        "SHMamba for audio-visual question answering.\n\n"
        "Pipeline: `extract` videos + QA annotations into a sharded HDF5 feature store once, "
        "then `train` and `eval` many models quickly from that store."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: rich's option table cut long option names at 80 columns and gave
    # flags a <bool> metavar; defaults are written in the help texts, "(default X)"
    rich_markup_mode=None,
    context_settings={"show_default": False},
)
#: the line Ctrl-C prints (exit status 130); a command sets it once it knows how to go on
_interrupt_hint = ["interrupted"]


def on_interrupt(hint: str) -> None:
    _interrupt_hint[0] = hint


store_app = typer.Typer(help="Inspect and check a feature store (feats.h5 + feats.shards/).",
                        no_args_is_help=True, rich_markup_mode=None,
                        context_settings={"show_default": False})
app.add_typer(store_app, name="store")


# ---- store commands --------------------------------------------------------------------------
@store_app.command("info")
def store_info_cmd(
    path: str = typer.Argument(..., help="The store's entry file, e.g. features/feats.h5."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object instead of a table."),
) -> None:
    """Summarise a store: counts, dimensions, encoders, splits, failures, fingerprint."""
    import json

    from rich.console import Console
    from rich.table import Table

    from extract.pipeline import short_error
    from store import StoreError, store_info

    try:
        info = store_info(path)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    pending = info.pop("not_yet_indexed", None)
    table = Table(title=f"feature store {path}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in info.items():
        if key == "failures":
            value = f"{len(value)}" + "".join(f"\n{f['path']}: {short_error(f['path'], f['error'])}"
                                              for f in value[:10]) + \
                ("\n..." if len(value) > 10 else "")
        elif isinstance(value, dict):
            value = "\n".join(f"{k}: {json.dumps(v) if isinstance(v, dict) else v}" for k, v in value.items())
        table.add_row(key, str(value))
    Console().print(table)
    if pending:
        typer.echo(f"not in the index yet: {pending['shards']} complete shard(s) with "
                   f"{pending['videos']} videos, {pending['questions']} questions and "
                   f"{pending['failures']} failures (an extraction is running; if it was "
                   f"interrupted, its next run or python cli.py store reindex {path} adds them)")


@store_app.command("reindex")
def store_reindex_cmd(
    path: str = typer.Argument(..., help="The store's entry file, e.g. features/feats.h5."),
) -> None:
    """Rebuild the store's index (the entry file) from its complete shards."""
    from store import StoreError, StoreLock, rebuild_index
    from store.layout import complete_shards, shards_dir_of

    if not complete_shards(path):
        typer.echo(f"error: no complete shards in {shards_dir_of(path)}: nothing to index", err=True)
        raise typer.Exit(2)
    try:
        with StoreLock(path):
            counts = rebuild_index(path)
    except StoreError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(f"OK: {path}: indexed {counts['shards']} shards, {counts['videos']} videos, "
               f"{counts['questions']} questions")


@store_app.command("verify")
def store_verify_cmd(
    path: str = typer.Argument(..., help="The store's entry file, e.g. features/feats.h5."),
    quick: bool = typer.Option(False, "--quick", help="Compare shard sizes with the index only; skip sha256 "
                                                      "digests and per-block CRC32 checksums."),
) -> None:
    """Check a store against its index, schema and checksums; exit 1 if any problem is found."""
    from store import verify_store

    result = verify_store(path, quick=quick)
    for note in result.notes:
        typer.echo(f"note: {note}")
    for problem in result:
        typer.echo(f"PROBLEM: {problem}")
    c = result.counts
    if result:
        typer.echo(f"{len(result)} problem(s) in {path}", err=True)
        raise typer.Exit(1)
    typer.echo(f"OK: {path}: {c['shards']} shards, {c['videos']} videos, {c['questions']} questions "
               f"({'quick: sizes' if quick else 'full: sha256 + block checksums'})")



# ---- extraction commands ---------------------------------------------------------------------
#: option names that are not the field name with '-' for '_'
EXTRACT_FLAGS = {"T": ("--segments", "-T")}


def config_options(cls: type, flags: dict[str, tuple[str, ...]]) -> list[inspect.Parameter]:
    """One ``--option`` per field of config dataclass ``cls``, named and documented by the field
    (its ``#:`` comment), defaulting to None (= the config's value); booleans as --x/--no-x."""
    from common.config import field_docs

    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    params = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        kind = tp if tp in (bool, int, float) else str   # Literal fields: strings, checked by the config
        dash = f.name.replace("_", "-")
        names = flags.get(f.name) or ((f"--{dash}/--no-{dash}",) if kind is bool else (f"--{dash}",))
        doc = docs.get(f.name, f.name).replace("``", "")
        opt = typer.Option(None, *names, help=f"{doc[:1].upper()}{doc[1:]} (default "
                                              f"{_shown_default(f.default)}).")
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=opt,
                                        annotation=typing.Optional[kind]))
    return params


def _shown_default(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "none" if value in ("", None) else repr(value) if isinstance(value, str) else str(value)


def extract_cmd(config: str = typer.Option(None, "--config", help="TOML/YAML/JSON file with "
                                           "ExtractConfig fields; options given here override it."),
                set_: list[str] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                               help="Override any config field (JSON value); "
                                                    "repeatable; applied last."),
                quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
                **fields) -> None:
    """Extract VGGish + CLIP features of every video (and its questions) into a sharded feature
    store. Resumable: re-running skips videos already stored (changed files are re-extracted).
    Undecodable videos are recorded as failures and the run goes on. Every option is a field of
    ExtractConfig (extract/config.py)."""
    import logging

    from rich.console import Console

    from common.config import parse_set_options
    from extract.config import load_extract_config
    from extract.pipeline import extract, print_summary

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console()
    on_interrupt("interrupted: the shards written so far are kept; run the same command again "
                 "to resume")
    try:
        cfg = load_extract_config(config, {**fields, **parse_set_options(set_)})
        summary = extract(cfg, progress=not quiet, console=console)
    except _extract_errors() as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    print_summary(summary, console)
    failed = len(summary.failures) + len(summary.failed_before)
    if cfg.strict and failed:
        console.print(f"[red]--strict: {failed} video(s) failed[/red]")
        raise typer.Exit(1)


def _extract_errors() -> tuple[type[Exception], ...]:
    """Exceptions of extraction that are the user's input, printed without a traceback."""
    from common.config import ConfigError
    from common.device import DeviceError
    from extract.decode import DecodeError
    from extract.discover import DiscoveryError
    from extract.errors import ExtractError
    from extract.weights import WeightsError
    from qa.annotations import AnnotationError
    from store import StoreError

    return (ConfigError, ExtractError, DiscoveryError, WeightsError, AnnotationError, StoreError,
            DecodeError, DeviceError)


def _with_config_options(func, cls_path: str, flags: dict[str, tuple[str, ...]]):
    """``func`` with its ``**fields`` replaced by one option per field of the config class."""
    module, _, name = cls_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    sig = inspect.signature(func)
    own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    func.__signature__ = sig.replace(parameters=own + config_options(cls, flags))
    return func


app.command("extract")(_with_config_options(extract_cmd, "extract.config.ExtractConfig", EXTRACT_FLAGS))


@app.command("import-features")
def import_features_cmd(
    audio: str = typer.Option(None, "--audio", help="Folder of <video_id>.npy audio features "
                              "(MUSIC-AVQA release: VGGish [60, 128] float32)."),
    visual: str = typer.Option(None, "--visual", help="Folder of <video_id>.npy visual features "
                               "([T, 512] float32, T varying per video)."),
    annotations: str = typer.Option(None, "--annotations", help="Annotation file or folder "
                                    "(MUSIC-AVQA / AVQA JSON); its questions are CLIP-encoded."),
    out: str = typer.Option(None, "--out", help="Entry file of the new (or resumed) store."),
    visual_name: str = typer.Option(None, "--visual-name", help="Visual feature kind: resnet18 "
                                    "(default) or r2plus1d; recorded as imported:<name>."),
    segments: int = typer.Option(None, "--segments", "-T", help="Segments per video (default 60; "
                                 "longer features are truncated, shorter ones repeat their last row)."),
    clip_model: str = typer.Option(None, "--clip-model", help="open_clip model of the question "
                                   "text encoder (default ViT-B-32), as in `extract`."),
    clip_weights: str = typer.Option(None, "--clip-weights", help="CLIP weights, as in `extract`: "
                                     "'default', a tag, a local file, 'random' or 'random:<seed>'."),
    seed: int = typer.Option(None, "--seed", help="Seed for 'random' weights (default 0)."),
    text_len: int = typer.Option(None, "--text-len", help="Token positions stored per question (default 32)."),
    shard_size: int = typer.Option(None, "--shard-size", help="Videos per shard (default 64)."),
    device: str = typer.Option(None, "--device", help="Text encoder device: auto, cpu or cuda."),
    strict: bool = typer.Option(False, "--strict", help="Exit with status 1 when any file failed."),
    config: str = typer.Option(None, "--config", help="TOML/YAML/JSON file with ImportConfig "
                               "fields; options given here override it."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Import the per-video .npy features the MUSIC-AVQA authors published into a feature store
    that `train` and `eval` use as is. Bad files are recorded failures; re-running resumes."""
    from extract.importer_cli import run_import

    run_import(config, {"audio": audio, "visual": visual, "annotations": annotations, "out": out,
                        "visual_name": visual_name, "T": segments, "clip_model": clip_model,
                        "clip_weights": clip_weights, "seed": seed, "text_len": text_len,
                        "shard_size": shard_size, "device": device}, strict=strict, quiet=quiet)


@app.command("synth")
def synth_cmd(
    out: str = typer.Option(..., "--out", help="Output folder (new, empty, or an earlier synth output): "
                                               "videos/*.mp4, scenes.json, annotations/avqa-{train,val,test}.json."),
    videos: int = typer.Option(None, "--videos", help="Number of videos (default 300)."),
    seed: int = typer.Option(None, "--seed", help="Seed of scenes, questions and split (default 0)."),
    min_seconds: float = typer.Option(None, "--min-seconds", help="Shortest ordinary video in seconds (default 4)."),
    max_seconds: float = typer.Option(None, "--max-seconds", help="Longest ordinary video in seconds (default 20)."),
    long_fraction: float = typer.Option(None, "--long-fraction",
                                        help="Fraction of videos made 61-75 s long (at least one if > 0) (default 0.02)."),
    no_audio_fraction: float = typer.Option(None, "--no-audio-fraction",
                                            help="Fraction of videos without an audio track (at least one if > 0) "
                                                 "(default 0.08)."),
    size: list[str] = typer.Option(None, "--size", help="Frame size WxH to choose from; repeat for several "
                                                        "(default 176x144 256x144 320x180 144x256 240x180 480x270)."),
    fps: list[float] = typer.Option(None, "--fps", help="Frame rate to choose from; repeat for several "
                                                        "(default 8 10 12 15)."),
    instruments: str = typer.Option(None, "--instruments",
                                    help="Comma-separated instrument names from the MUSIC-AVQA answers "
                                         "(default violin,cello,piano,flute,drum,trumpet,accordion,guzheng)."),
    questions_per_video: int = typer.Option(None, "--questions-per-video", help="Questions per video (default 5)."),
    workers: int = typer.Option(None, "--workers", help="Processes writing videos (default -1: one per "
                                "usable CPU core; 0 = in this process)."),
    qa_format: str = typer.Option(None, "--format", help="Question format: 'music-avqa' (default; 9 "
                                  "types) or 'avqa' (multiple choice, 4 options, 6 of AVQA's 8 types)."),
    types: list[str] = typer.Option(None, "--type", help="Ask only this question type (repeatable; "
                                    "default all the format has), e.g. --type Which --type When."),
    config: str = typer.Option(None, "--config", help="TOML/YAML/JSON file with SynthConfig fields; options given "
                                                      "here override it."),
) -> None:
    """Write the synthetic demo dataset: real H.264 + AAC mp4 scenes of 1-4 'instruments' with
    MUSIC-AVQA-format (or, with --format avqa, AVQA multiple-choice) questions whose answers are
    computed from the scenes."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from synth.generate import SynthConfig, SynthError, synthesize
    from common.config import ConfigError, resolve

    overrides = {"n_videos": videos, "seed": seed, "min_seconds": min_seconds, "max_seconds": max_seconds,
                 "long_fraction": long_fraction, "no_audio_fraction": no_audio_fraction,
                 "sizes": list(size) if size else None, "fps": list(fps) if fps else None,
                 "instruments": instruments, "questions_per_video": questions_per_video, "workers": workers,
                 "format": qa_format, "types": list(types) if types else None}
    try:
        cfg = resolve(SynthConfig, config, overrides)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    with Progress(transient=True) as bar:
        task = bar.add_task("writing videos", total=None)
        try:
            summary = synthesize(out, config=cfg,
                                 progress=lambda done, total: bar.update(task, completed=done, total=total))
        except SynthError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
    table = Table(title=f"synthetic dataset {summary.out_dir}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for split in summary.videos_per_split:
        table.add_row(split, f"{summary.videos_per_split[split]} videos, "
                             f"{summary.questions_per_split[split]} questions")
    table.add_row("without audio", str(summary.n_without_audio))
    table.add_row("durations", f"{summary.min_duration:.1f}-{summary.max_duration:.1f} s "
                               f"({summary.total_video_seconds:.0f} s in all)")
    table.add_row("questions per type", ", ".join(f"{k} {v}" for k, v in sorted(summary.questions_per_type.items())))
    table.add_row("encoded now", f"{summary.n_written} videos, {summary.bytes_written / 1e6:.1f} MB "
                                 f"({summary.n_videos - summary.n_written} up to date)")
    table.add_row("time", f"{summary.wall_seconds:.1f} s")
    Console().print(table)



# ---- model commands --------------------------------------------------------------------------
@app.command("model")
def model_cmd(
    variant: str = typer.Option("shmamba", "--variant", help="Registered model variant to describe "
                                "(shmamba, euclidean, fixed-curvature, transformer, no-temporal, "
                                "concat-fusion, per-modality-mamba; default shmamba).", show_default=False),
    all_variants: bool = typer.Option(False, "--all", help="Describe every registered variant, one "
                                      "column each."),
    audio_dim: int = typer.Option(128, "--audio-dim", help="Audio embedding size of the store (default 128, VGGish).", show_default=False),
    visual_dim: int = typer.Option(512, "--visual-dim", help="Visual embedding size of the store (default 512, CLIP ViT-B/32).", show_default=False),
    text_dim: int = typer.Option(512, "--text-dim", help="Text embedding size of the store (default 512, CLIP ViT-B/32).", show_default=False),
    answers: int = typer.Option(42, "--answers", help="Answer vocabulary size (default 42, MUSIC-AVQA).", show_default=False),
    options: int = typer.Option(0, "--options", help="Options per question for multiple choice (AVQA: 4; default 0: none).", show_default=False),
    d_model: int = typer.Option(256, "--d-model", help="Model width (default 256).", show_default=False),
    layers: int = typer.Option(4, "--layers", help="Temporal blocks per modality (default 4).", show_default=False),
    markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table (for README/BENCHMARKS) "
                                  "instead of a rich table."),
) -> None:
    """Print the learnable parameters of a model variant per component and in total."""
    from rich.console import Console
    from rich.table import Table

    from model import VARIANTS, BackendUnavailable, ModelConfigError, build_model, count_parameters

    names = list(VARIANTS) if all_variants else [variant]
    dims = dict(audio_dim=audio_dim, visual_dim=visual_dim, text_dim=text_dim, n_answers=answers,
                n_options=options, d_model=d_model, n_layers=layers)
    try:
        models = {n: build_model(n, **dims) for n in names}
    except (ModelConfigError, BackendUnavailable) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    counts = {n: count_parameters(m) for n, m in models.items()}
    components = [c for c in dict.fromkeys(k for cnt in counts.values() for k in cnt) if c != "total"]
    backends = {n: m.backend or "-" for n, m in models.items()}
    title = (f"learnable parameters (audio {audio_dim}, visual {visual_dim}, text {text_dim}, "
             f"answers {answers}, options {options}, d_model {d_model}, layers {layers})")
    rows = [[c] + [f"{counts[n].get(c, 0):,}" for n in names] for c in components]
    rows.append(["total"] + [f"{counts[n]['total']:,}" for n in names])
    rows.append(["Mamba backend"] + [backends[n] for n in names])
    if markdown:
        typer.echo(f"{title}\n")
        typer.echo("| component | " + " | ".join(names) + " |")
        typer.echo("|---|" + "---:|" * len(names))
        for row in rows:
            cells = [f"**{x}**" if row[0] == "total" else x for x in row]
            typer.echo("| " + " | ".join(cells) + " |")
        return
    console = Console(width=max(100, 18 * (len(names) + 1)))
    console.print(title, highlight=False)
    table = Table()
    table.add_column("component", style="bold")
    for n in names:
        table.add_column(n, justify="right")
    for row in rows:
        table.add_row(*row, style="bold" if row[0] == "total" else None,
                      end_section=row[0] == components[-1] if components else False)
    console.print(table)



# ---- training / evaluation commands ----------------------------------------------------------
def _quiet_openmp_env() -> None:
    """Idle OpenMP threads sleep instead of spinning (read when torch loads: train/cpu.py)."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _train_errors():
    """Exceptions of train/eval that are the user's input, printed without a traceback."""
    from common.config import ConfigError
    from common.device import DeviceError
    from model import ModelConfigError
    from store.errors import StoreError
    from train import CheckpointError, DataError, RunError, ScoringError

    return (ConfigError, StoreError, CheckpointError, DataError, RunError, ScoringError,
            ModelConfigError, DeviceError)


@app.command("train")
def train_cmd(
    store: str = typer.Option(None, "--store", help="Feature store entry file (feats.h5) to train "
                              "from; on --resume, defaults to the run's store."),
    config: str = typer.Option(None, "--config", help="TOML/YAML/JSON file with TrainConfig fields "
                               "(model overrides in a 'model' table); options given here override it."),
    variant: str = typer.Option(None, "--variant", help="Model variant: shmamba, euclidean, "
                                "fixed-curvature, hyperbolic-features, transformer, no-temporal, "
                                "concat-fusion, per-modality-mamba (default shmamba)."),
    out: str = typer.Option(None, "--out", help="Folder of run directories and the 'latest' link "
                            "(default runs)."),
    name: str = typer.Option(None, "--name", help="Run directory name (default: a timestamp)."),
    epochs: int = typer.Option(None, "--epochs", help="Epochs to train (default 30)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Questions per global batch, all "
                                   "processes together (default 64)."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate (default 1e-4)."),
    seed: int = typer.Option(None, "--seed", help="Seed of weights, data order and dropout "
                             "(default 0)."),
    device: str = typer.Option(None, "--device", help="auto (CUDA if available), cpu, cuda or "
                               "cuda:N (default auto)."),
    resume: str = typer.Option(None, "--resume", help="Continue this run directory (or "
                               "runs/latest) from its last checkpoint, exactly; only runtime "
                               "settings may change."),
    set_: list[str] = typer.Option(None, "--set", help="Override any config field, KEY=VALUE "
                                   "(JSON value), e.g. --set model.d_model=128 --set "
                                   "align_weight=0.05; repeatable; applied last. "
                                   "--set compile=false skips torch.compile of the GPU step "
                                   "(on by default for runs of >= 2,500 steps; train/config.py)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar (log "
                                     "lines are still printed)."),
) -> None:
    """Train a model from a feature store into runs/<name>/ (DDP under torchrun)."""
    _quiet_openmp_env()
    from rich.console import Console

    from common.config import parse_set_options
    from train import RunInterrupted, prepare_config, train

    console = Console(stderr=True)
    on_interrupt("interrupted before the run started; nothing was written")
    try:
        overrides = {"store": store, "variant": variant, "out": out, "name": name,
                     "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                     "device": device, "progress": False if no_progress else None}
        overrides.update(parse_set_options(set_))
        cfg, _ = prepare_config(config, overrides, resume)
        result = train(cfg, resume=resume)
    except RunInterrupted as exc:
        on_interrupt(exc.hint)
        raise
    except _train_errors() as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    best = "-" if result.best_val is None else f"{result.best_val:.2f}"
    console.print(f"{result.stopped}: {result.epochs_done} epoch(s), {result.step} steps; best "
                  f"val {best} at epoch {result.best_epoch}; run {result.run_dir}", highlight=False,
                  soft_wrap=True)


@app.command("eval")
def eval_cmd(
    split: str = typer.Option("test", "--split", help="Store split to evaluate (default test).", show_default=False),
    run: str = typer.Option(None, "--run", help="Run directory (default: runs/latest)."),
    store: str = typer.Option(None, "--store", help="Store to evaluate on (default: the one the "
                              "run was trained on); its dims must match the checkpoint."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best, last, or a checkpoint "
                                   "folder (default best).", show_default=False),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (default auto).", show_default=False),
    batch_size: int = typer.Option(None, "--batch-size", help="Questions per prediction batch "
                                   "(default: the run's eval_batch_size)."),
    out: str = typer.Option("runs", "--out", help="Folder holding 'latest', used when --run is "
                            "not given (default runs).", show_default=False),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the PNG plots."),
) -> None:
    """Evaluate a run on a split: predictions, report (JSON + markdown table), plots."""
    _quiet_openmp_env()
    import warnings

    from rich.console import Console
    from rich.markdown import Markdown

    from train import StoreMismatchWarning, evaluate

    console = Console()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = evaluate(run, store, split, checkpoint, out=out, device=device,
                              batch_size=batch_size, plots=not no_plots)
    except _train_errors() as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    for w in caught:
        if isinstance(w.message, StoreMismatchWarning):
            console.print(f"[yellow]warning:[/yellow] {w.message}", highlight=False)
    console.print(Markdown(report["table"] or "(no answered questions to score)"))
    for key, path in report["files"].items():
        console.print(f"{key}: {path}", highlight=False, soft_wrap=True)



@app.command("ablate")
def ablate_cmd(
    store: str = typer.Option(..., "--store", help="Feature store entry file (feats.h5)."),
    variants: str = typer.Option("all", "--variants", help="'all' or comma-separated variant "
                                 "names, e.g. shmamba,euclidean (the first is the reference; "
                                 "default all).", show_default=False),
    seeds: int = typer.Option(3, "--seeds", help="Seeds per variant: seed, seed+1, ... (the "
                              "config's seed, default 0, is the first; default 3).",
                              show_default=False),
    epochs: int = typer.Option(None, "--epochs", help="Epochs per run (default: the config's, 30)."),
    out: str = typer.Option("runs/ablation", "--out", help="Folder of the run folders and the "
                            "tables; running again continues the unfinished runs (default "
                            "runs/ablation).", show_default=False),
    split: str = typer.Option("test", "--split", help="Split every run is scored on (default test).",
                              show_default=False),
    config: str = typer.Option(None, "--config", help="TOML/YAML/JSON file with TrainConfig "
                               "fields, as for train."),
    set_: list[str] = typer.Option(None, "--set", help="Override any config field, KEY=VALUE, "
                                   "as for train; repeatable."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Train and evaluate every variant x seed into one folder; write ablation.json/.md/.png."""
    from rich.console import Console
    from rich.markdown import Markdown

    from common.config import parse_set_options
    from train import load_train_config
    from train.ablate import AblationError, ablate, make_spec

    console = Console(stderr=True)
    try:
        overrides = {"store": store, "epochs": epochs, "device": device, "out": out}
        overrides.update(parse_set_options(set_))
        spec = make_spec(load_train_config(config, overrides), variants, seeds, out, split)
        result = ablate(spec, console, show=not no_progress)
    except (AblationError, *_train_errors()) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    Console().print(Markdown(result.markdown))
    console.print(f"{result.trained} run(s) trained now, {result.skipped} already finished; "
                  + ", ".join(f"{k}: {v}" for k, v in result.files.items()), highlight=False,
                  soft_wrap=True)


@app.command("ask")
def ask_cmd(
    video: str = typer.Argument(..., help="The video file (any format `extract` reads)."),
    question: str = typer.Argument(None, help="The question, e.g. \"How many instruments are sounding?\"."),
    more: list[str] = typer.Option(None, "--question", help="Another question about the same video "
                                   "(repeatable; the video is decoded once)."),
    run: str = typer.Option(None, "--run", help="Run directory (default: runs/latest)."),
    out: str = typer.Option("runs", "--out", help="Folder holding 'latest', used when --run is not "
                            "given (default runs).", show_default=False),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best, last, or a checkpoint folder "
                                   "(default best).", show_default=False),
    options: list[str] = typer.Option(None, "--options", help="Multiple-choice runs: the answer options "
                                      "as \"a|b|c|d\"; once for all questions or once per question."),
    top: int = typer.Option(5, "--top", help="Answers listed, most probable first (default 5).",
                            show_default=False),
    qtype: str = typer.Option(None, "--type", help="The question type, e.g. \"Audio-Visual/Temporal\" "
                              "(one of the store's types); shown with the answer."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per question (answer, top, "
                                 "curvature, audio_present, n_segments, seconds)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (default auto).",
                               show_default=False),
    clip_weights: str = typer.Option("", "--clip-weights", help="A CLIP weight file holding the "
                                     "store's weights, if not where the store recorded them.",
                                     show_default=False),
    vggish_weights: str = typer.Option("", "--vggish-weights", help="Likewise for VGGish.",
                                       show_default=False),
) -> None:
    """Answer questions about one video with a trained run: the video and questions are encoded
    exactly as the run's store was (same encoders and weights, else refused)."""
    from infer.ask import AskSettings
    from infer.ask_cli import run_ask

    settings = AskSettings(run=run, out=out, checkpoint=checkpoint, device=device, top=top,
                           clip_weights=clip_weights, vggish_weights=vggish_weights)
    run_ask(video, ([question] if question else []) + list(more or []), settings, options, qtype,
            as_json)


@app.command("score")
def score_cmd(
    annotations: str = typer.Option(..., "--annotations", help="Annotation file or folder of the "
                                    "questions that were answered (MUSIC-AVQA or AVQA JSON)."),
    predictions: str = typer.Option(..., "--predictions", help="JSON Lines file, one "
                                    '{"question_id": int, "answer": str|option index} per line.'),
    json_out: str | None = typer.Option(None, "--json-out", help="Write the report (and the "
                                        "baseline, if any) as JSON to this file."),
    split: str | None = typer.Option(None, "--split", help="Score only the questions of this "
                                     "split (train/val/test, read from the file names)."),
    train_annotations: str | None = typer.Option(None, "--train-annotations", help="Train "
                                                 "annotations: adds a per-type majority-answer "
                                                 "baseline column."),
    keep_unknown: bool = typer.Option(False, "--keep-unknown/--strict", help="Keep questions "
                                      "whose answer/type is outside the vocabulary (scored by "
                                      "answer text) instead of failing (default --strict).",
                                      show_default=False),
) -> None:
    """Score answer predictions: accuracy per question type, per group (pooled) and overall."""
    import json as _json

    from rich.console import Console
    from rich.markdown import Markdown

    from qa.annotations import AnnotationError, load_annotations
    from qa.scoring import (ScoringError, check_predictions, format_table, majority_baseline,
                               read_predictions, score)

    console = Console()
    try:
        records, vocab = load_annotations(annotations, keep_unknown=keep_unknown)
        everything = records
        if split is not None:
            records = [r for r in records if r.split == split]
            if not records:
                raise AnnotationError(f"{annotations}: no questions of split {split!r} (its "
                                      f"splits: {', '.join(sorted({r.split for r in everything}))})")
        preds = read_predictions(predictions)
        check_predictions(preds, records, everything, predictions)
        report = score(records, preds, vocab)
        baseline = None
        if train_annotations is not None:
            train, _ = load_annotations(train_annotations, keep_unknown=True,
                                        dataset=vocab.dataset, duplicates="drop",
                                        vocabulary=vocab)
            baseline = majority_baseline(train, records, vocab)
    except (AnnotationError, ScoringError) as exc:
        console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    console.print(Markdown(format_table(report, baseline, name="predictions",
                                        baseline_name="majority baseline")))
    if json_out is not None:
        out = dict(report)
        if baseline is not None:
            out["majority_baseline"] = baseline
        from pathlib import Path as _Path

        _Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        _Path(json_out).write_text(_json.dumps(out, indent=2) + "\n", encoding="utf-8")
        console.print(f"report written to {json_out}", highlight=False)



#: the status this process exits with, for :func:`_exit_without_teardown`
_exit_status = [0]


def _exit_without_teardown() -> None:
    """The last exit hook (registered first): every library's own hooks have run by now; skip
    the interpreter's teardown of torch's modules, ~1.2 s measured (docs/EXTRACTION.md)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed pipe (| head) has nothing left to flush
            pass
    os._exit(_exit_status[0])


def _status(exc: BaseException) -> int:
    if isinstance(exc, SystemExit):   # as Python maps it: None -> 0, a message -> 1
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return 130 if isinstance(exc, KeyboardInterrupt) else 1


def main() -> None:
    if os.environ.get("SHMAMBA_FULL_EXIT", "0") in ("0", ""):
        atexit.register(_exit_without_teardown)
    try:
        app()   # typer turns Ctrl-C (KeyboardInterrupt) into exit status 130, silently
    except BaseException as exc:
        _exit_status[0] = _status(exc)
        if _exit_status[0] == 130 and isinstance(exc, SystemExit):
            typer.echo(_interrupt_hint[0], err=True)
        raise


if __name__ == "__main__":
    main()
