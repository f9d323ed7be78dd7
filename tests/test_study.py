"""The whole-study runner: which steps it skips."""
import os
import time

from helpers import study


def test_a_step_runs_unless_this_machine_ran_it_with_the_same_parameters(tmp_path, data_env):
    source = tmp_path / "00_train.ipynb"
    source.write_text("{}")
    target = tmp_path / "00_train_cnn.ipynb"
    parameters = dict(profile="smoke", seed=0, model="cnn")
    target.write_text("{}")  # an executed notebook committed in book/, but no record of a run here
    assert not study.up_to_date(source, target, parameters)
    stamp = study.stamp_path(target, parameters)
    study.write_json(stamp, parameters)
    future = time.time() + 10
    os.utime(stamp, (future, future))
    assert study.up_to_date(source, target, parameters)
    assert not study.up_to_date(source, target, dict(parameters, seed=1))
    os.utime(source, (future + 10, future + 10))  # the notebook changed since
    assert not study.up_to_date(source, target, parameters)


def test_steps_cover_the_study_in_order():
    names = [(source, target.name) for source, target, _ in study.steps("cpu")]
    assert [n for n, _ in names] == ["00_train.ipynb", "00_train.ipynb", "01_activation_maximization.ipynb",
                                    "02_sae.ipynb", "02_sae.ipynb", "03_compare.ipynb"]
    assert all(target.parent.name == "cpu" for _, target, _ in study.steps("cpu"))
