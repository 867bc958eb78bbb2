"""One epoch of a full-size preset on its full training set, then the test metrics.

    KERAS_BACKEND=tensorflow python benchmarks/one_epoch.py fig1_mnist
"""

import argparse
import math
import time

import keras

import keras_ace
from data_tools import load_dataset


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", choices=sorted(keras_ace.PRESETS))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dataset = keras_ace.PRESETS[args.preset]["dataset"]
    x, y = load_dataset(dataset, "train")
    x_test, y_test = load_dataset(dataset, "test")
    keras.utils.set_random_seed(args.seed)
    training = keras_ace.TrainingConfig.for_dataset(dataset)
    model = keras_ace.build_preset(args.preset, training=training, seed=args.seed)
    start = time.time()
    model.fit(x, y, batch_size=training.batch_size, epochs=args.epochs, verbose=2)
    train_s = time.time() - start
    results = model.evaluate(x_test, y_test, batch_size=250, verbose=0, return_dict=True)
    print(f"{args.preset} [{keras.backend.backend()}] after {args.epochs} epoch(s) on {len(x)} images "
          f"({train_s:.0f} s, {math.ceil(len(x) / 250) * args.epochs} steps): test error "
          f"{results['classification_error']:.2%}, NLL bound {results['nll_bound']:.1f} nats/image, "
          f"reconstruction {results['reconstruction']:.1f}, generative {results['generative']:.1f}")


if __name__ == "__main__":
    main()
