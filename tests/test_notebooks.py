"""The tutorial notebooks: stored without outputs, and each runs end to end in quick mode.

Quick mode (``WORKBENCH_QUICK=1``) is what every notebook's parameters cell reads: a tiny data
subset, 16 px, one or two epochs, PCA instead of UMAP. The quickstart runs in the default suite;
the others take longer together and are marked ``slow``, as is the check that notebooks print
their verdicts as "yes" at their normal settings
(``pytest -m slow tests/test_notebooks.py``).
"""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
FAST = {"01_quickstart.ipynb"}
TIMEOUT_S = 600  # per cell; a cell that hangs fails the test instead of the CI job
NORMAL_TIMEOUT_S = 1800  # per cell at the normal settings (a 2-core AVX2 CPU is the slowest here)
VERDICT = re.compile(r"^(?P<claim>[^:]+): (?P<answer>yes|no), ")


def _notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def _param(path: Path):
    marks = [] if path.name in FAST else [pytest.mark.slow]
    return pytest.param(path, id=path.stem, marks=marks)


def test_the_tutorials_exist():
    names = {p.name for p in _notebooks()}
    for name in (
        "01_quickstart.ipynb",
        "02_augmentations_and_invariances.ipynb",
        "03_training_and_collapse.ipynb",
        "04_embeddings.ipynb",
        "05_distillation.ipynb",
        "06_compare_methods.ipynb",
    ):
        assert name in names, f"notebooks/{name} is missing"


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in _notebooks()])
def test_stored_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cells"
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, (
        f"{path.name}: code cells {dirty} are stored with outputs; clear them "
        f"(jupyter nbconvert --clear-output --inplace {path.name})"
    )
    params = "".join(code[0]["source"])
    assert "WORKBENCH_QUICK" in params, f"{path.name}: the first code cell must read it"


def _execute(path: Path, tmp_path: Path, monkeypatch, *, quick: bool):
    """Run the notebook in a fresh kernel (this interpreter's) and return the executed copy."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    mode = "quick mode" if quick else "its normal settings"
    monkeypatch.setenv("WORKBENCH_QUICK", "1" if quick else "0")
    monkeypatch.setenv("WORKBENCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    # The kernel is this interpreter (the venv's), whatever kernelspecs the machine has.
    client = NotebookClient(
        nb,
        timeout=TIMEOUT_S if quick else NORMAL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed at {mode}:\n{exc}")
    finally:
        nbformat.write(nb, tmp_path / path.name)  # the executed copy, to read what it printed
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, errors
    return nb


def verdicts(nb) -> dict[str, str]:
    """The notebook's printed verdicts, ``claim: yes|no, detail`` lines, as claim -> line."""
    found = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            for line in out.get("text", "").splitlines() if out.get("name") == "stdout" else []:
                m = VERDICT.match(line)
                if m:
                    found[m["claim"]] = line
    return found


@pytest.mark.parametrize("path", [_param(p) for p in _notebooks()])
def test_runs_in_quick_mode(path, tmp_path, monkeypatch):
    nb = _execute(path, tmp_path, monkeypatch, quick=True)
    widget_views = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in out.get("data", {})
    ]
    if path.name in FAST:  # the quickstart shows all three widgets and the app
        assert len(widget_views) >= 4, f"{len(widget_views)} widget outputs"


# The notebooks whose lessons are measured at their normal settings: each verdict they print must
# say "yes". Notebook 02 joins when the `shapes` redesign of issue #17 makes its lesson hold.
NORMAL_SETTINGS = {"03_training_and_collapse.ipynb": 7}  # notebook -> how many verdicts it prints


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NORMAL_SETTINGS))
def test_verdicts_hold_at_normal_settings(name, tmp_path, monkeypatch):
    nb = _execute(NOTEBOOKS / name, tmp_path, monkeypatch, quick=False)
    found = verdicts(nb)
    assert len(found) == NORMAL_SETTINGS[name], found
    failed = [line for line in found.values() if VERDICT.match(line)["answer"] != "yes"]
    assert not failed, f"{name} at its normal settings:\n" + "\n".join(failed)
