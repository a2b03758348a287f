"""Collect the headline figures of one benchmark run into ``summary.json``.

    python benchmarks/summary.py RESULTS_DIR [--card "NVIDIA H100 80GB HBM3"]

Reads ``RESULTS_DIR/train.json`` (``train_throughput.py --json``; the best row may come from
``train_best.json`` instead, whichever is faster) and ``RESULTS_DIR/extract.json``
(``extract_throughput.py --json``) and writes ``RESULTS_DIR/summary.json`` with the keys
``card``, ``default_train_qa_per_s``, ``peer_train_qa_per_s``, ``best_train_qa_per_s``,
``default_extract_videos_per_s``, ``peer_extract_videos_per_s`` (null where a file is missing)
and the ratios, then prints it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _get(table: dict, key: str):
    """A key at the top level of a results file or in its ``meta``."""
    return table.get(key, table.get("meta", {}).get(key))


def summarise(results: Path, card: str | None = None) -> dict:
    train, extract = _load(results / "train.json"), _load(results / "extract.json")
    # a run may time its best row in a call of its own (train_best.json)
    best = max((t for t in (train, _load(results / "train_best.json")) if _get(t, "best_train_qa_per_s")),
               key=lambda t: _get(t, "best_train_qa_per_s"), default={})
    card = card or _get(train, "device") or _get(extract, "device")
    out = {"card": card,
           "default_train_qa_per_s": _get(train, "default_train_qa_per_s"),
           "peer_train_qa_per_s": _get(train, "peer_train_qa_per_s"),
           "best_train_qa_per_s": _get(best, "best_train_qa_per_s"),
           "best_train_measured_over_floor": _get(best, "best_measured_over_floor"),
           "default_extract_videos_per_s": _get(extract, "default_extract_videos_per_s"),
           "peer_extract_videos_per_s": _get(extract, "peer_extract_videos_per_s")}
    for name, num, den in (("default_train_x_peer", "default_train_qa_per_s", "peer_train_qa_per_s"),
                           ("default_extract_x_peer", "default_extract_videos_per_s",
                            "peer_extract_videos_per_s")):
        out[name] = round(out[num] / out[den], 2) if out[num] and out[den] else None
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", help="folder with train.json and/or extract.json")
    ap.add_argument("--card", default=None, help="card name (default: from the results)")
    args = ap.parse_args(argv)
    summary = summarise(Path(args.results), args.card)
    (Path(args.results) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
