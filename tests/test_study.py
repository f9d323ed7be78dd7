"""The whole-study runner: which steps it skips, and which pages it may run at once."""
import argparse
import json
import os
import time

import pytest

from helpers import manifest, profiles, study


def test_a_step_runs_unless_this_machine_ran_it_with_the_same_parameters(tmp_path, data_env):
    source = tmp_path / "00_train.ipynb"
    source.write_text("{}")
    target = tmp_path / "00_train_cnn.ipynb"
    parameters = dict(profile="smoke", seed=0, model="cnn")
    target.write_text("{}")  # an executed notebook committed in book/, but no record of a run here
    assert not manifest.up_to_date(source, target, parameters)
    stamp = manifest.stamp_path(target, parameters)
    manifest.write_stamp(target, parameters, 5.0)
    assert manifest.read_stamp(target, parameters) == dict(parameters=parameters, seconds=5, page=str(target.resolve()))
    future = time.time() + 10
    os.utime(stamp, (future, future))
    assert manifest.up_to_date(source, target, parameters)
    assert not manifest.up_to_date(source, target, dict(parameters, seed=1))
    elsewhere = tmp_path / "other_book" / target.name  # the same page run into another book folder
    elsewhere.parent.mkdir()
    elsewhere.write_text("{}")
    assert not manifest.up_to_date(source, elsewhere, parameters)
    os.utime(source, (future + 10, future + 10))  # the notebook changed since
    assert not manifest.up_to_date(source, target, parameters)


def test_steps_cover_the_study_in_order():
    names = [(source, target.name) for source, target, _ in study.steps("cpu")]
    # no SAEs at half depth (``Profile.layer_arms``): its comparison runs the linear measure alone, and no atlas
    assert [n for n, _ in names] == ["00_train.ipynb"] * 14 + ["01_activation_maximization.ipynb"] + [
        "02_sae.ipynb"] * 3 + ["03_compare.ipynb"] * 2 + ["02_sae.ipynb"] * 3 + ["03_compare.ipynb"] + [
        "01_activation_maximization.ipynb", "02_sae.ipynb", "03_compare.ipynb",
        "06_training.ipynb", "05_atlas.ipynb", "04_answers.ipynb"]
    trained = [(p["model"], p["seed"]) for source, _, p in study.steps("cpu") if source == "00_train.ipynb"]
    assert trained == [(f, s) for f in ("cnn", "mlp", "resnet", "mlp-small")
                       for s in profiles.get("cpu").model_seeds[:profiles.SCALE_SEEDS if f == "mlp-small" else None]]
    assert all(set(p) <= {"profile", "model", "seed", "layer", "explorer"} for _, _, p in study.steps("cpu"))
    assert [p["layer"] for source, _, p in study.steps("cpu") if source == "03_compare.ipynb"] == [
        "hidden", "mid", "late", "hidden"]
    # the competence-matched pair runs both predictions' pages on its own profile, the VGG's SAEs only (no ResNet)
    matched = [(source, p) for source, _, p in study.steps("cpu") if p["profile"] == "cpu-matched"]
    assert [(s, p.get("model")) for s, p in matched] == [("01_activation_maximization.ipynb", "both"),
                                                         ("02_sae.ipynb", "cnn"), ("03_compare.ipynb", None)]
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
    assert first.count("[done]") == len(study.steps("smoke")) == 24 and "[skip]" not in first
    assert sorted(p.name for p in (tmp_path / "book" / "smoke").glob("*.ipynb")) == sorted(
        target.name for _, target, _ in study.steps("smoke"))
    assert {"am_summary.json", "conclusions_hidden.json", "sae_hidden_cnn-metrics.csv"} <= {
        p.name for p in (tmp_path / "book" / "smoke" / "results").iterdir()}  # the pages' downloads
    for _, target, _ in study.steps("smoke"):  # shaped for the book, showing nothing of the machine that ran it
        assert study.machine_paths(target) == [], target.name
        cells = json.loads(target.read_text())["cells"]
        assert all("remove-cell" in c["metadata"]["tags"] for c in cells
                   if {"parameters", "injected-parameters"} & set(c["metadata"].get("tags", [])))
        outputs = [o for c in cells for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("name") == "stderr" or study.WIDGET_VIEW in o.get("data", {})]
    study.main(["--profile", "smoke", "--no-book"])
    assert capsys.readouterr().out.count("[skip]") == len(study.steps("smoke"))
    # the competence-matched pages again: they read the base profile's results and write none of them
    base = data_env / "results" / "smoke"
    before = {p: p.stat().st_mtime_ns for p in base.rglob("*") if p.is_file() and "study" not in p.parts}
    for stamp in (data_env / "results" / "smoke-matched" / "study").glob("*.json"):
        stamp.unlink()
    study.main(["--profile", "smoke", "--no-book"])
    assert capsys.readouterr().out.count("[done]") == len([s for s in manifest.steps("smoke") if s.page.startswith(
        "matched_")])
    after = {p: p.stat().st_mtime_ns for p in base.rglob("*") if p.is_file() and "study" not in p.parts}
    assert after == before, sorted(str(p) for p in set(after) ^ set(before) | {p for p in before if
                                                                              after.get(p) != before[p]})


def test_prepare_for_book_folds_code_and_drops_logs(tmp_path):
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("profile = 'cpu'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import helpers", metadata={"tags": ["remove-input"]}),
        nbformat.v4.new_code_cell("plot()", outputs=[
            nbformat.v4.new_output("stream", name="stderr", text="loaded cached result Data/x.pt"),
            nbformat.v4.new_output("stream", name="stdout", text="accuracy 0.7"),
            nbformat.v4.new_output("display_data", data={study.WIDGET_VIEW: {"model_id": "a"}, "text/plain": "bar"})]),
        nbformat.v4.new_markdown_cell("text")])
    path = tmp_path / "page.ipynb"
    nbformat.write(nb, path)
    study.prepare_for_book(path)
    cells = json.loads(path.read_text())["cells"]
    assert [c["metadata"].get("tags") for c in cells] == [["parameters", "remove-cell"], ["remove-input"],
                                                         ["hide-input"], None]
    assert ["".join(o.get("text", "")) for o in cells[2]["outputs"]] == ["accuracy 0.7"]


def test_machine_paths_finds_absolute_paths_only(tmp_path):
    import nbformat
    path = tmp_path / "page.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output(
        "stream", name="stdout", text="VGG13_bn at 1/8 width, 12 GFLOP/s, Data/results/cpu/x.csv, https://a.org/b/c\n"
                                      "loaded /home/someone/Data/results/cpu/x.pt")])]), path)
    assert study.machine_paths(path) == ["/home/someone/Data/results/cpu/x.pt"]


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


def test_a_reply_wait_polls_afresh_every_slice_and_keeps_its_deadline():
    """The execute-reply wait is cut into short polls (a missed wake-up costs one slice, not the cell timeout)."""
    import asyncio
    from queue import Empty
    calls = []

    async def get_msg(timeout=None):
        calls.append(timeout)
        if len(calls) < 4:
            await asyncio.sleep(0)
            raise Empty
        return {"msg": len(calls)}
    assert asyncio.run(study._sliced(get_msg, seconds=0.01)()) == {"msg": 4}
    assert calls == [0.01] * 4  # no timeout: slice after slice until the reply comes

    async def never(timeout=None):
        await asyncio.sleep(timeout)
        raise Empty
    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(study._sliced(never, seconds=0.01)(timeout=0.05))
    assert 0.04 < time.monotonic() - start < 1.0


def test_the_landing_page_answers_block_is_rewritten_in_place():
    """The study fills the landing page between its markers from the answers page's ``landing`` file, again on every
    run, and refuses a page without the markers instead of writing the answers somewhere else."""
    from helpers import book
    page = "# Title\n\nText.\n\n<!-- answers -->\n<!-- /answers -->\n\nMore.\n"
    once = book.with_answers(page, "answers of cpu")
    assert once == "# Title\n\nText.\n\n<!-- answers -->\nanswers of cpu\n<!-- /answers -->\n\nMore.\n"
    assert book.with_answers(once, "answers of paper") == once.replace("of cpu", "of paper")
    with pytest.raises(ValueError, match="no '<!-- answers -->'"):
        book.with_answers("# Title\n", "answers of cpu")


def test_every_page_runs_after_the_pages_that_write_what_it_reads():
    """Which page runs after which follows from what each declares it reads and who writes that (``store``): every
    artifact a page reads is written by a page ordered before it, in every profile's study."""
    for profile in ("cpu", "smoke", "paper", "official"):
        steps = manifest.steps(profile)
        order = [s.page for s in steps]
        for i, step in enumerate(steps):
            for name, fields in step.reads:
                found = [w.page for w in manifest.writers(name, fields, steps, profile)]
                assert found and set(found) <= set(order[:i]), (profile, step.page, name, fields, found)
            assert set(step.after) <= set(order[:i]), (profile, step.page)
    steps = {s.page: s for s in manifest.steps("cpu")}
    assert set(steps["03_compare"].after) >= {"02_sae_cnn", "02_sae_mlp", "02_sae_resnet", "01_activation_maximization"}
    assert "02_sae_mlp_mid" not in steps and "05_atlas_mid" not in steps
    assert not {s for s in steps["03_compare_mid"].after if s.startswith("02_sae")}  # it reads no SAEs
    assert steps["02_sae_mlp_late"].after == ("02_sae_mlp",)
    assert {s for s in steps["02_sae_mlp"].after if s.startswith("00_train")} == {
        _train_page("mlp", s) for s in profiles.get("cpu").model_seeds}  # its own family's only
    first = profiles.get("cpu").model_seeds[0]
    assert _train_page("resnet", first) not in steps["01_activation_maximization"].after  # the compared pair only
    assert "02_sae_cnn" in steps["matched_02_sae_cnn"].after  # it reuses the base's random-init SAEs
    assert {"02_sae_mlp", "matched_02_sae_cnn"} <= set(steps["matched_03_compare"].after)  # the base's MLP SAEs
    assert steps[_train_page("mlp-small", first)].after == ()
    assert _train_page("mlp-small", first) in steps["06_training"].after
    assert {"03_compare", "matched_03_compare"} <= set(steps["06_training"].after)  # its positions read both
    assert {"01_activation_maximization", "03_compare", "05_atlas", "06_training"} <= set(steps["answers"].after)


def _train_page(model, seed):
    return f"00_train_{model}" + (f"_seed{seed}" if seed else "")  # manifest.steps' names


def _two_workers(order, seconds, chain=None):
    """A two-worker run of ``order`` simulated with the pages' ``seconds``: its makespan. Each page starts only once
    all it reads is done; with ``chain``, the ready page started is always one with the longest chain."""
    pending, running, done, clock = list(order), {}, set(), 0.0
    while pending or running:
        for step in [s for s in pending if set(s.after) <= done][:2 - len(running)]:
            assert set(step.after) <= done
            assert chain is None or chain[step.page] == max(chain[s.page] for s in pending if set(s.after) <= done)
            pending.remove(step)
            running[step.page] = clock + seconds[step.page]
        clock = min(running.values())
        done |= {page for page, end in running.items() if end == clock}
        running = {page: end for page, end in running.items() if end > clock}
    return clock


def test_the_ready_page_with_the_longest_chain_after_it_starts_first():
    """``manifest.longest_paths`` on a planted graph; and two-worker runs of the cpu study simulated with the
    committed book's page times (1 s where a page has none): every page starts after all it reads, the critical path
    first, and the study ends no later than in manifest order."""
    steps = [manifest.Step("n", "a", "", {}), manifest.Step("n", "b", "", {}),
             manifest.Step("n", "c", "", {}, after=("a",)), manifest.Step("n", "d", "", {}, after=("b",))]
    assert manifest.longest_paths(steps, {"a": 10, "b": 1, "c": 1, "d": 100}) == {"a": 11, "b": 101, "c": 1, "d": 100}
    assert manifest.longest_paths(steps, {}) == {"a": 2, "b": 2, "c": 1, "d": 1}  # unknown times count 1 each
    assert _two_workers(sorted(steps, key=lambda s: s.page), {"a": 10, "b": 1, "c": 1, "d": 100}) == 101
    steps = manifest.steps("cpu")
    seconds = {s.page: manifest.expected_seconds(s, study.ROOT / "book", "cpu") or 1.0 for s in steps}
    chain = manifest.longest_paths(steps, seconds)
    longest_first = _two_workers(sorted(steps, key=lambda s: -chain[s.page]), seconds, chain)
    assert longest_first <= _two_workers(steps, seconds)
    assert longest_first < sum(seconds.values()) / 2 * 1.1  # two workers kept busy to within a tenth


def test_seed_lists_need_not_start_at_zero(monkeypatch):
    """A confirmatory profile's seeds, disjoint from the exploratory ones: every page trains, reads and waits for
    those seeds, and the SAEs and the random-init null are the profile's first seeds'."""
    from dataclasses import replace

    from helpers import profiles, sae_study
    fresh = replace(profiles.get("smoke"), model_seeds=(4, 5), sae_seeds=(2, 3))
    monkeypatch.setitem(profiles.PROFILES, "smoke", fresh)
    monkeypatch.setitem(profiles.PROFILES, "smoke-matched", replace(profiles.get("smoke-matched"), model_seeds=(4, 5),
                                                                    sae_seeds=(2, 3)))
    steps = manifest.steps("smoke", seed=1)  # the pages' own seed is not a training seed
    assert {s.parameters["seed"] for s in steps if s.notebook == "00_train.ipynb"} == {4, 5}
    order = [s.page for s in steps]
    for i, step in enumerate(steps):
        for name, fields in step.reads:
            found = [w.page for w in manifest.writers(name, fields, steps, "smoke")]
            assert found and set(found) <= set(order[:i]), (step.page, name, fields)
    specs = sae_study.variants("cnn", "smoke")
    assert {(s.model_seed, s.sae_seed) for s in specs if s.net == "trained"} == {(4, 2), (4, 3), (5, 2), (5, 3)}
    assert {(s.net, s.model_seed, s.sae_seed) for s in specs if s.net != "trained"} == {
        ("random-init", 4, 2), ("linear-map", 4, 2)}
    assert sae_study.primary_spec("mlp", "smoke") == sae_study.SAESpec("mlp", "trained", 4, "l1", 2)


def test_a_competence_matched_result_is_kept_where_its_model_is():
    """One rule (``store.owner``) says whose folder holds a file: the base's for the models the matched profile
    shares with it (the MLP, every random-init network), its own for the matched CNNs and for every page's figures."""
    from helpers import store
    assert store.owner("cpu-matched", "mlp") == store.owner("cpu-matched", "cnn", "random-init") == "cpu"
    assert store.owner("cpu-matched", "cnn", "trained") == store.owner("cpu-matched") == "cpu-matched"
    assert store.owner("cpu", "mlp", "random-init") == "cpu"
    figure = store.ARTIFACTS["am_group_figure"].path(profile="cpu-matched", family="mlp", group="plain_pooled")
    assert figure.parent.name == "cpu-matched"  # the matched page's gallery never overwrites the base's
    run = store.ARTIFACTS["am_run"].path(profile="cpu-matched", family="mlp", network="trained", setting="plain",
                                         model_seed=0, am_seed=0)
    assert "results/cpu/" in run.as_posix()


def test_a_failing_page_stops_the_parallel_study_with_its_log(tmp_path, data_env, monkeypatch, capsys):
    monkeypatch.setattr(study, "BOOK", tmp_path / "book")
    broken = manifest.Step("00_train.ipynb", "no_such_page", "a page the child cannot find", {})
    waiting = manifest.Step("00_train.ipynb", "waits_for_it", "never starts", {}, after=("no_such_page",))
    with pytest.raises(SystemExit, match="no_such_page failed.*1 page"):
        study.run_pages([broken, waiting], set(), argparse.Namespace(profile="smoke", seed=0), workers=2)
    out = capsys.readouterr().out
    assert "[fail]" in out and "is no page of the smoke study" in out and "waits_for_it" not in out
