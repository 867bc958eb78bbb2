"""Converting `.keras` files saved in older layouts to today's.

- Layout 1 (keras_ace 0.1): the ACE was one flat Model; the symmetry statistics net,
  classifier and encoder were `Sequential` blocks and the latent heads and decoders
  attributes of the ACE, so a saved file stores each layer's weights under those names.
  Since 0.2 they live in `SymmetryStatisticsNet`, `Classifier` and `AutoEncoder`.
- Layout 2 (keras_ace 0.2 and 0.3): the per-class layers kept one variable per class
  (`kernel_0`, ..., `bias_0`, ...); since 0.4 each holds one stacked `kernel` and `bias`.

The layers and their order are the same in every layout: `convert` reads each old
layer's weights into the layer that replaces it (`ClassConditional.load_own_variables`
stacks per-class variables), and the optimizer's moments of per-class variables stacked
the same way.

    python -m keras_ace convert results/fig2/fig2_rts_mnist.keras fig2_rts_mnist_v2.keras
"""

import json
import zipfile

import numpy as np

# The weight layout of saved files: 2 since the three parts of Figure 5 are Models of
# their own (0.1 files have none), 3 since each per-class layer holds one stacked kernel
# and bias (0.4).
LAYOUT = 3
# What files saved before 0.3 were trained with; `current_config` fills them in.
BEFORE_0_3 = {"padding": "zeros", "color_inverse": "to_observation"}
# Where 0.1 stored the weights of each layer: Keras names a list's layers by their
# class (conv2d, conv2d_1, ...), and stored the symmetry net under the Model's `layers`.
OLD_SYMMETRY_NET = "layers/sequential/layers/"


def current_config(config):
    """A saved ACE's config as `ACE(**config)` takes it: the settings of older files filled in or renamed, the layout checked.

    Raises:
        ValueError: the file's weights are in an older layout (`convert` it once).
    """
    config = {**BEFORE_0_3, **config}
    if "symmetry_prior_scale" in config:  # its name before 0.5
        config["symmetry_gains"] = config.pop("symmetry_prior_scale")
    layout = config.pop("layout", 1)
    if layout != LAYOUT:
        saved_by = {1: "keras_ace 0.1 (weights under its old names)", 2: "keras_ace 0.2 or 0.3 (one variable per class)"}
        raise ValueError(
            f"This .keras file was saved by {saved_by.get(layout, f'layout {layout}')}; convert it once: "
            "python -m keras_ace convert OLD.keras NEW.keras"
        )
    return config


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


def _load_layout_2_weights(model, archive):
    """Layout 2 stores weights under today's names: Keras' own loader reads them (the optimizer apart)."""
    import os
    import tempfile
    import warnings

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.weights.h5")
        with open(path, "wb") as out:
            out.write(archive.read("model.weights.h5"))
        with warnings.catch_warnings():
            # Its optimizer has more variables than today's; `_load_optimizer_state` reads it.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model.load_weights(path)


def _load_optimizer_state(model, store):
    """The saved optimizer's state, per-class variables' moments stacked like the variables.

    An optimizer of the same settings is built on stand-ins for the old variables (each
    stacked variable as one per class), reads the file's state in Keras' own order, and
    hands its moments over.
    """
    import keras

    from keras_ace import backend_ops
    from keras_ace.layers.class_conditional import ClassConditional

    optimizer = model.optimizer
    classes = {id(v): layer.num_classes for layer in weight_layers(model) if isinstance(layer, ClassConditional)
               for v in (layer.kernel, layer.bias)}
    stand_ins = []  # (today's variable, its old variables)
    for variable in model.trainable_variables:
        count = classes.get(id(variable))
        shapes = [variable.shape] if count is None else [variable.shape[1:]] * count
        olds = [keras.Variable(np.zeros(shape, variable.dtype), name=f"old_{len(stand_ins)}_{i}")
                for i, shape in enumerate(shapes)]
        stand_ins.append((variable, olds))
    old = type(optimizer).from_config(optimizer.get_config())
    old.build([v for _, olds in stand_ins for v in olds])
    if len(store) != len(old.variables):
        raise ValueError(f"The saved optimizer has {len(store)} variables; an ACE of this config has {len(old.variables)}.")
    old.load_own_variables(store)
    for variable, olds in stand_ins:
        today = backend_ops.adam_moments(optimizer, variable)
        if today is None:
            raise ValueError(f"Only Adam's state converts. Received: optimizer={type(optimizer).__name__}")
        for slot, old_slots in zip(today, zip(*(backend_ops.adam_moments(old, v) for v in olds))):
            slot.assign(np.reshape(np.stack([keras.ops.convert_to_numpy(s) for s in old_slots]), slot.shape))
    optimizer.iterations.assign(old.iterations)
    if hasattr(optimizer, "skipped_steps"):
        optimizer.skipped_steps.assign(old.skipped_steps)


def convert(old_path, new_path):
    """Writes the layout 1 or 2 file `old_path` as a file of today's layout `new_path`, same weights and optimizer state.

    Raises:
        ValueError: `old_path` is not a keras_ace ACE, or is already in today's layout
            (`DamagedFileError`, a `ValueError`, when it is not a whole `.keras` archive).
    """
    import h5py

    from data_tools import files  # the command line's safe file handling; the library proper never needs it
    from keras_ace.models.ace import ACE

    files.check_keras_archive(old_path)
    with zipfile.ZipFile(old_path) as archive:
        saved = json.loads(archive.read("config.json"))
        if saved.get("class_name") != "ACE" or "image_shape" not in saved.get("config", {}):
            raise ValueError(f"{old_path} does not hold a keras_ace ACE. Received: class_name={saved.get('class_name')!r}")
        layout = saved["config"].get("layout", 1)
        if layout == LAYOUT:
            raise ValueError(f"{old_path} is already in the current layout (layout={LAYOUT}); nothing to convert.")
        model = ACE.from_config({**saved["config"], "layout": LAYOUT})
        model.build()
        if saved.get("compile_config"):
            model.compile_from_config(saved["compile_config"])
        if model.optimizer is not None:
            model.optimizer.build(model.trainable_variables)
        if layout != 1:
            _load_layout_2_weights(model, archive)
        with archive.open("model.weights.h5") as raw, h5py.File(raw, "r") as weights:
            if layout == 1:
                for group, layer in zip(old_weight_groups(model.get_config()), weight_layers(model), strict=True):
                    layer.load_own_variables(_variables(weights[group]))
            if model.optimizer is not None and "optimizer" in weights:
                _load_optimizer_state(model, _variables(weights["optimizer"]))
    files.save_model(model, new_path)
    return model
