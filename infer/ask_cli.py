"""The ``ask`` command's body: options -> :func:`train.ask.Asker`, answers as a table or JSON."""
from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from common.config import ConfigError
from store import StoreError

from train.checkpoint import CheckpointError
from train.data import DataError
from train.runs import RunError

from .ask import Answer, Asker, AskError, AskSettings


def split_options(options: list[str] | None, n_questions: int) -> list[list[str]] | None:
    """``--options "a|b|c|d"`` given once (for every question) or once per question."""
    if not options:
        return None
    if len(options) not in (1, n_questions):
        raise AskError(f"--options given {len(options)} times for {n_questions} questions: give "
                       "it once (for all) or once per question")
    sets = [[o.strip() for o in s.split("|")] for s in options]
    return sets * n_questions if len(sets) == 1 else sets


def print_answers(answers: list[Answer], video: str, console: Console) -> None:
    first = answers[0]
    curv = "-" if first.curvature is None else f"{first.curvature:.4f}"
    console.print(f"[bold]{video}[/bold]: {first.seconds:.1f} s, {first.n_segments} segments, "
                  f"audio {'yes' if first.audio_present else 'no (no audio track)'}, curvature {curv}",
                  highlight=False, soft_wrap=True)
    for a in answers:
        console.print(f"[bold]Q:[/bold] {a.question}" + (f"  [dim]({a.type})[/dim]" if a.type else ""),
                      highlight=False, soft_wrap=True)
        t = Table()
        t.add_column("answer")
        t.add_column("p", justify="right")
        for row in a.top:
            t.add_row(row["answer"], f"{row['p']:.3f}", style="bold" if row is a.top[0] else None)
        console.print(t)
    timing = ", ".join(f"{k} {v:.2f} s" for k, v in first.timing.items())
    console.print(f"time: {timing}", highlight=False)


def run_ask(video: str, questions: list[str], settings: AskSettings, options: list[str] | None,
            qtype: str | None, as_json: bool) -> None:
    """Answer the questions; errors are one line with exit status 2."""
    console = Console(stderr=as_json)
    try:
        if not questions:
            raise AskError("no question: give QUESTION or --question")
        asker = Asker(settings)
        answers = asker.ask(asker.video(video), questions, split_options(options, len(questions)),
                            qtype)
    except (AskError, CheckpointError, DataError, RunError, StoreError, ConfigError,
            FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if as_json:
        for a in answers:
            typer.echo(json.dumps(a.to_json()))
    else:
        print_answers(answers, video, console)
