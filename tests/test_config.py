"""One version, and a show_config() that tells what a bug report needs."""

import importlib.metadata
import re
from pathlib import Path

import fastoptim as fo
from fastoptim import _version


def test_one_version():
    assert fo.__version__ == _version.__version__ == fo.get_config()["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+([abrc.]+\d+|\.dev\d+)?", fo.__version__)
    try:
        installed = importlib.metadata.version("fastoptim")
    except importlib.metadata.PackageNotFoundError:
        # not installed: imported from a source tree (python setup.py build_ext --inplace)
        assert (Path(fo.__file__).resolve().parents[2] / "pyproject.toml").is_file()
    else:
        assert installed == fo.__version__


def test_show_config_prints_every_fact(capsys):
    fo.show_config()
    out = capsys.readouterr().out
    cfg = fo.get_config()
    lines = dict(line.split(" : ", 1) for line in out.splitlines())
    assert {k.strip() for k in lines} == set(cfg) >= {
        "version", "compiler", "flags", "openmp", "threads", "cpu_target"}
    values = {k.strip(): v for k, v in lines.items()}
    assert values["version"] == fo.__version__
    assert values["openmp"] in ("True", "False")
    assert int(values["threads"]) >= 1
    assert values["compiler"] == cfg["compiler"] and values["flags"] == cfg["flags"]
    assert values["cpu_target"] in ("baseline", "avx2", "avx512")
