"""Process settings that make training faster on a CPU: one explicit call, `configure()`.

Importing keras_ace changes nothing outside it. A script that wants the speed of the figure
scripts calls `keras_ace.runtime.configure()` first thing; the figure scripts, the
benchmarks and `python -m keras_ace` do. Three costs outside the model, measured on 2-core
x86 CPUs (docs/speed.md):

- XLA:CPU in jaxlib 0.10 and 0.11 hands convolutions to YNNPACK, several times slower here
  than Eigen for the presets' convolution gradients. `configure_xla` takes convolutions
  away from YNNPACK (dots and reductions stay there, where they are fast).
- glibc maps every large buffer afresh (XLA's temporaries each step, PyTorch's gradients),
  and with transparent huge pages on "madvise", as Debian ships them, the kernel faults
  them in 4 KB at a time and zeroes them again every step. `MALLOC_TUNABLES` asks for
  huge pages, one arena, no `mmap` and no trimming, so freed memory stays in the heap for
  the next step. The process keeps its peak memory until it ends.
- TensorFlow turns its oneDNN kernels on by itself only on x86 CPUs with AVX-512 VNNI,
  BF16 or AMX; on AVX2 CPUs they shorten the presets' training steps. `enable_onednn`
  asks for them.

glibc and TensorFlow read their settings only when the process starts or first imports
TensorFlow, and XLA when JAX first computes, so `configure()` starts the process again,
with the same arguments, where a setting is missing.

Example:
>>> import keras_ace
>>> keras_ace.runtime.configure()  # doctest: +SKIP
"""

import os
import platform
import sys

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# XLA aborts the process on a flag it does not know; these jaxlib releases know this one.
YNN_FLAG_JAXLIB = ((0, 10), (0, 11))
# Huge pages; one arena (a thread's own arena maps large blocks whatever `mmap_max` says);
# large blocks from the heap, which is never given back (64 GiB threshold): a step reuses
# the last step's memory. The process keeps its peak memory until it ends.
MALLOC_TUNABLES = ":".join([
    "glibc.malloc.hugetlb=1",
    "glibc.malloc.arena_max=1",
    "glibc.malloc.mmap_max=0",
    f"glibc.malloc.trim_threshold={2**36}",
])
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"
ONEDNN_SETTING = "TF_ENABLE_ONEDNN_OPTS"
X86 = ("x86_64", "amd64")


def enable_onednn(environ):
    """Sets `TF_ENABLE_ONEDNN_OPTS=1` in `environ` on an x86 CPU, where it is not set. Returns whether it was set."""
    if ONEDNN_SETTING in environ or platform.machine().lower() not in X86:
        return False
    environ[ONEDNN_SETTING] = "1"
    return True


def configure_xla(environ):
    """Adds `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution` to `XLA_FLAGS` in `environ`.

    Only on the JAX backend, for a jaxlib known to have the flag (XLA aborts on a flag it
    does not know), and where the user has not set it. Returns whether it was added.
    """
    if keras_backend(environ) != "jax":
        return False
    flags = environ.get("XLA_FLAGS", "")
    if YNN_FLAG in flags or _jaxlib_release() not in YNN_FLAG_JAXLIB:
        return False
    environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}=-individual_convolution".strip()
    return True


def keras_backend(environ):
    """The backend Keras takes in a process with `environ`, found as Keras finds it, without importing Keras.

    `KERAS_BACKEND`, else the `backend` of `$KERAS_HOME/keras.json` (default `~/.keras`), else TensorFlow.
    """
    import json

    if "KERAS_BACKEND" in environ:
        return environ["KERAS_BACKEND"]
    home = environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def enable_malloc_tunables(environ):
    """Sets `GLIBC_TUNABLES` to `MALLOC_TUNABLES` in `environ` where it can help and the user has not set it.

    `GLIBC_TUNABLES=` (empty) turns it off. Returns whether it was set.
    """
    if "GLIBC_TUNABLES" in environ or not _huge_pages_on_request():
        return False
    environ["GLIBC_TUNABLES"] = MALLOC_TUNABLES
    return True


def settings(environ=None):
    """The process environment `configure()` starts with: `environ` (default `os.environ`) with the settings added."""
    environ = dict(os.environ if environ is None else environ)
    enable_onednn(environ)
    configure_xla(environ)
    enable_malloc_tunables(environ)
    return environ


def configure():
    """Starts this Python process again with the CPU settings added; does nothing where they are all there.

    Each setting is left alone where the environment already has it (the user's choice),
    so the process started again finds them all and goes on. Call it first thing in a
    script's `main`, never in a library function: it replaces the running process, same
    arguments. Returns False where nothing was missing.
    """
    environ = settings()
    if environ == dict(os.environ):
        return False
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environ)


def _huge_pages_on_request():
    """True on Linux with glibc >= 2.35 (the `hugetlb` tunable) and THP set to "madvise"."""
    if sys.platform != "linux":
        return False
    libc, version = platform.libc_ver()
    if libc != "glibc" or tuple(int(p) for p in version.split(".")[:2]) < (2, 35):
        return False
    try:
        with open(THP_SETTING) as f:
            return "[madvise]" in f.read()
    except OSError:
        return False


def _jaxlib_release():
    """(major, minor) of the installed jaxlib, or None."""
    from importlib import metadata

    try:
        return tuple(int(p) for p in metadata.version("jaxlib").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return None
