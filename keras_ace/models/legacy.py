"""Converting `.keras` files saved by keras_ace 0.1, where the ACE was one flat Model.

0.1 kept the symmetry statistics net, classifier and encoder as `Sequential` blocks
and the latent heads and decoders as attributes of the ACE, so a saved file stores
each layer's weights under those names. Since 0.2 they live in `SymmetryStatisticsNet`,
`Classifier` and `AutoEncoder`, and the names differ. The layers and their order are
the same: `convert` reads each 0.1 layer's weights into the 0.2 layer that replaces it,
and the optimizer's state as it is (its variables follow the trainable weights, whose
order did not change).

    python -m keras_ace convert results/fig2/fig2_rts_mnist.keras fig2_rts_mnist_v2.keras
"""

import json
import zipfile

import numpy as np

from data_tools import files

# Where 0.1 stored the weights of each layer: Keras names a list's layers by their
# class (conv2d, conv2d_1, ...), and stored the symmetry net under the Model's `layers`.
OLD_SYMMETRY_NET = "layers/sequential/layers/"


def _numbered(prefix, count):
    return [prefix if i == 0 else f"{prefix}_{i}" for i in range(count)]


def old_weight_groups(config):
    """The 0.1 file's weight groups, in the order of `weight_layers` of the 0.2 model."""
    groups = []
    if config["symmetry"] is not None:
        groups += [OLD_SYMMETRY_NET + name for name in _numbered("conv2d", len(config["ssn_filters"]))]
        groups += [OLD_SYMMETRY_NET + "dense", "layers/dense", "layers/dense_1"]
    groups += [f"classifier/layers/{name}" for name in _numbered("conv2d", len(config["classifier_filters"]))]
    groups += ["classifier/layers/dense", "classifier/layers/dense_1"]
    if config["encoder"] == "dense":
        groups += [f"encoder/layers/{name}" for name in _numbered("dense", len(config["encoder_units"]))]
    else:
        groups += [f"encoder/layers/{name}" for name in _numbered("conv2d", len(config["conv_filters"]))]
    groups += ["latent_loc", "latent_log_scale", "decoder_hidden", "decoder_output"]
    if config["encoder"] == "conv":
        groups += [f"decoder_deconvs/{name}" for name in _numbered("class_conv2d_transpose", len(config["conv_filters"]))]
    if config["symmetry"] is not None:
        groups.append("frame_prior")
    return groups


def weight_layers(model):
    """The layers of an ACE that hold weights, part by part in the order they were built."""
    layers = []
    if model.symmetry is not None:
        net = model.symmetry_net
        layers += [layer for layer in net.hidden_layers if layer.weights] + [net.location, net.log_scale]
    layers += [layer for layer in model.classifier.hidden_layers if layer.weights] + [model.classifier.logits]
    ae = model.auto_encoder
    layers += [layer for layer in ae.encoder_layers if layer.weights]
    layers += [ae.latent_loc, ae.latent_log_scale, ae.decoder_hidden, ae.decoder_output, *ae.decoder_deconvs]
    if model.symmetry is not None:
        layers.append(model.symmetry_net.frame_prior)
    return layers


def _variables(group):
    """A Keras weights-file group's `vars` as the store `load_own_variables` reads."""
    return {name: np.asarray(value) for name, value in group["vars"].items()}


def convert(old_path, new_path):
    """Writes the 0.1 file `old_path` as a 0.2 file `new_path` with the same weights and optimizer state.

    Raises:
        ValueError: `old_path` is not a keras_ace 0.1 ACE, or is already 0.2
            (`DamagedFileError`, a `ValueError`, when it is not a whole `.keras` archive).
    """
    import h5py

    from keras_ace.models.ace import ACE
    from keras_ace.models.ace import LAYOUT

    files.check_keras_archive(old_path)
    with zipfile.ZipFile(old_path) as archive:
        saved = json.loads(archive.read("config.json"))
        if saved.get("class_name") != "ACE" or "image_shape" not in saved.get("config", {}):
            raise ValueError(f"{old_path} does not hold a keras_ace ACE. Received: class_name={saved.get('class_name')!r}")
        if saved["config"].get("layout") == LAYOUT:
            raise ValueError(f"{old_path} is already in the current layout (layout={LAYOUT}); nothing to convert.")
        model = ACE.from_config({**saved["config"], "layout": LAYOUT})
        model.build()
        if saved.get("compile_config"):
            model.compile_from_config(saved["compile_config"])
        with archive.open("model.weights.h5") as raw, h5py.File(raw, "r") as weights:
            for group, layer in zip(old_weight_groups(model.get_config()), weight_layers(model), strict=True):
                layer.load_own_variables(_variables(weights[group]))
            if model.optimizer is not None and "optimizer" in weights:
                model.optimizer.build(model.trainable_variables)
                model.optimizer.load_own_variables(_variables(weights["optimizer"]))
    files.save_model(model, new_path)
    return model
