"""The ``import-features`` command's body: config, progress bar, summary and exit status."""
from __future__ import annotations

import logging

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from common.config import ConfigError
from common.device import DeviceError
from qa.annotations import AnnotationError
from store import StoreError

from .errors import ExtractError
from .importer import import_features, load_import_config
from .pipeline import print_summary
from .weights import WeightsError


def run_import(config: str | None, overrides: dict, strict: bool = False, quiet: bool = False) -> None:
    """Run an import for the CLI: errors are one line and exit 2; ``strict`` exits 1 on failures."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console()
    bar = Progress(TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=console, disable=quiet, transient=True)
    try:
        cfg = load_import_config(config, overrides)
        missing = [f"--{k}" for k in ("audio", "visual", "annotations") if not getattr(cfg, k)]
        if missing:
            raise ConfigError(f"{', '.join(missing)} required: the feature folders and the "
                              "annotations to import")
        with bar:
            task = bar.add_task("import", total=None)
            summary = import_features(cfg, progress=lambda d, n: bar.update(task, completed=d, total=n))
    except (ConfigError, ExtractError, WeightsError, AnnotationError, StoreError, DeviceError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    print_summary(summary, console)
    if strict and summary.failures:
        console.print(f"[red]--strict: {len(summary.failures)} file(s) failed[/red]")
        raise typer.Exit(1)
