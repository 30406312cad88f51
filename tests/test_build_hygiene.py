"""The build: a build without OpenMP that stops unless asked for, and one message when
there is no C compiler (issue 14).

setup.py's own functions and commands are tested directly, and through builds of a tiny
C extension module (``fastoptim._kernels_baseline`` made from a dozen lines of C, a
second or two each) that use setup.py's ``build_ext`` command: the same
code paths as the package's build, without compiling the kernels. Every build runs in a
subprocess with a timeout, in a temporary directory, without network.
"""

import importlib.util
import os
import shlex
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

SETUP_PY = Path(__file__).resolve().parents[1] / "setup.py"

pytestmark = pytest.mark.skipif(not SETUP_PY.is_file(),
                                reason="no setup.py: tests run outside the source tree")

TIMEOUT = 120  # seconds, for any one build


@pytest.fixture(scope="module")
def fs():
    """setup.py as a module (its ``__main__`` part, which builds, does not run)."""
    pytest.importorskip("setuptools")
    spec = importlib.util.spec_from_file_location("fastoptim_setup_under_test", SETUP_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SWITCHES = ("FASTOPTIM_DISABLE_OPENMP", "FASTOPTIM_BASELINE_ONLY", "FASTOPTIM_NATIVE")


def clean_env(fs, **extra):
    """os.environ without the build's switches, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in SWITCHES}
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------
# the messages


def test_a_missing_compiler_gets_one_message_that_says_what_to_install(fs, monkeypatch):
    ccompiler = pytest.importorskip("setuptools._distutils.ccompiler")
    dsysconfig = pytest.importorskip("setuptools._distutils.sysconfig")
    if sys.platform == "win32":
        pytest.skip("MSVC ignores CC")
    monkeypatch.setenv("CC", "/nonexistent/cc")
    compiler = ccompiler.new_compiler()
    dsysconfig.customize_compiler(compiler)
    message = fs.check_compiler(compiler)
    assert message is not None
    assert "needs a C compiler" in message and "'/nonexistent/cc' (from $CC)" in message
    for hint in ("build-essential", "xcode-select --install", "Build Tools", "wheel"):
        assert hint in message
    assert "OpenMP" not in message and "No such file" in message  # the reason, once


def test_the_compiler_check_passes_with_a_working_compiler(fs, monkeypatch):
    ccompiler = pytest.importorskip("setuptools._distutils.ccompiler")
    dsysconfig = pytest.importorskip("setuptools._distutils.sysconfig")
    compiler = ccompiler.new_compiler()
    dsysconfig.customize_compiler(compiler)
    problem = fs.check_compiler(compiler)
    if problem and "needs a C compiler" in problem:
        pytest.skip("no working C compiler here")
    assert problem is None


def test_missing_python_headers_get_their_own_message(fs, monkeypatch):
    ccompiler = pytest.importorskip("setuptools._distutils.ccompiler")
    dsysconfig = pytest.importorskip("setuptools._distutils.sysconfig")
    compiler = ccompiler.new_compiler()
    dsysconfig.customize_compiler(compiler)
    if fs.check_compiler(compiler) is not None:
        pytest.skip("no working C compiler here")
    # a compiler that works, looking for Python.h where there is none
    monkeypatch.setattr(fs.sysconfig, "get_path", lambda name: "/nonexistent/include")
    message = fs.check_compiler(compiler)
    assert message is not None and "Python.h" in message and "python3-dev" in message
    assert "needs a C compiler" not in message and "OpenMP" not in message


def test_the_no_openmp_message_says_how_to_get_openmp_or_ask_for_serial(fs):
    message = fs.no_openmp_message("cc", "omp.h: No such file or directory")
    assert "omp.h: No such file or directory" in message and "ONE core" in message
    for hint in ("libgomp", "libomp-dev", "brew install libomp", "CPPFLAGS", "LDFLAGS",
                 "FASTOPTIM_DISABLE_OPENMP=1 pip install ."):
        assert hint in message


# ---------------------------------------------------------------------------------------
# builds of a tiny extension module with setup.py's commands

TINY_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#ifdef _OPENMP
#define TINY_OPENMP 1
#else
#define TINY_OPENMP 0
#endif
#ifndef FASTOPTIM_BUILD_FLAGS
#define FASTOPTIM_BUILD_FLAGS "unknown"
#endif
static PyObject *flags(PyObject *m, PyObject *a) {
    return PyUnicode_FromString(FASTOPTIM_BUILD_FLAGS);
}
static PyObject *openmp(PyObject *m, PyObject *a) { return PyBool_FromLong(TINY_OPENMP); }
static PyMethodDef methods[] = {{"flags", flags, METH_NOARGS, NULL},
                                {"openmp", openmp, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_kernels_baseline", NULL, -1, methods};
PyMODINIT_FUNC PyInit__kernels_baseline(void) { return PyModule_Create(&def); }
"""

TINY_SETUP = """\
import importlib.util
from setuptools import Extension, setup
spec = importlib.util.spec_from_file_location("fastoptim_setup", {setup_py!r})
fs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fs)
setup(name="fastoptim-tiny", version="0", cmdclass=fs.cmdclass(),
      ext_modules=[Extension("fastoptim._kernels_baseline", ["tiny.c"])])
"""


@pytest.fixture
def tiny(tmp_path, fs):
    if sys.platform == "win32":
        pytest.skip("the tiny builds use a Unix compiler")
    (tmp_path / "tiny.c").write_text(TINY_C)
    (tmp_path / "setup.py").write_text(TINY_SETUP.format(setup_py=str(SETUP_PY)))
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        """))
    return tmp_path


def run_setup(project, env, *args):
    return subprocess.run([sys.executable, "setup.py", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)


def only_module(project):
    """The one tiny module under build/lib.*/."""
    found = list((project / "build").glob("lib.*/fastoptim/_kernels_baseline*"))
    assert len(found) == 1, found
    return found[0]


def facts(path):
    """(openmp, flags) of a built tiny module, read in a fresh interpreter."""
    code = ("import importlib.util, sys\n"
            "spec = importlib.util.spec_from_file_location('fastoptim._kernels_baseline', "
            "sys.argv[1])\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "print(m.openmp(), m.flags(), sep='|')")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, timeout=TIMEOUT, check=True)
    openmp, flags = out.stdout.strip().split("|")
    return openmp == "True", flags


def need_openmp(out):
    if out.returncode and "cannot build and run an OpenMP program" in out.stdout + out.stderr:
        pytest.skip("this compiler has no OpenMP")
    if out.returncode and "needs a C compiler" in out.stdout + out.stderr:
        pytest.skip("no working C compiler here")


def test_without_a_compiler_the_build_says_so_once(tiny, fs):
    out = run_setup(tiny, clean_env(fs, CC="/nonexistent/cc"), "build_ext")
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert text.count("needs a C compiler to build from source") == 1
    assert "OpenMP" not in text and "Traceback" not in text
    assert "building 'fastoptim._kernels_baseline'" not in text  # stopped before it


@pytest.fixture
def no_openmp_cc(tmp_path):
    """A CC that compiles C but refuses -fopenmp: a compiler without OpenMP."""
    real = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    wrapper = tmp_path / "no-openmp-cc"
    wrapper.write_text("#!/bin/sh\n"
                       'for a in "$@"; do case "$a" in -fopenmp*)\n'
                       '  echo "no-openmp-cc: unsupported option $a" >&2; exit 1;; esac; done\n'
                       f'exec {" ".join(shlex.quote(w) for w in shlex.split(real))} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def test_plain_pip_shows_why_a_build_without_openmp_stops(tiny, fs, no_openmp_cc):
    """pip hides a successful build's output (unless -v) but shows a failed one's: the
    build stops, so the user sees the message under a plain `pip install .`."""
    pytest.importorskip("pip")
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-build-isolation", "--no-deps",
         "--no-index", "-w", "dist"],
        cwd=tiny, env=clean_env(fs, CC=no_openmp_cc, PIP_NO_INPUT="1"),
        capture_output=True, text=True, timeout=TIMEOUT)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    if "needs a C compiler" in text:
        pytest.skip("no working C compiler here")
    assert "cannot build and run an OpenMP program" in text
    assert "FASTOPTIM_DISABLE_OPENMP=1 pip install ." in text
    assert "brew install libomp" in text and "Traceback" not in text
    assert not list((tiny / "dist").glob("*.whl"))


def test_the_serial_build_asked_for_builds_and_says_so(tiny, fs, no_openmp_cc):
    env = clean_env(fs, CC=no_openmp_cc, FASTOPTIM_DISABLE_OPENMP="1")
    out = run_setup(tiny, env, "build_ext")
    assert out.returncode == 0, out.stderr
    assert "building WITHOUT OpenMP (serial)" in out.stderr
    assert facts(only_module(tiny))[0] is False
