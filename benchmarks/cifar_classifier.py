"""The ACE's classifier alone on CIFAR-10: its inference path against its training path.

Trains only box C of a CIFAR-10 preset (Appendix A: 32-64-128 3x3 filters, 2x2
max-pooling, dense 700, dropout 0.2 on the input and 0.5 in hidden layers) with the
preset's Adam learning rate and batch 250, then reports the error on training images
in inference mode (dropout off) and in training mode (dropout on), and on test images.

    KERAS_BACKEND=tensorflow python benchmarks/cifar_classifier.py --train-size 25000 --epochs 2

`--variant` changes one thing, to see where the two paths part: `preset` is the
classifier as the preset builds it (pixels centred, `x - 0.5`, then the paper's dropout);
`uncentred` feeds it `x` in [0, 1] (Appendix A read literally); `no-conv-dropout` also
drops the dropout after the conv blocks, `no-dropout` every dropout (both uncentred).
"""

import argparse
import time

import keras
import numpy as np

import keras_ace
from data_tools import load_dataset

EVALUATED = 3000
VARIANTS = ("preset", "uncentred", "no-conv-dropout", "no-dropout")


def error(model, x, y, training):
    logits = np.concatenate([keras.ops.convert_to_numpy(model(x[i : i + 500], training=training)) for i in range(0, len(x), 500)])
    return float(np.mean(logits.argmax(-1) != y)), np.bincount(logits.argmax(-1), minlength=10)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="fig3_cifar10", choices=[p for p in keras_ace.PRESETS if "cifar10" in p])
    parser.add_argument("--train-size", type=int, default=25000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--variant", choices=VARIANTS, default="preset")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    x, y = load_dataset("cifar10", "train")
    x_test, y_test = load_dataset("cifar10", "test")
    x, y = x[: args.train_size], y[: args.train_size]
    print(f"classes among the first {args.train_size} training images: {np.bincount(y, minlength=10).tolist()}")
    keras.utils.set_random_seed(args.seed)
    # Box C of the preset, on its own.
    preset = keras_ace.PRESETS[args.preset]
    box_c = keras_ace.Classifier(
        filters=preset["classifier_filters"],
        units=preset["classifier_units"],
        input_dropout=preset["input_dropout"],
        hidden_dropout=preset["hidden_dropout"],
        input_offset=preset.get("classifier_input_offset", 0.0) if args.variant == "preset" else 0.0,
    )
    layers = [*box_c.hidden_layers, box_c.logits]
    if args.variant == "no-conv-dropout":
        layers = [layer for layer in layers if not layer.name.startswith("classifier_dropout")]
    elif args.variant == "no-dropout":
        layers = [layer for layer in layers if not isinstance(layer, keras.layers.Dropout)]
    classifier = keras.Sequential(layers)
    training = keras_ace.TrainingConfig.for_dataset("cifar10")
    classifier.compile(optimizer=keras.optimizers.Adam(training.learning_rate),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.time()
    classifier.fit(x, y, batch_size=training.batch_size, epochs=args.epochs, verbose=2)
    seconds = time.time() - start
    inference, predicted = error(classifier, x[:EVALUATED], y[:EVALUATED], training=False)
    dropout_on, _ = error(classifier, x[:EVALUATED], y[:EVALUATED], training=True)
    test, _ = error(classifier, x_test[:EVALUATED], y_test[:EVALUATED], training=False)
    print(f"{args.preset} classifier, {args.variant} [{keras.backend.backend()}], "
          f"{args.epochs} epoch(s) on {len(x)} images ({seconds:.0f} s): error on {EVALUATED} training images "
          f"{inference:.1%} in inference mode, {dropout_on:.1%} with dropout on; test error {test:.1%}; "
          f"predicted classes (inference, training images) {predicted.tolist()}")


if __name__ == "__main__":
    main()
