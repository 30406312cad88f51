"""The build: directories keyed by the settings (no stale modules), a build without OpenMP
that stops unless asked for, and one message when there is no C compiler (issue 14).

setup.py's own functions and commands are tested directly, and through builds of a tiny
C extension module (``fastoptim._kernels_baseline`` made from a dozen lines of C, a
second or two each) that use setup.py's ``build`` and ``build_ext`` commands: the same
code paths as the package's build, without compiling the kernels. Every build runs in a
subprocess with a timeout, in a temporary directory, without network.
"""

import importlib.util
import json
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
    # (not importorskip: importing pip in this process turns setuptools' distutils off)
    if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True,
                      timeout=TIMEOUT).returncode:
        pytest.skip("no pip")
    if subprocess.run([sys.executable, "-c", "import setuptools.command.bdist_wheel"],
                      capture_output=True, timeout=TIMEOUT).returncode:
        pytest.skip("this setuptools cannot make wheels (older than 70.1): install the "
                    "test extra, which brings setuptools>=77")
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


# ---------------------------------------------------------------------------------------
# the build directories' key


def test_the_key_changes_with_every_setting_and_only_with_them(fs):
    base = fs.build_key(fs.build_settings({}))
    assert base == fs.build_key(fs.build_settings({}))
    assert base == fs.build_key(fs.build_settings({"PATH": "/elsewhere", "HOME": "/x"}))
    # the switches count as on when "1", as setup.py reads them
    assert base == fs.build_key(fs.build_settings({"FASTOPTIM_NATIVE": "0"}))
    changed = {}
    for name in (*fs.SWITCHES, "CC", "CFLAGS", "LDFLAGS", "CPPFLAGS", "LDSHARED"):
        changed[name] = fs.build_key(fs.build_settings({name: "1"}))
    assert base not in changed.values()
    assert len(set(changed.values())) == len(changed)


def test_the_settings_hold_the_flags_each_target_is_built_with(fs):
    on = fs.build_settings({})
    off = fs.build_settings({"FASTOPTIM_DISABLE_OPENMP": "1", "FASTOPTIM_NATIVE": "1"})
    if sys.platform.startswith("linux"):
        assert "-fopenmp" in on["flags"]["baseline"][0]
        assert "-fopenmp" not in off["flags"]["baseline"][0]
        assert "-march=native" in off["flags"]["baseline"][0]
    assert fs.build_settings({"FASTOPTIM_BASELINE_ONLY": "1"})["targets"] == ["baseline"]


def finalized(fs, monkeypatch, env, command="build", **options):
    from setuptools import Distribution, Extension

    for name in (*fs.SWITCHES, *fs.COMPILER_ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    dist = Distribution({"name": "t", "ext_modules": [Extension("t", ["t.c"])]})
    dist.cmdclass.update(fs.cmdclass())
    cmd = dist.get_command_obj(command)
    for name, value in options.items():
        setattr(cmd, name, value)
    cmd.ensure_finalized()
    return cmd


def test_build_lib_and_build_temp_are_keyed_by_the_settings(fs, monkeypatch):
    default = finalized(fs, monkeypatch, {})
    again = finalized(fs, monkeypatch, {})
    serial = finalized(fs, monkeypatch, {"FASTOPTIM_DISABLE_OPENMP": "1"})
    baseline = finalized(fs, monkeypatch, {"FASTOPTIM_BASELINE_ONLY": "1"})
    key = fs.build_key(fs.build_settings({}))
    assert default.build_lib.endswith("-" + key) and default.build_temp.endswith("-" + key)
    assert Path(default.build_lib).parent == Path(default.build_temp).parent == Path("build")
    assert (again.build_lib, again.build_temp) == (default.build_lib, default.build_temp)
    dirs = {(c.build_lib, c.build_temp) for c in (default, serial, baseline)}
    assert len(dirs) == 3 and len({d for pair in dirs for d in pair}) == 6
    # build_ext (and install, bdist_wheel, through build) use build's directories
    ext = finalized(fs, monkeypatch, {"FASTOPTIM_DISABLE_OPENMP": "1"}, "build_ext")
    assert (ext.build_lib, ext.build_temp) == (serial.build_lib, serial.build_temp)


def test_directories_given_on_the_command_line_are_kept(fs, monkeypatch):
    cmd = finalized(fs, monkeypatch, {}, build_lib="mylib", build_temp="mytemp")
    assert (cmd.build_lib, cmd.build_temp) == ("mylib", "mytemp")


# ---------------------------------------------------------------------------------------
# keyed builds of the tiny module


def built(project, fs, env):
    """The tiny module that build_ext made for the settings in `env`."""
    key = fs.build_key(fs.build_settings(env))
    found = list((project / "build").glob(f"lib.*-{key}/fastoptim/_kernels_baseline*"))
    assert len(found) == 1, sorted(p.name for p in (project / "build").iterdir())
    return found[0]


def test_switching_settings_rebuilds_and_switching_back_reuses(tiny, fs):
    parallel = clean_env(fs)
    serial = clean_env(fs, FASTOPTIM_DISABLE_OPENMP="1")
    first = run_setup(tiny, parallel, "build_ext")
    need_openmp(first)
    assert first.returncode == 0, first.stderr
    a = built(tiny, fs, parallel)
    assert facts(a)[0] is True and "-fopenmp" in facts(a)[1]
    stamp_a = a.stat().st_mtime_ns

    second = run_setup(tiny, serial, "build_ext")
    assert second.returncode == 0, second.stderr
    b = built(tiny, fs, serial)
    assert b.parent.parent != a.parent.parent
    assert facts(b) == (False, "-O3 -fno-math-errno -ffp-contract=off")

    # back to the first settings: its module is reused as it is, not rebuilt
    third = run_setup(tiny, parallel, "build_ext")
    assert third.returncode == 0, third.stderr
    assert "building 'fastoptim._kernels_baseline'" not in third.stdout + third.stderr
    assert a.stat().st_mtime_ns == stamp_a and facts(a)[0] is True


def test_a_module_recorded_with_other_flags_is_rebuilt(tiny, fs):
    env = clean_env(fs, FASTOPTIM_DISABLE_OPENMP="1")
    assert run_setup(tiny, env, "build_ext").returncode == 0
    module = built(tiny, fs, env)
    stamps = list((tiny / "build").glob("temp.*/fastoptim-build.json"))
    assert len(stamps) == 1
    record = json.loads(stamps[0].read_text())
    assert str(module.resolve()) in record["modules"]
    # as if another compiler, or another setup.py, had made it
    record["modules"][str(module.resolve())] = "another signature"
    stamps[0].write_text(json.dumps(record))
    again = run_setup(tiny, env, "build_ext")
    assert again.returncode == 0, again.stderr
    assert "was built with other settings: rebuilding it" in again.stderr
    assert "building 'fastoptim._kernels_baseline'" in again.stdout + again.stderr


def test_in_place_builds_follow_the_settings_and_drop_other_targets(tiny, fs):
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    package = tiny / "fastoptim"
    package.mkdir()
    # left by an earlier build with AVX targets: this build makes none, so it must go,
    # from the build directory and from the package (where an editable install puts them)
    env = clean_env(fs, FASTOPTIM_DISABLE_OPENMP="1")
    key = fs.build_key(fs.build_settings(env))
    lib = tiny / "build" / f"lib.{sysconfig.get_platform()}-{sys.implementation.cache_tag}-{key}"
    stale = [package / f"_kernels_avx2{suffix}", lib / "fastoptim" / f"_kernels_avx512{suffix}"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"stale")
    out = run_setup(tiny, env, "build_ext", "--inplace")
    assert out.returncode == 0, out.stderr
    assert not any(p.exists() for p in stale), out.stderr
    assert "removing" in out.stderr
    inplace = package / f"_kernels_baseline{suffix}"
    assert facts(inplace)[0] is False

    parallel = run_setup(tiny, clean_env(fs), "build_ext", "--inplace")
    need_openmp(parallel)
    assert parallel.returncode == 0, parallel.stderr
    assert facts(inplace)[0] is True


