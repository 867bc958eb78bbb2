"""TensorFlow's Figure 3 step, 4d4f25b against issue 21's code, over every round measured on 6 Dec.

    python docs/full/train_step_cpu/run_6_dec/pooled.py

Pools the fig3_cifar10 TensorFlow rounds of before_after.sh in this folder (3 rounds), in
tensorflow_again/ (4) and fig3_tensorflow_12_rounds/ (12), and the two trees' own benchmarks
in peak_order/ (5): median step of each tree, the ratio of medians with a bootstrap 95 %
interval, and the paired Wilcoxon test (rounds pair the two trees' processes run one after
the other).
"""

import glob
import json
import os

import numpy as np
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
# (folder, file name prefix of each tree) of every fig3_cifar10 TensorFlow round.
SOURCES = [
    (".", {"before": "before_tensorflow", "after": "after_tensorflow"}),
    ("tensorflow_again", {"before": "before_tensorflow", "after": "after_tensorflow"}),
    ("fig3_tensorflow_12_rounds", {"before": "before_tensorflow", "after": "after_tensorflow"}),
    ("peak_order", {"before": "before_own", "after": "after_own"}),
]


def fig3_ms(path):
    return next(r["step_s"] * 1e3 for r in json.load(open(path)) if r["preset"] == "fig3_cifar10")


def rounds(folder, prefix):
    paths = glob.glob(os.path.join(HERE, folder, f"{prefix}_r*.json"))
    return [fig3_ms(p) for p in sorted(paths, key=lambda p: int(p.rsplit("_r", 1)[1].removesuffix(".json")))]


def main():
    trees = {"before": [], "after": []}
    for folder, prefixes in SOURCES:
        for tree, prefix in prefixes.items():
            steps = rounds(folder, prefix)
            trees[tree] += steps
            print(f"{folder:28s} {tree:6s} {' '.join(f'{s:5.0f}' for s in steps)}")
    before, after = np.array(trees["before"]), np.array(trees["after"])
    rng = np.random.default_rng(0)
    resampled = [np.median(after[i]) / np.median(before[i]) for i in rng.integers(0, len(before), (20000, len(before)))]
    low, high = np.percentile(resampled, [2.5, 97.5])
    print(f"{len(before)} rounds: median before {np.median(before):.0f} ms, after {np.median(after):.0f} ms; "
          f"after / before {np.median(after) / np.median(before):.3f} (95 % bootstrap {low:.3f}-{high:.3f}); "
          f"after faster in {int(np.sum(after < before))} rounds; Wilcoxon p = {stats.wilcoxon(after, before).pvalue:.2f}")


if __name__ == "__main__":
    main()
