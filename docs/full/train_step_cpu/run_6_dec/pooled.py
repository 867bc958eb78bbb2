"""TensorFlow's Figure 3 step, 4d4f25b against issue 21's code, over every round measured on 6 Dec.

    python docs/full/train_step_cpu/run_6_dec/pooled.py

Pools the fig3_cifar10 TensorFlow rounds of before_after.sh in this folder (3 rounds), in
tensorflow_again/ (4) and fig3_tensorflow_12_rounds/ (12), and the two trees' own benchmarks
in peak_order/ (5): median step of each tree, the ratio of medians with a bootstrap 95 %
interval, and the paired Wilcoxon test (rounds pair the two trees' processes run one after
the other).
"""

import os
import sys

import numpy as np
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from table import read  # noqa: E402  (docs/full/train_step_cpu/table.py: the JSON files of a run)

# (folder, the name its files give the backend) of every fig3_cifar10 TensorFlow round;
# peak_order/'s files are named by tree and benchmark ("before_own_r1.json").
SOURCES = [(".", "tensorflow"), ("tensorflow_again", "tensorflow"), ("fig3_tensorflow_12_rounds", "tensorflow"),
           ("peak_order", "own")]


def rounds(folder, tree, backend):
    """Figure 3's median step in ms of each round of one tree in `folder`, in round order."""
    runs = read(os.path.join(HERE, folder))
    return [runs[key]["fig3_cifar10"]["step_s"] * 1e3 for key in sorted(runs) if key[:2] == (tree, backend)]


def main():
    trees = {"before": [], "after": []}
    for folder, backend in SOURCES:
        for tree in trees:
            steps = rounds(folder, tree, backend)
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
