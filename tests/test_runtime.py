"""keras_ace.runtime: the XLA flag and TensorFlow's oneDNN setting made when keras_ace is imported, and the
relaunch with huge pages."""

import os
import platform
import subprocess
import sys

import keras
import pytest

from keras_ace import runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="an XLA flag for JAX")
class TestConfigureXla:
    def test_adds_the_flag_after_the_users_own(self, monkeypatch):
        monkeypatch.setattr(runtime, "_jaxlib_release", lambda: (0, 10))
        environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
        assert runtime.configure_xla(environ)
        assert environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {FLAG}"

    def test_keeps_a_users_setting_and_an_unknown_jaxlib_alone(self, monkeypatch):
        monkeypatch.setattr(runtime, "_jaxlib_release", lambda: (0, 10))
        own = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="}
        assert not runtime.configure_xla(own) and own == {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="}
        monkeypatch.setattr(runtime, "_jaxlib_release", lambda: (0, 9))  # XLA would abort on a flag it lacks
        environ = {}
        assert not runtime.configure_xla(environ) and environ == {}

    def test_set_in_this_process_when_keras_ace_was_imported(self):
        assert FLAG in os.environ.get("XLA_FLAGS", "") or runtime._jaxlib_release() not in runtime.YNN_FLAG_JAXLIB


@pytest.mark.skipif(keras.backend.backend() == "jax", reason="the other backends")
def test_no_xla_flag_on_other_backends():
    environ = {}
    assert not runtime.configure_xla(environ) and environ == {}


def test_enable_onednn_on_x86_unless_the_user_chose(monkeypatch):
    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    environ = {}
    assert runtime.enable_onednn(environ) and environ == {"TF_ENABLE_ONEDNN_OPTS": "1"}
    own = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert not runtime.enable_onednn(own) and own == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    monkeypatch.setattr(runtime.platform, "machine", lambda: "aarch64")  # not measured there
    environ = {}
    assert not runtime.enable_onednn(environ) and environ == {}


ONEDNN_IN_TENSORFLOW = """
import keras_ace
from tensorflow.python.util import _pywrap_util_port
print(_pywrap_util_port.IsMklEnabled())
"""


@pytest.mark.skipif(keras.backend.backend() != "tensorflow" or platform.machine().lower() not in runtime.X86,
                    reason="TensorFlow's oneDNN setting, on x86")
def test_tensorflow_imported_by_keras_ace_runs_onednn():
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    out = subprocess.run([sys.executable, "-c", ONEDNN_IN_TENSORFLOW], capture_output=True, text=True, cwd=ROOT,
                         env=env, check=True)
    assert out.stdout.split()[-1] == "True"


# runtime.py alone, by its path: the relaunch needs nothing else (keras_ace's import takes seconds).
RELAUNCHED = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("runtime", os.path.join("keras_ace", "runtime.py"))
runtime = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runtime)
print("pid", os.getpid(), "tunables", repr(os.environ.get("GLIBC_TUNABLES")), "onednn",
      repr(os.environ.get("TF_ENABLE_ONEDNN_OPTS")), "args", sys.argv[1:], flush=True)
runtime.relaunch_with_huge_pages()
"""


def run_relaunched(env):
    result = subprocess.run([sys.executable, "-c", RELAUNCHED, "a", "b c"], capture_output=True, text=True,
                            cwd=ROOT, env=env, check=True)
    return [line for line in result.stdout.splitlines() if line.startswith("pid")]


@pytest.mark.skipif(not runtime._huge_pages_on_request(), reason="no glibc >= 2.35 with THP on madvise here")
def test_relaunches_once_with_huge_pages_and_the_same_arguments():
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "TF_ENABLE_ONEDNN_OPTS")}
    first, second = run_relaunched(env)
    assert first.split()[1] == second.split()[1]  # the same process, started again
    assert "tunables None" in first and f"tunables {runtime.MALLOC_TUNABLES!r}" in second
    assert "onednn None" in first
    assert ("onednn '1'" in second) == (platform.machine().lower() in runtime.X86)
    assert first.endswith("args ['a', 'b c']") and second.endswith("args ['a', 'b c']")


# A 256 MB buffer written, freed and written again, by a thread other than the main one
# (XLA's and PyTorch's backward threads allocate a step's buffers): the page faults of the
# second time.
SECOND_FAULTS = """
import resource, threading, numpy as np
def step():
    np.ones(2**26, np.float32).sum()
faults = []
def steps():
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
thread = threading.Thread(target=steps)
thread.start()
thread.join()
print(faults[0])
"""


@pytest.mark.skipif(not runtime._huge_pages_on_request(), reason="no glibc >= 2.35 with THP on madvise here")
def test_the_relaunch_settings_reuse_a_freed_buffer_without_page_faults():
    def second_faults(tunables):
        env = {**os.environ, "GLIBC_TUNABLES": tunables}
        out = subprocess.run([sys.executable, "-c", SECOND_FAULTS], capture_output=True, text=True, env=env, check=True)
        return int(out.stdout.split()[-1])

    # glibc's default maps the buffer afresh: 64 faults at least (2 MB huge pages), 65536 in 4 KB pages.
    assert second_faults("glibc.malloc.hugetlb=1") >= 64
    assert second_faults(runtime.MALLOC_TUNABLES) < 16


def test_a_users_glibc_tunables_turn_the_relaunch_off():
    (only,) = run_relaunched({**os.environ, "GLIBC_TUNABLES": ""})
    assert "tunables ''" in only
