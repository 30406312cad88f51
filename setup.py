"""Build fastoptim's compiled kernels.

Metadata lives in pyproject.toml; this file only describes the extension module and its
flags, which depend on the compiler found at build time:

* ``-O3 -fno-math-errno -ffp-contract=off`` (GCC/Clang): -O3 vectorises the loops,
  -fno-math-errno lets ``sqrt`` vectorise without changing any result, and
  -ffp-contract=off forbids fused multiply-adds, which would round differently from the
  NumPy reference. ``-ffast-math`` is never used: it changes results.
* First a check that the compiler compiles and links a C program at all and finds
  ``Python.h``: without that the build stops with one message saying what to install
  (:func:`check_compiler`).
* OpenMP (``-fopenmp``, or ``/openmp`` with MSVC) when a tiny probe program compiles, links
  and runs with it. When it does not, the build STOPS with a message saying how to get
  OpenMP or how to ask for the serial build: pip shows a failing build's output, but
  hides a successful one's unless ``-v``, so a warning would go unseen and a serial build
  would silently look like a parallel one.
* ``FASTOPTIM_NATIVE=1`` adds ``-march=native`` for a local build tuned to this CPU. Never
  set it when building a wheel for other machines.
* ``FASTOPTIM_DISABLE_OPENMP=1`` builds the serial kernels on purpose
  (``fastoptim.get_config()["openmp"]`` then says False).
* ``FASTOPTIM_BASELINE_ONLY=1`` builds only the portable kernels.

The build directories (``build/lib.*``, ``build/temp.*``) are keyed by these settings
(:func:`build_settings`, :func:`build_key`): pip >= 21.3 builds in the source tree, so
``build/`` outlives a ``pip install .``, and setuptools reuses any module there that is
newer than its sources, whatever flags built it. Switching a setting builds in another
directory; switching back reuses the first. Each module's compiler (path, --version),
compiler command and flags are also recorded (``fastoptim-build.json`` in the temp
directory): a module recorded with other ones (or with none) is rebuilt, and the
kernels of a CPU target not in this build are removed from the build and, for in-place
and editable builds, from ``src/fastoptim/``.

Before anything is compiled, :func:`generate` makes what follows the rule table
(``src/fastoptim/rules.py``): the kernels' dispatch and Python-callable kernels
(``kernels/_dispatch.pxi`` and ``kernels/_wrappers.pxi``, rendered with Tempita from the
``.tp`` templates beside them, as scikit-learn does with its ``.pyx.tp`` files) and the
typing stubs of the modules whose names come from the table. None of them is committed.
"""

import contextlib
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import threading

from setuptools import Extension, setup
from setuptools.command.build import build
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

# check_compiler's two programs: any C program, then one that includes Python.h
C_PROBE = "int main(void) { return 0; }\n"
PYTHON_H_PROBE = "#include <Python.h>\nint fastoptim_probe(void) { return PY_VERSION_HEX > 0; }\n"

# Vector targets: the same kernel source (kernels/_body.pxi) compiled once per target;
# fastoptim._dispatch picks the best one the CPU supports at import time. Only x86-64
# with GCC or Clang gets the wide targets; elsewhere the baseline alone is built.
TARGET_FLAGS = {
    "baseline": [],
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq",
               "-mprefer-vector-width=512"],
}

# What the build reads from the environment. The switches count as on when "1"; the
# others are the compiler and flags that setuptools takes from the environment, and
# macOS's target architecture and version.
SWITCHES = ("FASTOPTIM_DISABLE_OPENMP", "FASTOPTIM_BASELINE_ONLY", "FASTOPTIM_NATIVE")
COMPILER_ENV = ("CC", "LDSHARED", "CFLAGS", "CPPFLAGS", "LDFLAGS", "ARCHFLAGS",
                "MACOSX_DEPLOYMENT_TARGET")

BANNER = "*" * 78


def _banner(message):
    return f"\n{BANNER}\n{message}\n{BANNER}\n"


def _warn(message):
    sys.stderr.write(_banner(message) + "\n")


def _openmp_flags(compiler_type):
    if compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        # Apple clang needs libomp (e.g. Homebrew) and the preprocessor form.
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


def compile_link_args(compiler_type, target, openmp, native):
    """The compile and link arguments of one CPU target's kernels (and of ``_clip``)."""
    if compiler_type == "msvc":
        compile_args = ["/O2", "/fp:precise"]
    else:
        compile_args = ["-O3", "-fno-math-errno", "-ffp-contract=off"]
        if native:
            compile_args.append("-march=native")
    link_args = []
    if openmp:
        omp_compile, omp_link = _openmp_flags(compiler_type)
        compile_args += omp_compile
        link_args += omp_link
    if compiler_type != "msvc":
        compile_args += TARGET_FLAGS.get(target, [])
    return compile_args, link_args


def _wide_targets_possible(environ=None):
    import platform

    env = os.environ if environ is None else environ
    if env.get("FASTOPTIM_BASELINE_ONLY") == "1":
        return False
    # macOS cross-builds (cibuildwheel, conda) say the target in ARCHFLAGS: the AVX flags
    # are for an x86_64 target only, not arm64 or universal2 slices.
    archflags = env.get("ARCHFLAGS", "").split()
    if sys.platform == "darwin" and archflags and archflags != ["-arch", "x86_64"]:
        return False
    return platform.machine().lower() in ("x86_64", "amd64") and sys.platform != "win32"


def targets(environ=None):
    """The CPU targets this build makes kernels for."""
    return ["baseline"] + (["avx2", "avx512"] if _wide_targets_possible(environ) else [])


def build_settings(environ=None):
    """Everything from the environment that changes what the build makes, the flags it
    leads to (for the compiler setuptools would pick here) and the NumPy whose headers it
    compiles against: what :func:`build_key` keys the build directories by."""
    env = os.environ if environ is None else environ
    settings = {name: env.get(name) == "1" for name in SWITCHES}
    settings.update({name: env.get(name) for name in COMPILER_ENV})
    settings["targets"] = targets(env)
    try:  # the kernels use NumPy's C API: a module is built for one NumPy's headers
        import numpy

        settings["numpy"] = numpy.__version__
    except ImportError:
        settings["numpy"] = None
    compiler_type = "msvc" if sys.platform == "win32" else "unix"
    settings["flags"] = {
        target: compile_link_args(compiler_type, target,
                                  openmp=not settings["FASTOPTIM_DISABLE_OPENMP"],
                                  native=settings["FASTOPTIM_NATIVE"])
        for target in settings["targets"]
    }
    return settings


def build_key(settings):
    """A short name for a set of :func:`build_settings`: the suffix of the build dirs."""
    text = json.dumps(settings, sort_keys=True)
    return "fo" + hashlib.sha256(text.encode()).hexdigest()[:10]


@contextlib.contextmanager
def _scratch():
    """A temporary working directory for the probes, quiet (setuptools logs each
    compiler command at INFO on the root logger)."""
    tmp = tempfile.mkdtemp(prefix="fastoptim-probe-")
    cwd = os.getcwd()
    root = logging.getLogger()
    level = root.level
    try:
        os.chdir(tmp)
        root.setLevel(logging.WARNING)
        yield tmp
    finally:
        root.setLevel(level)
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)


def _describe(exc):
    """An exception from a compiler command, short: the compiler prints its own error
    messages above, so a failed command's whole argument list would only repeat them."""
    text = str(exc).strip()
    status = re.search(r"returned non-zero exit status (-?\d+)", text)
    if status:
        return f"exit status {status[1]}; the compiler's messages are above"
    if type(exc).__name__ in ("CompileError", "LinkError") and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _compiler_command(compiler):
    cmd = getattr(compiler, "compiler_so", None) or getattr(compiler, "compiler", None)
    if cmd:
        return cmd[0] if isinstance(cmd, (list, tuple)) else str(cmd)
    return compiler.compiler_type


def no_compiler_message(command, detail):
    """The one message a build without a working C compiler stops with."""
    origin = " (from $CC)" if os.environ.get("CC") else ""
    return (
        "fastoptim needs a C compiler to build from source, and the compiler\n"
        f"{command!r}{origin} cannot build a C program: {detail}\n"
        "Install one and build again:\n"
        "  Debian/Ubuntu: apt install build-essential python3-dev\n"
        "  Fedora/RHEL:   dnf install gcc python3-devel\n"
        "  macOS:         xcode-select --install\n"
        "  Windows:       Microsoft C++ Build Tools (MSVC)\n"
        "(if CC is set, it must name a working compiler), or install a fastoptim wheel,\n"
        "which needs no compiler."
    )


def no_python_h_message(command, detail):
    """The message when the compiler works but Python's C headers are missing."""
    return (
        f"fastoptim: the C compiler {command!r} works, but Python's C headers\n"
        f"(Python.h) are missing, so no extension module can be built: {detail}\n"
        "Install them for the Python you build with and build again:\n"
        "  Debian/Ubuntu: apt install python3-dev   Fedora/RHEL: dnf install python3-devel\n"
        "or install a fastoptim wheel, which needs no compiler."
    )


def no_openmp_message(command, detail):
    """The message a build stops with when the compiler cannot do OpenMP."""
    return (
        f"fastoptim: the C compiler {command!r} cannot build and run an OpenMP program\n"
        f"({detail}).\n"
        "Without OpenMP every update would run on ONE core, so the build stops here\n"
        "rather than install serial kernels that look like parallel ones. Either\n"
        "  * install an OpenMP runtime and build again:\n"
        "      Debian/Ubuntu: apt install libgomp1 (GCC) or libomp-dev (Clang)\n"
        "      Fedora/RHEL:   dnf install libgomp (GCC) or libomp-devel (Clang)\n"
        "      macOS:         brew install libomp, then\n"
        '        export CPPFLAGS="-I$(brew --prefix libomp)/include"\n'
        '        export LDFLAGS="-L$(brew --prefix libomp)/lib'
        ' -Wl,-rpath,$(brew --prefix libomp)/lib"\n'
        "  * or build the serial kernels on purpose:\n"
        "      FASTOPTIM_DISABLE_OPENMP=1 pip install ."
    )


def check_compiler(compiler):
    """None when `compiler` compiles and links a C program and finds ``Python.h``;
    otherwise the message to stop the build with (:func:`no_compiler_message`,
    :func:`no_python_h_message`)."""
    include_dirs = list(dict.fromkeys(
        p for p in (sysconfig.get_path("include"), sysconfig.get_path("platinclude")) if p))
    with _scratch():
        with open("check.c", "w") as f:
            f.write(C_PROBE)
        try:
            objects = compiler.compile(["check.c"])
            compiler.link_executable(objects, "check")
        except Exception as exc:  # missing, broken or unconfigured: all the same to a user
            return no_compiler_message(_compiler_command(compiler), _describe(exc))
        with open("pyh.c", "w") as f:
            f.write(PYTHON_H_PROBE)
        try:
            compiler.compile(["pyh.c"], include_dirs=include_dirs)
        except Exception as exc:
            return no_python_h_message(_compiler_command(compiler), _describe(exc))
    return None


def probe_openmp(compiler, compile_flags, link_flags):
    """Compile, link and run a tiny OpenMP program with the build's own compiler:
    ``(True, "")``, or ``(False, what went wrong)``."""
    with _scratch() as tmp:
        with open("probe.c", "w") as f:
            f.write(OPENMP_PROBE)
        flags = " ".join(compile_flags)
        stage = f"compiling a program with {flags}"
        try:
            objects = compiler.compile(["probe.c"], extra_postargs=compile_flags)
            exe = "probe" + (compiler.exe_extension or "")
            # setuptools adds $LDFLAGS to the extensions' link line but not to
            # executables'; the probe needs it too (e.g. -L$(brew --prefix libomp)/lib on
            # macOS)
            extra = []
            if compiler.compiler_type != "msvc":
                extra = shlex.split(os.environ.get("LDFLAGS", ""))
            stage = f"linking it with {' '.join(link_flags + extra) or 'no OpenMP flag'}"
            compiler.link_executable(objects, "probe", extra_postargs=link_flags + extra)
            stage = "running it"
            out = subprocess.run(
                [os.path.join(tmp, exe)], capture_output=True, text=True, timeout=60
            )
        except Exception as exc:  # any compiler or runtime failure means "no OpenMP"
            return False, f"{stage} failed: {_describe(exc)}"
        if out.returncode != 0 or not out.stdout.strip().isdigit():
            return False, (f"running it failed: exit status {out.returncode}, "
                           f"{(out.stderr or out.stdout).strip()[:200]!r}")
        return True, ""


def _compiler_name(compiler):
    if compiler.compiler_type == "msvc":
        return "msvc"
    try:
        return os.path.basename(compiler.compiler_so[0]).replace('"', "")
    except Exception:
        return compiler.compiler_type


class Build(build):
    """``build`` whose default ``build_lib`` and ``build_temp`` end in the
    :func:`build_key` of the build settings, so that no module built with other settings
    is ever reused (directories given on the command line are used as given)."""

    def finalize_options(self):
        default_lib = self.build_lib is None and self.build_platlib is None
        default_temp = self.build_temp is None
        super().finalize_options()
        if not self.distribution.has_ext_modules():
            return
        suffix = "-" + build_key(build_settings())
        if default_lib:
            self.build_platlib = self.build_lib = self.build_platlib + suffix
        if default_temp:
            self.build_temp = self.build_temp + suffix


class BuildExt(build_ext):
    """The kernels' flags (:func:`compile_link_args`), after :func:`check_compiler` and
    the OpenMP probe; a module recorded with other flags is rebuilt, and kernels of CPU
    targets not in this build are removed."""

    STAMP = "fastoptim-build.json"

    def run(self):
        self._remove_other_targets()
        super().run()

    def _remove_other_targets(self):
        names = {ext.name for ext in self.extensions}
        if not any(n.startswith("fastoptim._kernels_") for n in names):
            return
        dirs = [os.path.join(self.build_lib, "fastoptim")]
        if self.inplace or getattr(self, "editable_mode", False):
            dirs.append(self.get_finalized_command("build_py").get_package_dir("fastoptim"))
        for target in TARGET_FLAGS:
            name = f"fastoptim._kernels_{target}"
            if name in names:
                continue
            filename = os.path.basename(self.get_ext_filename(name))
            for path in (os.path.join(d, filename) for d in dirs):
                if os.path.exists(path):
                    logging.getLogger().warning(
                        "fastoptim: removing %s (a CPU target this build does not make)", path)
                    os.remove(path)

    def build_extensions(self):
        problem = check_compiler(self.compiler)
        if problem:
            raise SystemExit(_banner(problem))

        ctype = self.compiler.compiler_type
        native = os.environ.get("FASTOPTIM_NATIVE") == "1"
        if os.environ.get("FASTOPTIM_DISABLE_OPENMP") == "1":
            have_openmp = False
            _warn("fastoptim: FASTOPTIM_DISABLE_OPENMP=1, building WITHOUT OpenMP (serial):\n"
                  "every update runs on one core; fastoptim.get_config()['openmp'] is False.")
        else:
            omp_compile, omp_link = _openmp_flags(ctype)
            have_openmp, detail = probe_openmp(self.compiler, omp_compile, omp_link)
            if not have_openmp:
                raise SystemExit(_banner(no_openmp_message(_compiler_command(self.compiler),
                                                           detail)))

        for ext in self.extensions:
            target = ext.name.rsplit("_", 1)[1]
            ext_args, link_args = compile_link_args(ctype, target, have_openmp, native)
            flags = " ".join(ext_args)
            ext.extra_compile_args = ext_args
            ext.extra_link_args = link_args
            ext.define_macros = list(ext.define_macros or []) + [
                ("FASTOPTIM_BUILD_FLAGS", '"' + flags.replace('"', "") + '"'),
                ("FASTOPTIM_COMPILER", '"' + _compiler_name(self.compiler) + '"'),
            ]
        self._stamp_path = os.path.join(self.build_temp, self.STAMP)
        try:
            with open(self._stamp_path, encoding="utf-8") as f:
                self._stamps = json.load(f).get("modules", {})
        except (OSError, ValueError):
            self._stamps = {}
        self._stamp_lock = threading.Lock()
        self._identity = self._compiler_identity()
        super().build_extensions()

    def _compiler_identity(self):
        """The compiler program's real path and the first line of its ``--version``:
        another compiler behind the same command (a new PATH, an upgrade) is another
        build."""
        if self.compiler.compiler_type == "msvc":
            return None
        command = _compiler_command(self.compiler)
        path = shutil.which(command)
        try:
            out = subprocess.run([command, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
        except Exception:
            out = ""
        return [os.path.realpath(path) if path else command, out.strip().split("\n")[0]]

    def _signature(self, ext):
        """What decides a module's machine code besides its sources: the compiler (its
        identity, commands, macros and include dirs) and the extension's own flags."""
        c = self.compiler
        facts = {
            "identity": self._identity,
            "compiler": [getattr(c, a, None) for a in ("compiler_type", "compiler_so",
                                                        "linker_so", "macros", "include_dirs",
                                                        "libraries", "library_dirs")],
            "ext": [getattr(ext, a, None) for a in ("sources", "extra_compile_args",
                                                    "extra_link_args", "define_macros",
                                                    "undef_macros", "include_dirs",
                                                    "libraries", "library_dirs")],
        }
        return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()
                              ).hexdigest()

    def build_extension(self, ext):
        path = os.path.abspath(self.get_ext_fullpath(ext.name))
        signature = self._signature(ext)
        with self._stamp_lock:
            stale = self._stamps.get(path) != signature
        if stale and os.path.exists(path):
            # setuptools would keep it, being newer than its sources
            logging.getLogger().warning(
                "fastoptim: %s was built with other settings: rebuilding it", path)
            os.remove(path)
        super().build_extension(ext)
        with self._stamp_lock:
            self._stamps[path] = signature
            os.makedirs(self.build_temp, exist_ok=True)
            with open(self._stamp_path, "w", encoding="utf-8") as f:
                json.dump({"settings": build_settings(), "modules": self._stamps}, f,
                          indent=1, sort_keys=True)


def cmdclass():
    return {"build": Build, "build_ext": BuildExt}


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

    rules = _load("rules").KERNEL_ROWS
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

    exts = [
        Extension(
            f"fastoptim._kernels_{t}",
            [f"kernels/_kernels_{t}.pyx"],
            include_dirs=[numpy.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for t in targets()
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
    setup(ext_modules=extensions(), cmdclass=cmdclass())
