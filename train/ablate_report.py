"""The ablation table as markdown: a summary row per variant, then one row per question type."""
from __future__ import annotations


def fmt(stat: dict | None, digits: int = 2) -> str:
    """``mean ± std`` (sample std over seeds); the mean alone for one seed; ``–`` for none."""
    if not stat or stat.get("mean") is None:
        return "–"
    if stat.get("std") is None:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _delta(cmp: dict | None) -> str:
    if cmp is None:
        return "–"
    return f"{cmp['diff']:+.2f} (p {cmp['p']:.2f}){' *' if cmp['beyond_spread'] else ''}"


def ablation_markdown(summary: dict) -> str:
    """Two tables: per variant (parameters, time, overall, difference to the reference, groups)
    and per question type (variants as columns)."""
    variants = summary["variants"]
    names = list(variants)
    groups = list(dict.fromkeys(g for s in variants.values() for g in s["groups"]))
    types = list(dict.fromkeys(t for s in variants.values() for t in s["types"]))
    seeds = ", ".join(str(s) for s in summary["seeds"])
    lines = [f"# Ablation on `{summary['store']}`: {summary['split']} split",
             "",
             f"{summary['epochs']} epoch(s), seeds {seeds}. Accuracy in %, mean ± sample standard "
             "deviation over seeds. Δ = difference of the overall means to "
             f"`{summary['reference']}` and, in brackets, the p-value of Welch's t-test over "
             "the seeds; `*` marks p < 0.05, a difference beyond the seed spread. Time: training "
             "+ validation per run, seconds.",
             "",
             "| variant | parameters | time (s) | overall | Δ overall | "
             + " | ".join(groups) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(groups)]
    for n in names:
        s = variants[n]
        cells = [f"`{n}`", f"{s['parameters']:,}", fmt(s["train_time_s"], 1), fmt(s["overall"]),
                 _delta(s.get("vs_reference"))] + [fmt(s["groups"].get(g)) for g in groups]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| type | " + " | ".join(f"`{n}`" for n in names) + " |",
              "|---|" + "---:|" * len(names)]
    for t in types:
        lines.append(f"| {t} | " + " | ".join(fmt(variants[n]["types"].get(t)) for n in names)
                     + " |")
    return "\n".join(lines) + "\n"
