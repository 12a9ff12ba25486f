"""The per-iteration progress table and chart, from DuckDB over every iteration's Parquet."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from restem_assets.reporting.analytics import connect, query_df
from restem_assets.evaluation.metrics import paired_difference_interval, wilson_interval

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
                      omitted: Mapping[int, str] | None = None, human: pl.DataFrame | None = None) -> str:
    """A markdown table: one row per policy, metrics plus wall seconds per stage, the human-data baseline's row
    (`human`, from `human_baseline_frame`) when it was run; then why rows were left out."""
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
    if human is not None and human.height:
        h = human.row(0, named=True)
        values = {"iteration": "human data", "greedy_pass_at_1": _fmt(h["greedy_pass_at_1"], "greedy_pass_at_1"),
                  "greedy_gain_vs_base": h["vs_base_ci"] or "–", "pass_at_k": _fmt(h["pass_at_k"], "pass_at_k"),
                  "maj_at_k": _fmt(h["maj_at_k"], "maj_at_k"), "sft_examples": str(h["sft_examples"])}
        lines.append("| " + " | ".join([values.get(name, "–") for name, _ in COLUMNS] + ["–"] * len(stages)) + " |")
    for it, why in sorted((omitted or {}).items()):
        lines.append(f"\nIteration {it} left out: {why} (redo it with `restem run --from-iteration {max(it, 1)}`).")
    return "\n".join(lines) + "\n"


def improved(history: Sequence[float], min_delta: float = 0.0) -> bool:
    """Algorithm 1's stopping rule: continue while the latest validation reward beats every earlier one."""
    if len(history) < 2:
        return True
    return history[-1] > max(history[:-1]) + min_delta


# -- the paper's analyses: experiments side by side, per-problem learning, difficulty, cost ------------------
def _greedy_by_policy(con, experiment: str | None = None) -> dict[tuple[str, int], dict[str, bool]]:
    rows = con.execute("SELECT experiment, iteration, problem_id, greedy_correct FROM all_evaluations").fetchall()
    out: dict[tuple[str, int], dict[str, bool]] = {}
    for exp, it, pid, ok in rows:
        if experiment is None or exp == experiment:
            out.setdefault((exp, int(it)), {})[pid] = bool(ok)
    return out


def _interval(before: Mapping[str, bool] | None, after: Mapping[str, bool] | None) -> str | None:
    """"+d [lo, hi]" in points: the paired difference over the same problems (None if they differ)."""
    if not before or not after or set(before) != set(after):
        return None
    ids = sorted(before)
    d, lo, hi = paired_difference_interval([before[p] for p in ids], [after[p] for p in ids])
    return f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def analysis_frames(root: str, storage_options: Mapping[str, Any] | None = None,
                    experiment: str = "default") -> dict[str, pl.DataFrame]:
    """The analysis queries over the shared data root: `compare` (every experiment, with paired intervals),
    and for `experiment`: `learning`, `buckets`, `cost`, `human` (the human-data baseline's evaluation)."""
    con = connect(root, storage_options, experiment)
    try:
        compare = query_df(con, "compare_experiments")
        learning = query_df(con, "problem_learning").filter(pl.col("experiment") == experiment)
        buckets = query_df(con, "difficulty_buckets").filter(pl.col("experiment") == experiment)
        cost = query_df(con, "cost_per_iteration").filter(pl.col("experiment") == experiment)
        greedy = _greedy_by_policy(con)
        human = human_baseline_frame(con, experiment)
        human_greedy = _human_greedy(con, experiment)
        all_buckets = query_df(con, "difficulty_buckets")
    finally:
        con.close()
    reference = experiment if any(e == experiment for e, _ in greedy) else None
    vs_base, vs_ref, vs_human = [], [], []
    for exp, it in zip(compare["experiment"].to_list(), compare["iteration"].to_list()):
        vs_base.append(_interval(greedy.get((exp, 0)), greedy.get((exp, int(it)))) if it else None)
        vs_ref.append(_interval(greedy.get((reference, int(it))), greedy.get((exp, int(it))))
                      if reference is not None and exp != reference and it else None)
        vs_human.append(_interval(human_greedy, greedy.get((exp, int(it)))))
    compare = compare.with_columns(pl.Series("gain_vs_base_ci", vs_base, dtype=pl.String),
                                   pl.Series("vs_reference_ci", vs_ref, dtype=pl.String),
                                   pl.Series("vs_human_ci", vs_human, dtype=pl.String))
    any_human = pl.DataFrame({"greedy_pass_at_1": [sum(human_greedy.values()) / len(human_greedy)]}) \
        if human_greedy else pl.DataFrame()
    return {"compare": compare, "learning": learning, "buckets": buckets, "cost": cost, "human": human,
            "all_buckets": all_buckets, "any_human": any_human}


def _human_greedy(con, experiment: str) -> dict[str, bool] | None:
    """The human-data baseline's greedy results per test problem: `experiment`'s own, else the one any other
    experiment on the data root ran (the ablation runs it once, beside one configuration)."""
    rows = con.execute("""
        SELECT experiment, problem_id, greedy_correct FROM all_human_evaluations
        QUALIFY iteration = max(iteration) OVER (PARTITION BY experiment)""").fetchall()
    by_exp: dict[str, dict[str, bool]] = {}
    for exp, pid, ok in rows:
        by_exp.setdefault(exp, {})[pid] = bool(ok)
    if experiment in by_exp:
        return by_exp[experiment]
    return by_exp[sorted(by_exp)[0]] if by_exp else None


def human_baseline_frame(con, experiment: str) -> pl.DataFrame:
    """The human-data baseline's held-out metrics with its paired difference to the base model and to
    iteration 1 (tables human_evaluations / human_sft_set), empty when it was never run."""
    rows = con.sql("""
        SELECT h.iteration, count(*) AS test_problems, sum(h.greedy_correct::INT) AS greedy_correct, avg(h.greedy_correct::DOUBLE) AS greedy_pass_at_1,
               avg(h.pass_at_k) AS pass_at_k, avg(h.majority_correct::DOUBLE) AS maj_at_k, max(h.k) AS k,
               (SELECT count(*) FROM human_sft_set AS s WHERE s.iteration = h.iteration) AS sft_examples
        FROM human_evaluations AS h GROUP BY h.iteration ORDER BY h.iteration""").pl()
    if not rows.height:
        return rows
    human = {pid: bool(ok) for pid, ok in con.execute(
        "SELECT problem_id, greedy_correct FROM human_evaluations WHERE iteration = "
        "(SELECT max(iteration) FROM human_evaluations)").fetchall()}
    greedy = _greedy_by_policy(con, experiment)
    return rows.tail(1).with_columns(
        pl.Series("vs_base_ci", [_interval(greedy.get((experiment, 0)), human)], dtype=pl.String),
        pl.Series("vs_iteration_1_ci", [_interval(human, greedy.get((experiment, 1)))], dtype=pl.String))


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def analyses_markdown(frames: Mapping[str, pl.DataFrame], experiment: str = "default") -> str:
    """Markdown sections after the progress table: human-data baseline, experiments side by side,
    per-problem learning, difficulty buckets and cost, each only when it has rows."""
    out: list[str] = []
    human = frames.get("human")
    if human is not None and human.height:
        h = human.row(0, named=True)
        out += ["\n## Human-data baseline (SFT of the base model on reference solutions)\n",
                "| policy | SFT examples | greedy pass@1 | vs base, pts (95% CI) | iteration 1 vs it, pts (95% CI) | "
                f"pass@{h['k']} | maj@{h['k']} |", "|---|---|---|---|---|---|---|",
                f"| human data | {h['sft_examples']} | {_pct(h['greedy_pass_at_1'])} | {h['vs_base_ci'] or '–'} | "
                f"{h['vs_iteration_1_ci'] or '–'} | {_pct(h['pass_at_k'])} | {_pct(h['maj_at_k'])} |"]
    compare = frames.get("compare")
    if compare is not None and compare["experiment"].n_unique() > 1:
        out += [f"\n## Experiments side by side (`restem sql compare_experiments`; reference: {experiment})\n",
                "Paired 95% intervals in points over the same test problems; coverage: train problems in the "
                "SFT set (hinted ones in parentheses); tokens: generated by the E-step; wall: E-step, fine-tune "
                "and evaluation of the policy.\n",
                "| iter | experiment | sampling | hints | greedy pass@1 | vs its base | "
                f"vs {experiment} | vs human data | pass@k | maj@k | train coverage | SFT examples | E-step tokens "
                "| wall s | train loss |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in compare.iter_rows(named=True):
            loss = "–" if r["final_train_loss"] is None else f"{r['final_train_loss']:.3f}"
            wall = "–" if r["wall_seconds"] is None else f"{r['wall_seconds']:.0f}"
            sampling = r["sampling"] or "fixed"
            if sampling == "fixed" and r["samples_per_problem"]:
                sampling = f"fixed K={r['samples_per_problem']}"
            coverage = "–" if r["train_coverage"] is None else (
                f"{r['train_coverage']}" + (f" ({r['hinted_problems']})" if r["hinted_problems"] else ""))
            out.append(f"| {r['iteration']} | {r['experiment']} | {sampling} | {'yes' if r['hints'] else 'no'} | "
                       f"{_pct(r['greedy_pass_at_1'])} | {r['gain_vs_base_ci'] or '–'} | "
                       f"{r['vs_reference_ci'] or '–'} | {r['vs_human_ci'] or '–'} | {_pct(r['pass_at_k'])} | "
                       f"{_pct(r['maj_at_k'])} | {coverage} | "
                       f"{r['sft_examples'] if r['sft_examples'] is not None else '–'} | "
                       f"{r['estep_tokens'] if r['estep_tokens'] is not None else '–'} | "
                       f"{wall} | {loss} |")
        all_buckets = frames.get("all_buckets")
        if all_buckets is not None and all_buckets.height:
            b = all_buckets.filter(pl.col("bucketing") == "base_success_rate")
            iterations = sorted(set(b["iteration"].to_list()))
            out += ["\n### Greedy pass@1 by base-model difficulty, every experiment\n",
                    "| experiment | bucket | problems | " + " | ".join(f"iter {i}" for i in iterations) + " |",
                    "|---|---|---|" + "---|" * len(iterations)]
            for (exp, bucket), group in b.group_by(["experiment", "bucket"], maintain_order=True):
                by_it = dict(zip(group["iteration"].to_list(), group["greedy_pass_at_1"].to_list()))
                out.append(f"| {exp} | {bucket} | {group['problems'].max()} | "
                           + " | ".join(_pct(by_it.get(i)) for i in iterations) + " |")
    learning = frames.get("learning")
    if learning is not None and learning.height:
        out += ["\n## Per-problem learning (`restem sql problem_learning`)\n",
                "| split | measure | iter | solved | newly solved | retained | forgotten |", "|---|---|---|---|---|---|---|"]
        for r in learning.iter_rows(named=True):
            moved = [("–" if r[c] is None else str(r[c])) for c in ("newly_solved", "retained", "forgotten")]
            out.append(f"| {r['split']} | {r['measure']} | {r['iteration']} | {r['solved']} / {r['problems']} | "
                       + " | ".join(moved) + " |")
    buckets = frames.get("buckets")
    if buckets is not None and buckets.height:
        iterations = sorted(set(buckets["iteration"].to_list()))
        out += ["\n## Greedy pass@1 by difficulty (`restem sql difficulty_buckets`)\n",
                "| bucketing | bucket | problems | " + " | ".join(f"iter {i}" for i in iterations) + " |",
                "|---|---|---|" + "---|" * len(iterations)]
        for (bucketing, bucket), group in buckets.group_by(["bucketing", "bucket"], maintain_order=True):
            by_it = dict(zip(group["iteration"].to_list(), group["greedy_pass_at_1"].to_list()))
            out.append(f"| {bucketing} | {bucket} | {group['problems'].max()} | "
                       + " | ".join(_pct(by_it.get(i)) for i in iterations) + " |")
    cost = frames.get("cost")
    if cost is not None and cost.height:
        totals = cost.filter(pl.col("stage") == "all")
        out += ["\n## Cost per iteration (`restem sql cost_per_iteration`; evaluation i = policy i)\n",
                "| iter | wall s | CPU s | GPU s | peak RSS MB | prompt tokens | generated tokens | cost |",
                "|---|---|---|---|---|---|---|---|"]
        for r in totals.iter_rows(named=True):
            gpu = "–" if r["gpu_seconds"] is None else f"{r['gpu_seconds']:.0f}"
            out.append(f"| {r['iteration']} | {r['wall_seconds']:.0f} | {r['cpu_seconds']:.0f} | {gpu} | "
                       f"{r['peak_rss_mb']:.0f} | {r['prompt_tokens'] if r['prompt_tokens'] is not None else '–'} | "
                       f"{r['generated_tokens'] if r['generated_tokens'] is not None else '–'} | {r['cost']:.4f} |")
    return "\n".join(out) + ("\n" if out else "")


def _band(axis, iterations, accuracy, problems, color) -> None:
    """A 95% Wilson band around each policy's greedy pass@1 (over its test problems)."""
    lo, hi = [], []
    for p, n in zip(accuracy, problems):
        a, b = wilson_interval(round((p or 0) * (n or 0)), n or 0)
        lo.append(100 * a)
        hi.append(100 * b)
    axis.fill_between(iterations, lo, hi, color=color, alpha=0.15, linewidth=0)


def analyses_chart_png(df: pl.DataFrame, frames: Mapping[str, pl.DataFrame]) -> bytes:
    """The progress chart plus the analyses: held-out metrics (greedy pass@1 with its 95% band) from 0, with the
    human-data baseline as a dashed line, greedy pass@1 per difficulty bucket, newly solved / forgotten test
    problems (greedy) per iteration, and, with several experiments on the data root, each one's greedy pass@1
    with its band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    compare = frames.get("compare")
    several = compare is not None and compare.height and compare["experiment"].n_unique() > 1
    fig, axes = plt.subplots(1, 4 if several else 3, figsize=(20 if several else 15, 3.8), dpi=100)
    ax, bx, cx = axes[:3]
    k = df["k"].max() if df.height else "k"
    for col, label in (("greedy_pass_at_1", "greedy pass@1"), ("pass_at_k", f"pass@{k}"), ("maj_at_k", f"maj@{k}")):
        if df.height and any(v is not None for v in df[col].to_list()):
            line, = ax.plot(df["iteration"].to_list(), [100 * (v or 0) for v in df[col].to_list()], marker="o",
                            label=label)
            if col == "greedy_pass_at_1" and "test_problems" in df.columns:
                _band(ax, df["iteration"].to_list(), df[col].to_list(), df["test_problems"].to_list(), line.get_color())
    human = frames.get("human")
    if human is None or not human.height:
        human = frames.get("any_human")
    human_level = None
    if human is not None and human.height:
        human_level = 100 * human["greedy_pass_at_1"][0]
        ax.axhline(human_level, linestyle="--", color="gray", label="human data (greedy)")
    ax.set(xlabel="iteration (0 = base model)", ylabel="held-out accuracy (%)", title="ReST^EM progress")
    ax.set_ylim(bottom=0)
    if several:
        dx = axes[3]
        for exp, group in compare.sort("iteration").group_by("experiment", maintain_order=True):
            its, acc = group["iteration"].to_list(), group["greedy_pass_at_1"].to_list()
            line, = dx.plot(its, [100 * (v or 0) for v in acc], marker="o", label=exp[0] if isinstance(exp, tuple) else exp)
            _band(dx, its, acc, group["test_problems"].to_list(), line.get_color())
        if human_level is not None:
            dx.axhline(human_level, linestyle="--", color="gray", label="human data")
        dx.set(xlabel="iteration", ylabel="greedy pass@1 (%)", title="experiments (95% bands)")
        dx.set_ylim(bottom=0)
        dx.set_xticks(sorted(set(compare["iteration"].to_list())))
    buckets = frames.get("buckets")
    if buckets is not None and buckets.height:
        for (bucketing, bucket), group in buckets.group_by(["bucketing", "bucket"], maintain_order=True):
            bx.plot(group["iteration"].to_list(), [100 * (v or 0) for v in group["greedy_pass_at_1"].to_list()],
                    marker="o", label=f"{bucket} ({bucketing.replace('_', ' ')}, n={group['problems'].max()})")
        bx.set_xticks(sorted(set(buckets["iteration"].to_list())))
    bx.set(xlabel="iteration", ylabel="greedy pass@1 (%)", title="by difficulty")
    learning = frames.get("learning")
    if learning is not None and learning.height:
        g = learning.filter((pl.col("split") == "test") & (pl.col("measure") == "greedy") & (pl.col("iteration") > 0))
        its = g["iteration"].to_list()
        cx.bar([i - 0.2 for i in its], g["newly_solved"].fill_null(0).to_list(), width=0.4, label="newly solved")
        cx.bar([i + 0.2 for i in its], [-v for v in g["forgotten"].fill_null(0).to_list()], width=0.4, label="forgotten")
        cx.axhline(0, color="black", linewidth=0.5)
        if its:
            cx.set_xticks(its)
    cx.set(xlabel="iteration", ylabel="test problems (greedy)", title="learned / forgotten")
    for axis in axes:
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
    if df.height:
        ax.set_xticks(df["iteration"].to_list())
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
