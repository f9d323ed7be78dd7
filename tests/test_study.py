"""The whole-study runner: which steps it skips."""
import os
import time

import pytest

from helpers import study


def test_a_step_runs_unless_this_machine_ran_it_with_the_same_parameters(tmp_path, data_env):
    source = tmp_path / "00_train.ipynb"
    source.write_text("{}")
    target = tmp_path / "00_train_cnn.ipynb"
    parameters = dict(profile="smoke", seed=0, model="cnn")
    target.write_text("{}")  # an executed notebook committed in book/, but no record of a run here
    assert not study.up_to_date(source, target, parameters)
    stamp = study.stamp_path(target, parameters)
    study.write_stamp(target, parameters, 5.0)
    assert study.read_stamp(target, parameters) == dict(parameters=parameters, seconds=5)
    future = time.time() + 10
    os.utime(stamp, (future, future))
    assert study.up_to_date(source, target, parameters)
    assert not study.up_to_date(source, target, dict(parameters, seed=1))
    os.utime(source, (future + 10, future + 10))  # the notebook changed since
    assert not study.up_to_date(source, target, parameters)


def test_steps_cover_the_study_in_order():
    names = [(source, target.name) for source, target, _ in study.steps("cpu")]
    assert [n for n, _ in names] == ["00_train.ipynb"] * 4 + ["01_activation_maximization.ipynb"] + [
        "02_sae.ipynb", "02_sae.ipynb", "03_compare.ipynb"] * 2 + ["04_answers.ipynb"]
    trained = [(p["model"], p["seed"]) for source, _, p in study.steps("cpu") if source == "00_train.ipynb"]
    assert trained == [("cnn", 0), ("cnn", 1), ("mlp", 0), ("mlp", 1)]
    assert [p["model_seeds"] for source, _, p in study.steps("cpu") if source[:2] in ("02", "03")] == [2] * 6
    assert [p["layer"] for source, _, p in study.steps("cpu") if source == "03_compare.ipynb"] == ["hidden", "mid"]
    assert all(target.parent.name == "cpu" for _, target, _ in study.steps("cpu"))


def test_the_smoke_study_runs_end_to_end_then_skips_everything(tmp_path, data_env, monkeypatch, capsys):
    """The README's main command on the smoke profile, with the archive given relative to the working directory
    (the notebooks run in notebooks/, so the runner must make it absolute)."""
    archive = os.environ["CIFAR10_JPG"]
    monkeypatch.chdir(os.path.dirname(archive))
    monkeypatch.setenv("CIFAR10_JPG", os.path.basename(archive))
    monkeypatch.setattr(study, "BOOK", tmp_path / "book")
    study.main(["--profile", "smoke", "--no-book"])
    first = capsys.readouterr().out
    assert first.count("[done]") == 12 and "[skip]" not in first
    assert sorted(p.name for p in (tmp_path / "book" / "smoke").iterdir()) == sorted(
        target.name for _, target, _ in study.steps("smoke"))
    study.main(["--profile", "smoke", "--no-book"])
    assert capsys.readouterr().out.count("[skip]") == 12


def test_a_cell_that_runs_too_long_stops_the_run_and_names_it(tmp_path, monkeypatch):
    import nbformat
    source = tmp_path / "slow.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                                   nbformat.v4.new_code_cell("import time; time.sleep(60)")]), source)
    monkeypatch.setenv("INTERPRET_MLP_CELL_TIMEOUT", "3")
    start = time.time()
    with pytest.raises(SystemExit) as err:
        study.run_notebook(source, tmp_path / "out" / "slow.ipynb", {})
    assert time.time() - start < 50
    assert "slow.ipynb" in str(err.value) and "longer than the cell timeout (3 s" in str(err.value)
    assert not (tmp_path / "out" / "slow.ipynb").exists()  # nothing half-written where the result belongs
