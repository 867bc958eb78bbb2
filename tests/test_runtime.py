"""keras_ace.runtime: importing keras_ace changes nothing; `configure()` starts the process again with the CPU settings."""

import json
import os
import platform
import subprocess
import sys

import keras
import pytest

from keras_ace import runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
SETTINGS = ("TF_ENABLE_ONEDNN_OPTS", "XLA_FLAGS", "GLIBC_TUNABLES")


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_importing_keras_ace_leaves_the_environment_unchanged(backend):
    """Keras is imported first, so that only what keras_ace itself does is compared."""
    script = "import os, keras; before = dict(os.environ); import keras_ace; print(dict(os.environ) == before)"
    env = {**{k: v for k, v in os.environ.items() if k not in SETTINGS}, "KERAS_BACKEND": backend}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=env)
    if "No module named" in out.stderr:
        pytest.skip(f"{backend} is not installed")
    assert out.stdout.split()[-1] == "True", out.stderr[-2000:]


class TestConfigureXla:
    def test_adds_the_flag_after_the_users_own_on_jax(self, monkeypatch):
        monkeypatch.setattr(runtime, "_jaxlib_release", lambda: (0, 10))
        environ = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
        assert runtime.configure_xla(environ)
        assert environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {FLAG}"

    def test_keeps_a_users_setting_and_an_unknown_jaxlib_alone(self, monkeypatch):
        monkeypatch.setattr(runtime, "_jaxlib_release", lambda: (0, 10))
        own = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="}
        assert not runtime.configure_xla(own) and own["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type="
        monkeypatch.setattr(runtime, "_jaxlib_release", lambda: (0, 9))  # XLA would abort on a flag it lacks
        environ = {"KERAS_BACKEND": "jax"}
        assert not runtime.configure_xla(environ) and environ == {"KERAS_BACKEND": "jax"}

    def test_no_flag_on_other_backends(self, monkeypatch):
        monkeypatch.setattr(runtime, "_jaxlib_release", lambda: (0, 10))
        for backend in ("tensorflow", "torch"):
            environ = {"KERAS_BACKEND": backend}
            assert not runtime.configure_xla(environ) and environ == {"KERAS_BACKEND": backend}


def test_the_backend_is_found_as_keras_finds_it(tmp_path):
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "torch"}))
    assert runtime.keras_backend({"KERAS_HOME": str(tmp_path)}) == "torch"
    assert runtime.keras_backend({"KERAS_HOME": str(tmp_path), "KERAS_BACKEND": "jax"}) == "jax"
    assert runtime.keras_backend({"KERAS_HOME": str(tmp_path / "none")}) == "tensorflow"


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
from keras_ace import runtime
runtime.configure()
from tensorflow.python.util import _pywrap_util_port
print(_pywrap_util_port.IsMklEnabled())
"""


@pytest.mark.skipif(keras.backend.backend() != "tensorflow" or platform.machine().lower() not in runtime.X86,
                    reason="TensorFlow's oneDNN setting, on x86")
def test_tensorflow_runs_onednn_after_configure():
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    out = subprocess.run([sys.executable, "-c", ONEDNN_IN_TENSORFLOW], capture_output=True, text=True, cwd=ROOT,
                         env=env, check=True)
    assert out.stdout.split()[-1] == "True"


# runtime.py alone, by its path: `configure` needs nothing else (keras_ace's import takes seconds).
RELAUNCHED = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("runtime", os.path.join("keras_ace", "runtime.py"))
runtime = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runtime)
print("pid", os.getpid(), "tunables", repr(os.environ.get("GLIBC_TUNABLES")), "onednn",
      repr(os.environ.get("TF_ENABLE_ONEDNN_OPTS")), "args", sys.argv[1:], flush=True)
runtime.configure()
"""


def run_relaunched(env):
    result = subprocess.run([sys.executable, "-c", RELAUNCHED, "a", "b c"], capture_output=True, text=True,
                            cwd=ROOT, env=env, check=True)
    return [line for line in result.stdout.splitlines() if line.startswith("pid")]


@pytest.mark.skipif(not runtime._huge_pages_on_request(), reason="no glibc >= 2.35 with THP on madvise here")
def test_configure_starts_the_process_again_once_with_the_settings_and_the_same_arguments():
    env = {**{k: v for k, v in os.environ.items() if k not in SETTINGS}, "KERAS_BACKEND": "tensorflow"}
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


def test_configure_leaves_a_users_own_settings_alone():
    env = {**os.environ, "GLIBC_TUNABLES": "", "TF_ENABLE_ONEDNN_OPTS": "0", "KERAS_BACKEND": "tensorflow"}
    (only,) = run_relaunched(env)  # nothing missing: not started again
    assert "tunables ''" in only and "onednn '0'" in only
