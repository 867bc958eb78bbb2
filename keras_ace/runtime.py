"""Process settings that make training faster on a CPU, set before the work starts.

Three costs outside the model, measured on 2-core x86 CPUs (docs/speed.md):

- XLA:CPU in jaxlib 0.10 hands convolutions to YNNPACK, whose kernel gradient of a
  3x3 convolution at 21x21x32 -> 64 takes 330 ms against Eigen's 67 ms (TensorFlow's
  oneDNN: 25 ms). `configure_xla` takes convolutions away from YNNPACK (dots and
  reductions stay there, where they are fast); keras_ace calls it when imported.
- glibc maps every large buffer afresh (XLA's temporaries each step, PyTorch's gradients),
  and with transparent huge pages on "madvise", as Debian ships them, the kernel faults
  them in 4 KB at a time: writing a new 251 MB array takes 100 ms instead of 27.
  `glibc.malloc.hugetlb=1` asks for huge pages. Even so the kernel zeroes every fresh
  buffer again on every step (JAX, Figure 3: 1.2 GB of temporaries, 11 % of the step);
  one arena, no `mmap` and no trimming keep freed memory in the heap for the next
  step instead. glibc reads these settings only when a process starts, so
  `relaunch_with_huge_pages` starts the process again with them.
- TensorFlow turns its oneDNN kernels on by itself only on x86 CPUs with AVX-512 VNNI,
  BF16 or AMX. On an AVX2 CPU (2-core AMD EPYC) they made Figure 3's training step 35 %
  shorter. `enable_onednn` asks for them; TensorFlow reads the setting when imported.
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


def enable_onednn(environ=None):
    """Sets `TF_ENABLE_ONEDNN_OPTS=1` on an x86 CPU, where the user has not set it.

    TensorFlow reads it when first imported, so this counts only before that: keras_ace
    calls it when imported (before it imports Keras), and `relaunch_with_huge_pages`
    passes it on to the process it starts. Other backends never read it. Returns whether
    it was set.
    """
    environ = os.environ if environ is None else environ
    if ONEDNN_SETTING in environ or platform.machine().lower() not in X86:
        return False
    environ[ONEDNN_SETTING] = "1"
    return True


def configure_xla(environ=None):
    """Adds `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution` to `XLA_FLAGS`.

    Only on the JAX backend, for a jaxlib known to have the flag, and where the user has
    not set it. XLA reads its flags when JAX first computes, so this counts only when
    called before that (keras_ace calls it when imported). Returns whether it was added.
    """
    import keras

    environ = os.environ if environ is None else environ
    if keras.backend.backend() != "jax":
        return False
    flags = environ.get("XLA_FLAGS", "")
    if YNN_FLAG in flags or _jaxlib_release() not in YNN_FLAG_JAXLIB:
        return False
    environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}=-individual_convolution".strip()
    return True


def relaunch_with_huge_pages():
    """Starts this Python process again with glibc asked for transparent huge pages and to keep freed memory.

    Does nothing where `GLIBC_TUNABLES` is set (the user's choice; `GLIBC_TUNABLES=`
    turns this off) or where it cannot help: not Linux with glibc 2.35 or later, or
    transparent huge pages not on "madvise". Call it first thing in a script's `main`
    (never in a library function: it replaces the running process, same arguments).
    The new process also gets TensorFlow's oneDNN kernels (`enable_onednn`), which a
    script that imported Keras before keras_ace was too late to ask for.
    """
    if "GLIBC_TUNABLES" in os.environ or not _huge_pages_on_request():
        return
    os.environ["GLIBC_TUNABLES"] = MALLOC_TUNABLES
    enable_onednn()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


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
