"""Long fuzz run: thousands of random small CNNs through capture, every cheap solver and both executors.

Each model comes from :func:`iopopt.frontend.fuzz.fuzz_cnn` seeded with its
index, and goes through :func:`iopopt.studies.fuzz.check_model` (every cheap
solver, brute where the space has at most 2,000 plans, dp on chains, random
valid plans; the simulated executor on every plan, the distributed executor on
two plans of every ``--distributed-every``-th model). Run from the repository
root, e.g.

    nice .venv/bin/python scripts/fuzz.py --models 2000 --out outputs/fuzz

It prints one line per finding and a summary (models, unsupported, reference
not finite, plans, crashes, verification failures, cost mismatches, plans
below a proven optimum), writes ``findings.txt`` and ``summary.json`` into
``--out``, and exits 1 when anything was found.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

from iopopt.frontend.fuzz import RandomDraw, describe, fuzz_cnn
from iopopt.studies.fuzz import check_model

KINDS = ("crashes", "verify_failures", "cost_mismatches", "below_optimum")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=2000, help="number of models (seeds start..start+models-1)")
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--distributed-every", type=int, default=100,
                    help="run the distributed executor on every n-th model (0: never)")
    ap.add_argument("--max-ops", type=int, default=6, help="most modules and joins per model")
    ap.add_argument("--max-hw", type=int, default=11, help="largest input height and width")
    ap.add_argument("--out", type=Path, default=Path("outputs/fuzz"), help="folder for findings.txt and summary.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(("models", "unsupported", "reference_not_finite", "plans", "distributed_plans",
                            "models_with_findings") + KINDS, 0)
    start = time.perf_counter()
    with open(args.out / "findings.txt", "w") as findings:
        for seed in range(args.start, args.start + args.models):
            rng = random.Random(seed)
            model, shape = fuzz_cnn(RandomDraw(rng), max_ops=args.max_ops, max_hw=args.max_hw)
            dist = args.distributed_every > 0 and seed % args.distributed_every == 0
            o = check_model(model, shape, rng, distributed=dist)
            counts["models"] += 1
            counts["unsupported"] += bool(o.unsupported)
            counts["reference_not_finite"] += o.reference_not_finite
            counts["plans"] += o.plans
            counts["distributed_plans"] += o.distributed_plans
            for kind in KINDS:
                counts[kind] += len(getattr(o, kind))
            if not o.ok:
                counts["models_with_findings"] += 1
                text = f"seed {seed}\n{describe(model, shape)}\n" + "\n".join(o.lines()) + "\n\n"
                findings.write(text)
                findings.flush()
                print(text, end="", flush=True)
            if counts["models"] % 100 == 0:
                print(f"{counts['models']} models, {time.perf_counter() - start:.0f} s: {counts}", flush=True)
    counts["wall_s"] = round(time.perf_counter() - start, 1)
    (args.out / "summary.json").write_text(json.dumps(counts, indent=1) + "\n")
    print(json.dumps(counts))
    return 1 if any(counts[k] for k in KINDS) else 0


if __name__ == "__main__":
    sys.exit(main())
