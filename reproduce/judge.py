"""The CIFAR-10 judge: trains (once) or loads the residual CNN that judges Figures 3 and 4's samples.

The judge is kept in the data cache (`$KERAS_ACE_CACHE`); the figure scripts use it in
full mode. Writes `metrics.json` with its test accuracy overall and per class, the
time it took and where it ran.

    python reproduce/judge.py --output-dir docs/full/judge_cifar10_cpu
"""

import argparse
import os
import sys
import time

from common.config import write_json
from common.judge import cifar10_judge
from common.metrics import run_record
from keras_ace import runtime


def main(argv=None):
    if argv is None:  # this process's own command line (not a test's call): it may be started again
        runtime.configure()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default=os.path.join("results", "judge"))
    parser.add_argument("--data-dir", help="folder with cifar10-jpeg.zip (else KERAS_ACE_DATA, cache, download)")
    args = parser.parse_args(argv)
    start = time.time()
    _, record = cifar10_judge(args.data_dir)
    write_json({"judge": record, "run": run_record(start)}, os.path.join(args.output_dir, "metrics.json"))
    print(f"CIFAR-10 judge: {record['test_accuracy']:.1%} on the test set; per class "
          + ", ".join(f"{a:.0%}" for a in record["test_accuracy_per_class"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
