"""Times building RTS and TC MNIST from all 70,000 digits.

    python benchmarks/distortions.py [--data-dir DIR]
"""

import argparse
import time

import numpy as np

from data_tools import distortions
from data_tools import sources


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    (x_train, y_train), (x_test, y_test) = sources.load_mnist(args.data_dir)
    images, labels = np.concatenate([x_train, x_test]), np.concatenate([y_train, y_test])
    for name, make in (("rts_mnist", distortions.make_rts_mnist), ("tc_mnist", distortions.make_tc_mnist)):
        start = time.perf_counter()
        make(images, labels, seed=0)
        print(f"{name}: {len(images)} digits in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
