import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    import yaml  # PyYAML is installed with jupyter

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pip_deps = [d for d in pip if not d.startswith("-")]
    assert sorted(pip_deps) == sorted(deps)


def test_constraints_pin_tested_torch():
    text = (ROOT / "constraints.txt").read_text()
    assert "torch==2.14.1" in text and "torchvision==0.29.1" in text
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = {_name(ln) for ln in text.splitlines() if "==" in ln}
    for d in deps:
        assert _name(d).replace("_", "-") in {p.replace("_", "-") for p in pinned}, d


def test_import_is_fast_and_lazy():
    code = (
        "import time,sys; t=time.perf_counter(); import workbench; "
        "dt=time.perf_counter()-t; heavy=[m for m in ('torch','lightning','umap','sklearn',"
        "'matplotlib','ipywidgets') if m in sys.modules]; print(dt, heavy)"
    )
    best = None
    for _ in range(3):  # warm: the first run may pay for a cold disk cache
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        dt, heavy = out.stdout.split(" ", 1)
        best = float(dt) if best is None else min(best, float(dt))
    assert best < 1.5
    assert heavy.strip() == "[]"


def test_cli_help_version_datasets():
    exe = [sys.executable, "-m", "workbench.cli"]
    out = subprocess.run(exe + ["--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("workbench ")
    out = subprocess.run(exe + ["--help"], capture_output=True, text=True, check=True)
    assert "datasets" in out.stdout
    out = subprocess.run(exe + ["datasets"], capture_output=True, text=True, check=True)
    assert "digits" in out.stdout and "shapes" in out.stdout and "cifar10:<root>" in out.stdout


@pytest.mark.parametrize("name", ["load_dataset", "train", "embed", "knn_accuracy", "recipe"])
def test_public_api_resolves(name):
    import workbench as wb

    assert callable(getattr(wb, name))


def test_unknown_attribute():
    import workbench as wb

    with pytest.raises(AttributeError, match="no_such_thing"):
        wb.no_such_thing  # noqa: B018
