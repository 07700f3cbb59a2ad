"""What autoencoder pretraining (`model.init: autoencoder`) buys, on the default configuration
(scikit-learn's digits, the default CNN), on a small-label case (`data.train_fraction=0.05`,
where pretraining is known to help most) and on the papers' setting (a sigmoid MLP without
batch norm, 5% of the labels), each an ablation of `model.init: default` against
`autoencoder` over the same seeds. Not a timed test: run it after changing `trainers/pretrain.py`.

    python benchmarks/pretraining.py [--seeds 10] [--device auto] [--cases default small-label small-label-long sigmoid-mlp]

Prints, per case, the effect's sentence from the report (change, Holm-adjusted interval, decided
or noise), each variant's mean validation accuracy, the mean seconds the pretrain and train
stages took per run (pretraining is built before the trainings, once per seed), and where the
report is. In the small-label case the pretraining also reads the 95% of the training split
that has no labels in training.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pipeline import api

CASES = {
    "default": [],
    "small-label": ["data.train_fraction=0.05"],
    "small-label-long": ["data.train_fraction=0.05", "model.pretrain.epochs=50"],
    # The setting of the papers: a sigmoid MLP without batch norm, few labels.
    "sigmoid-mlp": ["data.train_fraction=0.05", "model.pretrain.epochs=50", "model.type=mlp", "model.hidden=[256,128]", "model.activation=sigmoid", "model.batch_norm=false"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--out", type=Path, default=None, help="where the reports go (default: a temporary folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="pretraining-"))
    design = [
        "ablation.design=one_at_a_time", f"ablation.seeds={list(range(args.seeds))}",
        'ablation.factors={"model.init": {"side": "model", "values": ["default", "autoencoder"]}}',
    ]
    for name in args.cases:
        overrides = CASES[name]
        started = time.perf_counter()
        ablation = api.ablate(None, [*design, *overrides, f"train.device={args.device}"], out=out / name, cache_dir=out / "cache")
        seconds = time.perf_counter() - started
        effect = ablation.effects.query("kind == 'factor'").iloc[0]
        print(f"{name}: {' '.join(overrides) or 'the default configuration'}; {args.seeds} seeds, {seconds:.0f} s in all")
        print(f"  {effect['sentence']}")
        print(f"  validation accuracy: {ablation.variants[['variant', 'val_mean']].to_dict('records')}")
        for variant in ablation.summary["variants"]:
            seconds = {stage: round(counts["seconds"], 2) for stage, counts in variant["stages"].items() if stage in ("pretrain", "train")}
            print(f"  {variant['name']}: seconds per run {seconds}")
        print(f"  report: {ablation.folder / 'report.md'}")


if __name__ == "__main__":
    main()
