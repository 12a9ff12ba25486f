"""The per-iteration progress table and chart, from DuckDB over every iteration's Parquet."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from restem_assets.analytics import connect, query_df
from restem_assets.metrics import paired_difference_interval

COLUMNS = [
    ("iteration", "iter"),
    ("greedy_pass_at_1", "greedy pass@1"),
    ("greedy_gain_vs_base", "vs base, pts (95% CI)"),
    ("pass_at_k", "pass@k"),
    ("maj_at_k", "maj@k"),
    ("greedy_format_rate", "answer format"),
    ("correct_samples", "correct samples"),
    ("problems_covered", "problems covered"),
    ("sft_examples", "SFT examples"),
    ("final_train_loss", "train loss"),
]


def progress_frame(root: str, storage_options: Mapping[str, Any] | None = None,
                   experiment: str = "default") -> pl.DataFrame:
    """iteration_progress of `experiment` (under the shared data root `root`) plus each policy's greedy pass@1
    gain over the base model with a 95% paired interval."""
    con = connect(root, storage_options, experiment)
    try:
        df = query_df(con, "iteration_progress")
        greedy = con.execute("SELECT iteration, problem_id, greedy_correct FROM evaluations").fetchall()
    finally:
        con.close()
    by_iter: dict[int, dict[str, bool]] = {}
    for it, pid, ok in greedy:
        by_iter.setdefault(int(it), {})[pid] = bool(ok)
    gains = []
    for it in df["iteration"].to_list():
        base, cur = by_iter.get(0), by_iter.get(int(it))
        if not base or not cur or int(it) == 0 or set(base) != set(cur):
            gains.append(None)
            continue
        ids = sorted(base)
        d, lo, hi = paired_difference_interval([base[p] for p in ids], [cur[p] for p in ids])
        gains.append(f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]")
    return df.with_columns(pl.Series("greedy_gain_vs_base", gains, dtype=pl.String))


def _fmt(value: Any, name: str) -> str:
    if value is None:
        return "n/a" if name == "maj_at_k" else "–"  # maj@k is null exactly for code tasks
    if name in ("greedy_pass_at_1", "pass_at_k", "maj_at_k", "greedy_format_rate"):
        return f"{100 * value:.1f}%"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def progress_markdown(df: pl.DataFrame, timings: Mapping[int, Mapping[str, float]] | None = None,
                      omitted: Mapping[int, str] | None = None) -> str:
    """A markdown table: one row per policy, metrics plus wall seconds per stage; then why rows were left out."""
    timings = timings or {}
    stages = sorted({s for t in timings.values() for s in t})
    k = df["k"].max() if df.height else None
    header = [label.replace("@k", f"@{k}") if k else label for _, label in COLUMNS] + [f"{s} s" for s in stages]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in df.iter_rows(named=True):
        cells = [_fmt(row.get(name), name) for name, _ in COLUMNS]
        t = timings.get(int(row["iteration"]), {})
        cells += [f"{t[s]:.0f}" if s in t else "–" for s in stages]
        lines.append("| " + " | ".join(cells) + " |")
    for it, why in sorted((omitted or {}).items()):
        lines.append(f"\nIteration {it} left out: {why} (redo it with `restem run --from-iteration {max(it, 1)}`).")
    return "\n".join(lines) + "\n"


def progress_chart_png(df: pl.DataFrame) -> bytes:
    """Line chart of the held-out metrics per iteration (PNG bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    k = df["k"].max() if df.height else "k"
    for col, label in (("greedy_pass_at_1", "greedy pass@1"), ("pass_at_k", f"pass@{k}"), ("maj_at_k", f"maj@{k}")):
        if df.height and any(v is not None for v in df[col].to_list()):  # maj@k is null for code
            ax.plot(df["iteration"].to_list(), [100 * (v or 0) for v in df[col].to_list()], marker="o", label=label)
    ax.set_xlabel("iteration (0 = base model)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_title("ReST^EM progress")
    ax.grid(alpha=0.3)
    ax.legend()
    if df.height:
        ax.set_xticks(df["iteration"].to_list())
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def improved(history: Sequence[float], min_delta: float = 0.0) -> bool:
    """Algorithm 1's stopping rule: continue while the latest validation reward beats every earlier one."""
    if len(history) < 2:
        return True
    return history[-1] > max(history[:-1]) + min_delta
