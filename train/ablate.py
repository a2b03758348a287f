"""``ablate``: train every variant x seed into one folder, evaluate each on the test split, and
tabulate mean +- std over seeds.

Each run is a normal run folder (``<out>/<variant>-seed<seed>/``), trained by :func:`train.train`
and scored by :func:`train.evaluate` (the same code as ``train`` and ``eval``).  A run counts as
finished once its ``ablation_run.json`` exists (written after its evaluation).  Started again
with the same options, an ablation skips finished runs, resumes a run that has a checkpoint
(``--resume`` semantics: exact on the CPU) and restarts one killed before its first checkpoint.
``ablation_config.json`` records the base config and the store, so that a folder never mixes
runs of different settings.  Outputs: ``ablation.json``, ``ablation.md``, ``ablation.png``.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from common.files import write_json_atomic
from model import VARIANTS, SHMambaConfig, build_model, count_parameters

from .ablate_report import ablation_markdown
from .checkpoint import find_checkpoint
from .config import RUNTIME_FIELDS, TrainConfig, config_dict
from .data import open_store
from .evaluate import evaluate
from .loop import train
from .plots import plot_ablation
from .runs import CONFIG_FILE, STORE_FILE, read_json, read_metrics

ABLATION_CONFIG = "ablation_config.json"
RUN_RESULT = "ablation_run.json"
#: config fields that differ between the runs of one ablation (or only change how a run executes)
PER_RUN_FIELDS = frozenset({"variant", "seed", "name"}) | RUNTIME_FIELDS


class AblationError(ValueError):
    """The ablation cannot start: bad variants or seeds, no test split, or a folder of other settings."""


@dataclass
class AblationSpec:
    """What to run: variants x seeds from one base config, results into ``out``."""

    base: TrainConfig
    out: Path
    variants: list[str]
    seeds: list[int]
    split: str = "test"

    def run_dir(self, variant: str, seed: int) -> Path:
        return self.out / f"{variant}-seed{seed}"


def parse_variants(text: str) -> list[str]:
    """``all`` or comma-separated registered variant names, in the given order, without repeats."""
    names = list(VARIANTS) if text.strip() == "all" else \
        list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise AblationError(f"unknown variant(s) {unknown or [text]}; known: all or "
                            f"{', '.join(VARIANTS)}")
    return names


def make_spec(base: TrainConfig, variants: str, seeds: int, out: str | Path,
              split: str = "test") -> AblationSpec:
    """The spec for ``seeds`` seeds (base.seed, base.seed + 1, ...) of the named variants."""
    if seeds < 1:
        raise AblationError(f"--seeds must be >= 1, got {seeds}")
    return AblationSpec(base, Path(out), parse_variants(variants),
                        [base.seed + i for i in range(seeds)], split)


def _shared_config(cfg: TrainConfig) -> dict:
    return {k: v for k, v in config_dict(cfg).items() if k not in PER_RUN_FIELDS}


def check_folder(spec: AblationSpec) -> None:
    """Refuse a store without the test split, and a folder started with other settings;
    record the settings in a new folder."""
    store = open_store(spec.base.store)
    if len(store.split_rows(spec.split)) == 0:
        raise AblationError(f"store {spec.base.store} has no {spec.split!r} questions to score")
    want = {"config": _shared_config(spec.base), "store": store.identity()["fingerprint"],
            "split": spec.split}
    path = spec.out / ABLATION_CONFIG
    if path.is_file():
        have = read_json(path)
        diff = [f"{k}: folder has {have['config'].get(k)!r}, given {v!r}"
                for k, v in want["config"].items() if have["config"].get(k) != v]
        diff += [f"{k}: folder has {have.get(k)!r}, given {want[k]!r}"
                 for k in ("store", "split") if have.get(k) != want[k]]
        if diff:
            raise AblationError(f"{spec.out} holds an ablation with other settings ("
                                + "; ".join(diff) + "); use another --out or the same options")
        return
    spec.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, want)


def run_one(spec: AblationSpec, variant: str, seed: int,
            on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train (or resume, or restart) one run, evaluate it on the test split, record the result."""
    run_dir = spec.run_dir(variant, seed)
    cfg = dataclasses.replace(spec.base, variant=variant, seed=seed, out=str(spec.out),
                              name=run_dir.name, progress=False)
    resume = run_dir if (run_dir / CONFIG_FILE).is_file() and (run_dir / STORE_FILE).is_file() \
        else None
    if resume is None and run_dir.exists():
        shutil.rmtree(run_dir)   # killed before it wrote its config: nothing to keep
    result = train(cfg, resume=resume, on_epoch=on_epoch)
    report = evaluate(run_dir, split=spec.split, device=spec.base.device)
    meta = find_checkpoint(run_dir, "best").meta
    params = count_parameters(build_model(SHMambaConfig(**meta["model_config"])))["total"]
    record = {"variant": variant, "seed": seed, "run": str(run_dir), "overall": report["overall"],
              "groups": report.get("groups", {}), "types": report.get("types", {}),
              "count": report.get("count"), "parameters": params,
              "train_time_s": sum(float(r.get("time", 0.0)) for r in read_metrics(run_dir)),
              "epochs_done": result.epochs_done, "stopped": result.stopped,
              "best_epoch": result.best_epoch, "checkpoint": report.get("checkpoint")}
    write_json_atomic(run_dir / RUN_RESULT, record)
    return record


def finished(spec: AblationSpec, variant: str, seed: int) -> dict | None:
    path = spec.run_dir(variant, seed) / RUN_RESULT
    return read_json(path) if path.is_file() else None


def _mean_std(values: list[float | None]) -> dict:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    return {"mean": float(np.mean(vals)), "std": std, "n": len(vals)}


def summarize(spec: AblationSpec, records: list[dict]) -> dict:
    """Per variant: mean and sample std over seeds of overall, groups, types, time; parameters.
    Groups and types in the store's order."""
    types = list(open_store(spec.base.store).attrs["type_names"])
    groups = list(dict.fromkeys(t.split("/", 1)[0] for t in types if "/" in t))
    variants = {}
    for v in spec.variants:
        runs = [r for r in records if r["variant"] == v]
        if not runs:
            continue
        variants[v] = {
            "seeds": [r["seed"] for r in runs], "runs": [r["run"] for r in runs],
            "parameters": runs[0]["parameters"],
            "overall": _mean_std([r["overall"] for r in runs]),
            "groups": {g: _mean_std([r["groups"].get(g) for r in runs]) for g in groups
                       if any(g in r["groups"] for r in runs)},
            "types": {t: _mean_std([r["types"].get(t) for r in runs]) for t in types
                      if any(t in r["types"] for r in runs)},
            "train_time_s": _mean_std([r["train_time_s"] for r in runs]),
        }
    ref = spec.variants[0]
    overall = {v: [r["overall"] for r in records if r["variant"] == v and r["overall"] is not None]
               for v in variants}
    for v, s in variants.items():
        s["vs_reference"] = compare(overall[v], overall[ref]) \
            if ref in variants and v != ref else None
    # "order": the variants in the given order (the JSON file sorts its keys)
    return {"reference": ref, "order": list(variants), "split": spec.split, "store": spec.base.store,
            "epochs": spec.base.epochs, "seeds": spec.seeds, "variants": variants,
            "config": _shared_config(spec.base)}


def compare(a: list[float], b: list[float]) -> dict | None:
    """Difference of the means of two variants' per-seed values, and Welch's t-test of it:
    ``beyond_spread`` when p < 0.05 (two-sided).  None with fewer than 2 values on a side."""
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        return None
    diff = float(np.mean(a) - np.mean(b))
    p = float(ttest_ind(a, b, equal_var=False).pvalue)
    p = (0.0 if diff else 1.0) if math.isnan(p) else p   # no spread on either side
    return {"diff": diff, "p": p, "beyond_spread": p < 0.05}


@dataclass
class AblationResult:
    """What one ``ablate`` call did: the summary, runs trained now and runs found finished."""

    summary: dict
    trained: int
    skipped: int
    files: dict[str, str]
    markdown: str


def ablate(spec: AblationSpec, console: Console | None = None, show: bool = True) -> AblationResult:
    """Run every unfinished variant x seed of ``spec`` in order, then write the tables and plot."""
    console = console or Console(stderr=True, quiet=not show)
    check_folder(spec)
    plan = [(v, s) for v in spec.variants for s in spec.seeds]
    records, trained = [], 0
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not show) as bar:
        task = bar.add_task("ablation", total=len(plan), info="")
        for variant, seed in plan:
            record = finished(spec, variant, seed)
            if record is None:
                bar.update(task, description=f"{variant} seed {seed}", info="")

                def on_epoch(row: dict) -> None:
                    val = "-" if row.get("val_overall") is None else f"{row['val_overall']:.2f}"
                    bar.update(task, info=f"epoch {row['epoch']}/{spec.base.epochs}, val {val}")

                record = run_one(spec, variant, seed, on_epoch)
                trained += 1
                console.log(f"{variant} seed {seed}: test overall {record['overall']:.2f} "
                            f"({record['train_time_s']:.1f} s)")
            else:
                console.log(f"{variant} seed {seed}: already finished, not run again")
            records.append(record)
            bar.advance(task)
    summary = summarize(spec, records)
    files = write_outputs(spec.out, summary)
    return AblationResult(summary, trained, len(plan) - trained, files, ablation_markdown(summary))


def write_outputs(out: Path, summary: dict) -> dict[str, str]:
    """``ablation.json``, ``ablation.md`` and ``ablation.png`` in ``out``."""
    write_json_atomic(out / "ablation.json", summary)
    (out / "ablation.md").write_text(ablation_markdown(summary), encoding="utf-8")
    png = plot_ablation(summary, out / "ablation.png")
    return {"json": str(out / "ablation.json"), "markdown": str(out / "ablation.md"),
            "plot": str(png)}
