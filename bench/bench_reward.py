"""Math reward throughput: answers checked per second, by the kind of answer.

Three mixes of completions, scored with restem_assets.rewards.math.score_math:
  numeric  `Answer: 42`-style integers and decimals (the exact Fraction path);
  latex    `\\boxed{\\frac{3}{4}}`, `\\sqrt{2}`, intervals (math-verify, sympy fallback);
  mixed    what an E-step produces: a third each of right, wrong and missing answers.
Each mix is half correct, half wrong against its gold answer, so both verdicts are timed.

    python -m bench.bench_reward [--n 4000]
"""

from __future__ import annotations

import random
import time

from bench.results import parse_args, write_result

from restem_assets.rewards.math import score_math

LATEX = [(r"\frac{3}{4}", r"\frac{6}{8}", r"\frac{2}{3}"), (r"\sqrt{2}", r"\sqrt{2}", r"\sqrt{3}"),
         (r"[1, 5)", r"[1,5)", r"(1, 5]"), (r"2\pi", r"2\pi", r"\pi"), (r"x^2 + 1", r"1 + x^2", r"x^2 - 1"),
         (r"\frac{\sqrt{3}}{2}", r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}")]


def cases(kind: str, n: int, rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        right = i % 2 == 0
        if kind == "numeric":
            gold = str(rng.randint(-999, 999))
            pred = gold if right else str(int(gold) + rng.randint(1, 9))
            out.append((f"Adding the terms step by step gives {pred}.\nAnswer: {pred}", gold))
        elif kind == "latex":
            gold, same, other = LATEX[i // 2 % len(LATEX)]
            out.append((f"So the result is $\\boxed{{{same if right else other}}}$.", gold))
        else:
            gold = str(rng.randint(0, 200))
            pick = i % 3
            text = {0: f"Answer: {gold}", 1: f"Answer: {int(gold) + 1}", 2: "I think the sum is large."}[pick]
            out.append((text, gold))
    return out


def main(argv=None) -> dict:
    args = parse_args(__doc__, argv, n=4000)
    rng = random.Random(0)
    score_math("Answer: 1", "1")  # load math-verify once, outside the timing
    score_math(r"\boxed{\frac{1}{2}}", r"\frac{2}{4}")
    results = {}
    for kind in ("numeric", "latex", "mixed"):
        batch = cases(kind, args.n, rng)
        t0 = time.perf_counter()
        verdicts = [score_math(c, g) for c, g in batch]
        seconds = time.perf_counter() - t0
        results[kind] = {"answers": len(batch), "seconds": seconds, "answers_per_s": len(batch) / seconds,
                         "correct": sum(v.reward == 1.0 for v in verdicts)}
    print(f"{'mix':<10}{'answers':>9}{'correct':>9}{'seconds':>9}{'answers/s':>11}")
    for kind, r in results.items():
        print(f"{kind:<10}{r['answers']:>9}{r['correct']:>9}{r['seconds']:>9.2f}{r['answers_per_s']:>11.0f}")
    write_result("reward", results)
    return results


if __name__ == "__main__":
    main()
