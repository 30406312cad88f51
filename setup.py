"""Build fastoptim's compiled kernels.

Metadata lives in pyproject.toml; this file only describes the extension module and its
flags, which depend on the compiler found at build time:

* ``-O3 -fno-math-errno -ffp-contract=off`` (GCC/Clang): -O3 vectorises the loops,
  -fno-math-errno lets ``sqrt`` vectorise without changing any result, and
  -ffp-contract=off forbids fused multiply-adds, which would round differently from the
  NumPy reference. ``-ffast-math`` is never used: it changes results.
* OpenMP (``-fopenmp``, or ``/openmp`` with MSVC) when a tiny probe program compiles, links
  and runs with it; otherwise a serial build, announced loudly here and reported at run
  time by ``fastoptim.get_config()``.
* ``FASTOPTIM_NATIVE=1`` adds ``-march=native`` for a local build tuned to this CPU. Never
  set it when building a wheel for other machines.
* ``FASTOPTIM_DISABLE_OPENMP=1`` forces the serial build (to test the fallback).

Before anything is compiled, :func:`generate` makes what follows the rule table
(``src/fastoptim/rules.py``): the kernels' dispatch and Python-callable kernels
(``kernels/_dispatch.pxi`` and ``kernels/_wrappers.pxi``, rendered with Tempita from the
``.tp`` templates beside them, as scikit-learn does with its ``.pyx.tp`` files) and the
typing stubs of the modules whose names come from the table. None of them is committed.
"""

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_PROBE = textwrap.dedent(
    """\
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d\\n", n);
        return n > 0 ? 0 : 1;
    }
    """
)


def _warn(message):
    bar = "*" * 78
    sys.stderr.write(f"\n{bar}\n{message}\n{bar}\n\n")


def _openmp_flags(compiler_type):
    if compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        # Apple clang needs libomp (e.g. Homebrew) and the preprocessor form.
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


def _probe_openmp(compiler, compile_flags, link_flags):
    """Compile, link and run a tiny OpenMP program with the build's own compiler."""
    tmp = tempfile.mkdtemp(prefix="fastoptim-omp-")
    cwd = os.getcwd()
    try:
        os.chdir(tmp)
        with open("probe.c", "w") as f:
            f.write(OPENMP_PROBE)
        objects = compiler.compile(["probe.c"], extra_postargs=compile_flags)
        exe = "probe" + (compiler.exe_extension or "")
        # setuptools adds $LDFLAGS to the extensions' link line but not to executables';
        # the probe needs it too (e.g. -L$(brew --prefix libomp)/lib on macOS)
        extra = []
        if compiler.compiler_type != "msvc":
            extra = shlex.split(os.environ.get("LDFLAGS", ""))
        compiler.link_executable(objects, "probe", extra_postargs=link_flags + extra)
        out = subprocess.run(
            [os.path.join(tmp, exe)], capture_output=True, text=True, timeout=60
        )
        return out.returncode == 0 and int(out.stdout.strip() or 0) >= 1
    except Exception as exc:  # any compiler or runtime failure means "no OpenMP"
        sys.stderr.write(f"fastoptim: OpenMP probe failed: {exc}\n")
        return False
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)


def _compiler_name(compiler):
    if compiler.compiler_type == "msvc":
        return "msvc"
    try:
        return os.path.basename(compiler.compiler_so[0]).replace('"', "")
    except Exception:
        return compiler.compiler_type


class BuildExt(build_ext):
    def build_extensions(self):
        ctype = self.compiler.compiler_type
        if ctype == "msvc":
            compile_args = ["/O2", "/fp:precise"]
        else:
            compile_args = ["-O3", "-fno-math-errno", "-ffp-contract=off"]
        link_args = []
        if os.environ.get("FASTOPTIM_NATIVE") == "1" and ctype != "msvc":
            compile_args.append("-march=native")

        omp_compile, omp_link = _openmp_flags(ctype)
        if os.environ.get("FASTOPTIM_DISABLE_OPENMP") == "1":
            have_openmp = False
            _warn("fastoptim: FASTOPTIM_DISABLE_OPENMP=1, building WITHOUT OpenMP (serial).")
        else:
            have_openmp = _probe_openmp(self.compiler, omp_compile, omp_link)
            if not have_openmp:
                _warn(
                    "fastoptim: the compiler cannot build and run an OpenMP program.\n"
                    "Building the kernels SERIALLY: every update runs on one core.\n"
                    "Install an OpenMP runtime (libgomp / libomp) and rebuild to use all cores."
                )
        if have_openmp:
            compile_args += omp_compile
            link_args += omp_link

        for ext in self.extensions:
            target = ext.name.rsplit("_", 1)[1]
            ext_args = compile_args + (TARGET_FLAGS.get(target, []) if ctype != "msvc" else [])
            flags = " ".join(ext_args)
            ext.extra_compile_args = ext_args
            ext.extra_link_args = list(link_args)
            ext.define_macros = list(ext.define_macros or []) + [
                ("FASTOPTIM_BUILD_FLAGS", '"' + flags.replace('"', "") + '"'),
                ("FASTOPTIM_COMPILER", '"' + _compiler_name(self.compiler) + '"'),
            ]
        super().build_extensions()


# Vector targets: the same kernel source (kernels/_body.pxi) compiled once per target;
# fastoptim._dispatch picks the best one the CPU supports at import time. Only x86-64
# with GCC or Clang gets the wide targets; elsewhere the baseline alone is built.
TARGET_FLAGS = {
    "baseline": [],
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq",
               "-mprefer-vector-width=512"],
}


def _wide_targets_possible():
    import platform

    if os.environ.get("FASTOPTIM_BASELINE_ONLY") == "1":
        return False
    # macOS cross-builds (cibuildwheel, conda) say the target in ARCHFLAGS: the AVX flags
    # are for an x86_64 target only, not arm64 or universal2 slices.
    archflags = os.environ.get("ARCHFLAGS", "").split()
    if sys.platform == "darwin" and archflags and archflags != ["-arch", "x86_64"]:
        return False
    return platform.machine().lower() in ("x86_64", "amd64") and sys.platform != "win32"


HERE = os.path.dirname(os.path.abspath(__file__))


def _load(name):
    """A module of the package that imports nothing from it (rules, _stubs), by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"_fastoptim_build_{name}", os.path.join(HERE, "src", "fastoptim", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _write_if_changed(path, text):
    # an unchanged file keeps its time stamp, so Cython does not recompile for nothing
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    except OSError:
        pass
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def generate():
    """Render the kernels' templates and write the stubs from the rule table."""
    from Cython import Tempita

    rules = _load("rules").RULES
    for name in ("_dispatch", "_wrappers"):
        path = os.path.join(HERE, "kernels", f"{name}.pxi.tp")
        with open(path, encoding="utf-8") as f:
            template = Tempita.Template(f.read(), name=path)
        _write_if_changed(path[:-3], template.substitute(rules=rules))
    for name, text in _load("_stubs").all_stubs(rules).items():
        _write_if_changed(os.path.join(HERE, "src", "fastoptim", name), text)


def extensions():
    import numpy
    from Cython.Build import cythonize

    targets = ["baseline"] + (["avx2", "avx512"] if _wide_targets_possible() else [])
    exts = [
        Extension(
            f"fastoptim._kernels_{t}",
            [f"kernels/_kernels_{t}.pyx"],
            include_dirs=[numpy.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for t in targets
    ]
    exts.append(Extension("fastoptim._clip", ["kernels/_clip.pyx"]))
    return cythonize(
        exts,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
            "embedsignature": True,
        },
    )


if __name__ == "__main__":
    # Keep a stale -march=native or similar from leaking in through CFLAGS of the
    # interpreter's own build: only our flags decide value-changing behaviour.
    if "-ffast-math" in (sysconfig.get_config_var("CFLAGS") or ""):
        _warn("fastoptim: the interpreter's CFLAGS contain -ffast-math; results may differ.")
    generate()
    setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
