#!/usr/bin/env bash
# The per-target tests on CPUs this machine is not: runs a subset of the suite under
# qemu-user on an emulated AVX2-only CPU (Haswell: no AVX-512) and an AVX-only one
# (Sandy Bridge: no AVX2/FMA), and checks that it passes there, that the targets the CPU
# lacks are reported skipped ("CPU lacks ..."), and -- first, so that the check means
# something -- that the emulator really kills a process that runs those targets' code.
# Test subprocesses run emulated too (sys.executable is a wrapper around qemu).
#
#   bash tools/check_cpu_targets.sh [PYTHON]
#
# PYTHON (default: python on PATH) must have fastoptim installed with its test extra,
# built with the wide targets (e.g. this tree's .venv after `pip install -e ".[test]"`).
# Needs x86-64 Linux and qemu-user (Debian: apt-get install qemu-user). Slow: every
# instruction is emulated (see the times it prints). NumPy's wheels need more than
# qemu's pre-AVX models (Nehalem, Westmere) give, so "no AVX2" is Sandy Bridge; and
# OpenBLAS (in NumPy) takes qemu's Sandy Bridge for a Haswell and crashes in its AVX2
# GEMM, so OPENBLAS_CORETYPE names the emulated core.
set -euo pipefail
cd "$(dirname "$0")/.."

py=${1:-python}
tests=(tests/test_cpu_targets.py tests/test_typing.py tests/test_engine.py
       tests/test_guard.py)
# Haswell / Sandy Bridge, less the features qemu's TCG cannot emulate (it warns on each).
haswell="Haswell,-pcid,-x2apic,-tsc-deadline,-hle,-invpcid,-rtm"
sandybridge="SandyBridge,-x2apic,-tsc-deadline"

[ "$(uname -sm)" = "Linux x86_64" ] || { echo "needs x86-64 Linux"; exit 2; }
command -v qemu-x86_64 > /dev/null \
    || { echo "needs qemu-user (qemu-x86_64): apt-get install qemu-user"; exit 2; }
unset FASTOPTIM_CPU

built=$("$py" -c "from fastoptim import _dispatch; print(' '.join(_dispatch.built()))")
[ "$built" = "avx512 avx2 baseline" ] \
    || { echo "fastoptim here has targets '$built'; build all three to check them"; exit 1; }

# An interpreter that runs under qemu, and whose sys.executable (for the tests'
# subprocesses) is itself: a script that re-enters qemu with argv[0] set to it, next to
# a pyvenv.cfg that gives it the same site-packages as $py.
real=$("$py" -c "import os, sys; print(os.path.realpath(sys.executable))")
prefix=$("$py" -c "import sys; print(sys.prefix)")
in_venv=$("$py" -c "import sys; print(sys.prefix != sys.base_prefix)")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

emulated() {   # emulated NAME CPU: makes $work/NAME/bin/python
    local dir="$work/$1"
    mkdir -p "$dir/bin"
    if [ "$in_venv" = True ]; then
        cp "$prefix/pyvenv.cfg" "$dir/pyvenv.cfg"
        ln -s "$prefix/lib" "$dir/lib"
    else
        printf 'home = %s\ninclude-system-site-packages = true\n' "$(dirname "$real")" \
            > "$dir/pyvenv.cfg"
    fi
    printf '#!/bin/sh\nexec qemu-x86_64 -cpu %s -0 "$0" %s "$@"\n' "$2" "$real" \
        > "$dir/bin/python"
    chmod +x "$dir/bin/python"
}

# Call one kernel of a target's module: exit status 0, or 132 (SIGILL) where the CPU
# lacks the target.
call_kernel() {   # call_kernel PYTHON TARGET
    local rc=0
    "$1" -c "import numpy as np, fastoptim._kernels_$2 as k
p = np.ones(4096, np.float32)
k.sgd(p, p.copy(), lr=0.1, weight_decay=0.0, num_threads=1)" > /dev/null 2>&1 || rc=$?
    echo "$rc"
}

status=0
for spec in "avx2-only:$haswell:Haswell:avx2:avx512" \
            "avx-only:$sandybridge:Sandybridge:baseline:avx2"; do
    IFS=: read -r name cpu core runs lacks <<< "$spec"
    export OPENBLAS_CORETYPE=$core
    emulated "$name" "$cpu"
    epy="$work/$name/bin/python"
    echo "== ${cpu%%,*} ($name)"

    ok=$(call_kernel "$epy" "$runs")
    bad=$(call_kernel "$epy" "$lacks")
    targets=$("$epy" -c "import fastoptim; print(fastoptim.get_config()['cpu_targets'])")
    echo "emulator: a $runs kernel exits $ok, an $lacks kernel exits $bad (132 = SIGILL);" \
         "fastoptim sees $targets"
    if [ "$ok" != 0 ] || [ "$bad" != 132 ]; then
        echo "FAIL: the emulator does not tell $runs from $lacks; this check proves nothing"
        status=1
        continue
    fi

    start=$SECONDS
    rc=0
    "$epy" -m pytest -q -rs -p no:cacheprovider "${tests[@]}" > "$work/$name.log" 2>&1 \
        || rc=$?
    grep -E "passed|failed|error" "$work/$name.log" | tail -1
    echo "pytest exit $rc in $((SECONDS - start)) s"
    for t in $lacks $([ "$lacks" = avx2 ] && echo avx512); do
        n=$(grep -c "$t: CPU lacks $t" "$work/$name.log" || true)
        echo "skip lines 'CPU lacks $t': $n"
        [ "$n" -gt 0 ] || { echo "FAIL: $t tests were not reported skipped"; status=1; }
    done
    if [ "$rc" != 0 ]; then
        grep -v "/site-packages/" "$work/$name.log" | tail -40
        status=1
    fi
done
[ "$status" = 0 ] && echo "check_cpu_targets: OK" || echo "check_cpu_targets: FAILED"
exit "$status"
