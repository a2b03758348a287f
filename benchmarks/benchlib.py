"""Small shared helpers for the benchmark scripts: device choice, timing, table printing."""
from __future__ import annotations

import json
import platform
import sys
import time
import contextlib
from contextlib import contextmanager
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.device import resolve_device as pick_device  # noqa: E402,F401  (the project's one device helper)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def timed(device: torch.device, out: dict, key: str):
    sync(device)
    t = time.perf_counter()
    yield
    sync(device)
    out[key] = time.perf_counter() - t


def print_table(title: str, columns: list[str], rows: list[list], json_out: str | None = None,
                meta: dict | None = None) -> None:
    """Print a rich table (and a markdown copy for BENCHMARKS.md); optionally dump JSON."""
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[str(x) for x in r])
    console = Console(width=160)
    console.print(table)
    md = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    console.print("\n".join(md), markup=False, highlight=False)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps({"title": title, "columns": columns, "rows": rows,
                                              "meta": meta or {}}, indent=1))


def refuse_compile_with_autocast(ap, compile: str, amp: str, device: torch.device) -> None:
    """As ``train`` does: a compiled model only in float32 (train/config.py, COMPILE_NEEDS_FP32)."""
    from train.config import COMPILE_NEEDS_FP32
    from train.step import graph_autocast

    if compile not in ("none", "regions") and graph_autocast(device, amp) is not contextlib.nullcontext:
        ap.error(COMPILE_NEEDS_FP32.replace("amp = off", "--amp off").replace("set amp=off", "use --amp off"))
