"""Notebooks run headlessly with small parameters, and wrong parameters fail at the top."""
import json
from pathlib import Path

import papermill
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def execute(name, tmp_path, **parameters):
    out = tmp_path / f"out_{name}"
    papermill.execute_notebook(str(NOTEBOOKS / name), str(out), parameters=parameters, cwd=str(NOTEBOOKS),
                               progress_bar=False, kernel_name="python3")
    return json.loads(out.read_text())


def outputs(nb):
    """All text the executed notebook printed or displayed."""
    text = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            text.append("".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", "")))
    return "\n".join(text)


def images(nb):
    return sum("image/png" in out.get("data", {}) for cell in nb["cells"] for out in cell.get("outputs", []))


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_train_notebook_smoke(model, tmp_path):
    nb = execute("00_train.ipynb", tmp_path, model=model, profile="smoke", seed=0)
    text = outputs(nb)
    assert "profile 'smoke'" in text and "test accuracy" in text
    assert images(nb) >= 2


@pytest.mark.parametrize("parameters,message", [
    (dict(model="resnet"), "parameter model='resnet' is not one of"),
    (dict(profile="smoke", seed="one"), "parameter seed='one' (str) must be an integer"),
])
def test_train_notebook_rejects_bad_parameters(parameters, message, tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as err:
        execute("00_train.ipynb", tmp_path, **parameters)
    assert message in str(err.value)
