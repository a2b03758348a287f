"""SHMamba AVQA command line.

Thin by design: each command parses its options, calls one library function and prints the
result.  Run ``python cli.py --help`` for the list of commands.
"""
from __future__ import annotations

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
)
store_app = typer.Typer(help="Inspect and check a feature store (feats.h5 + feats.shards/).",
                        no_args_is_help=True)
app.add_typer(store_app, name="store")


# ---- store commands --------------------------------------------------------------------------


# ---- extraction commands ---------------------------------------------------------------------


# ---- model commands --------------------------------------------------------------------------


# ---- training / evaluation commands ----------------------------------------------------------


def main() -> None:
    app()


if __name__ == "__main__":
    main()
