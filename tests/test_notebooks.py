"""Notebooks run headlessly with small parameters, and wrong parameters fail at the top."""
import json
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest

from helpers import profiles, sae_study, study, verdict

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def execute(name, tmp_path, **parameters):
    out = tmp_path / f"out_{name}"
    study.execute_notebook(NOTEBOOKS / name, out, parameters)
    return json.loads(out.read_text())


def outputs(nb):
    """All text the executed notebook printed or displayed."""
    text = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text.append("".join(out.get("text", "")) + "".join(data.get("text/markdown", data.get("text/plain", ""))))
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
    (dict(model="vit"), "parameter model='vit' is not one of"),
    (dict(profile="smoke", seed="one"), "parameter seed='one' (str) must be an integer"),
])
def test_train_notebook_rejects_bad_parameters(parameters, message, tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as err:
        execute("00_train.ipynb", tmp_path, **parameters)
    assert message in str(err.value)


@pytest.fixture(scope="module")
def smoke_models():
    """Every smoke-profile checkpoint (both families and the reference ResNet), which the later notebooks read."""
    from helpers.train import train_or_load
    for family in profiles.get("smoke").families:
        for seed in profiles.get("smoke").model_seeds:
            train_or_load(family, "smoke", seed=seed, verbose=False)


def test_activation_maximization_notebook_smoke(smoke_models, tmp_path, data_env):
    nb = execute(
        "01_activation_maximization.ipynb",
        tmp_path,
        profile="smoke",
        explorer=False,
    )
    text = outputs(nb)
    assert "Prediction 1 on this profile" in text and "The rule, as written before the run" in text
    # the controls, classes x2, the gallery (3 kinds for the CNN, 4 for the MLP, and their nulls; the primary pair
    # under the penalty), convergence, scores, the shift invariance along depth
    assert images(nb) >= 24
    folder = data_env / "results" / "smoke"
    for name in ("am/cnn0_trained_plain_seed0.pt", "am/cnn0_random-init_plain_seed0.pt",
                 "am/mlp1_trained_contrast_seed0.pt", "am_scores.csv", "am_gates.csv",
                 "am_effects.csv", "am_comparisons.csv", "am_summary.json", "am_controls.csv", "am_controls.png",
                 "am_repetition_scores.png", "am_cnn_classes.png", "am_mlp_plain_pooled.png",
                 "am_mlp_plain_random-init_residual.png", "am_cnn_plain_mid.png", "am_cnn_contrast_random-init_mid.png",
                 "am/mlp0_trained_plain_seed1.pt", "shift_invariance.csv", "shift_invariance_pairs.csv",
                 "shift_invariance.png", "am_dose_response.csv", "am_dose_response.png", "am_pooling.csv",
                 "am_natural_path.csv", "am_power.csv", "network_facts.csv"):
        assert (folder / name).is_file(), name
    # the second AM seed renders the primary test only
    assert not (folder / "am/mlp0_trained_contrast_seed1.pt").exists()
    pairs = pd.read_csv(folder / "shift_invariance_pairs.csv")
    assert list(pairs.layer) == list(profiles.STUDY_LAYERS) and set(pairs.verdict) <= set(verdict.VERDICTS)
    summary = json.loads((folder / "am_summary.json").read_text())
    assert summary["prediction1"] in verdict.VERDICTS and summary["primary"]["objective"] == "mid"
    assert summary["primary"]["primary"] and summary["model_seeds"] == 2
    scores = pd.read_csv(folder / "am_scores.csv")
    assert set(scores.model_seed) == {0, 1} and {"gain", "natural_quantile", "motif"} <= set(scores.columns)
    assert set(pd.read_csv(folder / "am_controls.csv").control) >= {"stamped motif", "tiled motif"}
    # smoke AM runs 6 units for 24 steps: fewer successful images than the gate asks, so never a verdict beyond it
    gates = pd.read_csv(folder / "am_gates.csv")
    primary = gates[(gates.setting == "plain") & (gates.objective == "mid")]
    if not primary.passed.all():
        assert summary["prediction1"] == verdict.NOT_TESTABLE
    # A rerun with the same parameters loads the cached AM images instead of optimizing again.
    again = outputs(execute("01_activation_maximization.ipynb", tmp_path, profile="smoke",
                            explorer=False))
    assert "loaded cached result" in again


def test_activation_maximization_notebook_rejects_bad_parameters(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as err:
        execute("01_activation_maximization.ipynb", tmp_path, profile="smoke", overrides={"parameterization": "dct"})
    assert "parameter parameterization='dct' is not one of ('fft', 'pixel')" in str(err.value)


def test_an_unknown_override_names_the_settings(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as err:
        execute("02_sae.ipynb", tmp_path, model="mlp", profile="smoke", overrides={"stepz": 10})
    assert "'stepz' is not a setting of SAE" in str(err.value) and "augment_copies" in str(err.value)


@pytest.mark.parametrize("model", ["cnn", "mlp"])
def test_sae_notebook_smoke(model, smoke_models, tmp_path, data_env):
    # with its feature browser on, as a reader opens it: the widget cell runs headlessly too (the study leaves it
    # out only because the static book cannot use it)
    nb = execute("02_sae.ipynb", tmp_path, model=model, profile="smoke", explorer=True)
    widget_views = [o for c in nb["cells"] for o in c.get("outputs", [])
                    if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widget_views, "the feature browser did not display"
    text = outputs(nb)
    assert "explained_variance" in text and "features are dead" in text and "quality gate" in text
    assert images(nb) >= 5
    folder = data_env / "results" / "smoke" / "sae" / "hidden"
    summary = json.loads((folder / f"{model}-summary.json").read_text())
    # two SAE seeds in the L1 arm, one in the TopK robustness row (``Profile.sae_seeds_of``)
    trained = {f"{model}-seed{s}-{arm}" + (f"-saeseed{t}" if t else "") for s in (0, 1) for arm in ("l1", "topk")
               for t in profiles.get("smoke").sae_seeds_of(arm)}
    assert profiles.get("smoke").sae_seeds_of("topk") == (0,)
    mapped = {f"cnn-mapped0-{arm}" for arm in ("l1", "topk")} if model == "cnn" else set()
    assert set(summary) == trained | {f"{model}-random-l1", f"{model}-random-topk"} | mapped
    for vid, s in summary.items():
        assert {g["gate"] for g in s["gates"]} >= {"dead share", "explained variance", "final drift"}
        assert s["gates_passed"] == all(g["passed"] for g in s["gates"])
        assert (folder / f"{vid}-features.pt").is_file() and (folder / f"{vid}-sae.pt").is_file()
    topk = summary[f"{model}-seed0-topk"]["metrics"]["l0"]
    assert topk <= 8  # the TopK arm keeps at most the target


def test_sae_notebook_design_card_command(tmp_path):
    """`papermill notebooks/02_sae.ipynb out.ipynb -p model mlp` takes its other parameters from defaults;
    a wrong type fails at the top."""
    with pytest.raises(papermill.PapermillExecutionError) as err:
        execute("02_sae.ipynb", tmp_path, model="mlp", profile="smoke", overrides={"target_l0": "strong"})
    assert "parameter target_l0='strong' (str) must be an integer" in str(err.value)


@pytest.fixture(scope="module")
def smoke_results(smoke_models, data_env, tmp_path_factory):
    """The smoke-profile results 03_compare reads; produced here only if the tests above did not already."""
    folder, tmp = data_env / "results" / "smoke", tmp_path_factory.mktemp("prereq")
    if not (folder / "am_summary.json").exists():
        execute(
            "01_activation_maximization.ipynb",
            tmp,
            profile="smoke",
        explorer=False,
        )
    for layer in profiles.STUDY_LAYERS:
        for model in profiles.get("smoke").families if profiles.get("smoke").arms(layer) else ():
            if not (folder / "sae" / layer / f"{model}-summary.json").exists():
                execute(
                    "02_sae.ipynb",
                    tmp,
                    profile="smoke",
                    model=model,
                    layer=layer,
                    explorer=False,
                )


@pytest.mark.parametrize("layer", ["hidden", "mid"])
def test_compare_notebook_smoke(layer, smoke_results, tmp_path, data_env):
    nb = execute(
        "03_compare.ipynb",
        tmp_path,
        profile="smoke",
        layer=layer,
    )
    text = outputs(nb)
    for phrase in ("beyond class and predictions", "ceiling", "random-init", "the reference pair",
                   "the sanity control", "Prediction 2", "The rule, as written before the run",
                   "Prediction 1 on this profile", "simulated studies", "entering features"):
        assert phrase in text, phrase
    saes = bool(profiles.get("smoke").arms(layer))  # half depth has none: the linear measure describes it
    assert images(nb) >= (4 if saes else 2)  # statistics, layer map; with SAEs distributions and pairs
    assert ("No SAEs are trained at this layer" in text) != saes
    folder = data_env / "results" / "smoke"
    conclusions = json.loads((folder / f"conclusions_{layer}.json").read_text())
    lm = sae_study.layer_map("smoke")
    table = profiles.layer_table("smoke")[layer]
    assert conclusions["modules"] == {f: "hidden" if layer == "hidden" else table[f]["layer"] for f in table}
    assert lm["trained"].shape == (len(lm["cnn_layers"]), len(lm["mlp_layers"]))
    assert conclusions["prediction2"] in verdict.VERDICTS
    assert set(conclusions["questions"]) == set(verdict.QUESTIONS)
    assert set(conclusions["questions"]["shares"]["per_arm"]) == {*profiles.get("smoke").arms(layer), "linear"}
    studies = profiles.get("smoke").compare.power_studies
    assert conclusions["power"] is None or conclusions["power"]["studies"] == studies
    # every comparison, both directions, every arm; and a per-feature file of the observed matches
    directions = {(d["comparison"], d["arm"], d["direction"]) for d in conclusions["directions"]}
    assert len(directions) == 4 * 2 * (len(profiles.get("smoke").arms(layer)) + 1)  # the linear measure too
    assert {d["question"] for d in conclusions["directions"]} == set(verdict.QUESTIONS)
    if saes:
        features = pd.read_csv(folder / f"compare_{layer}_features.csv.gz")
        assert {"heldout_r", "partner", "frequency", "reproducibility", "mutual"} <= set(features.columns)
    else:
        assert all(q["verdict"] == verdict.NOT_TESTABLE and q["finding"].startswith("no SAEs are trained")
                   for q in conclusions["questions"].values())
    # the smoke SAEs train for 60 steps: a failed gate must make the verdict "not testable", never "not supported"
    gates_ok = all(
        json.loads((folder / "sae" / layer / f"{f}-summary.json").read_text())[f"{f}-seed{s}-{arm}"]["gates_passed"]
        for f in ("cnn", "mlp", "resnet")
        for s in (0, 1)
        for arm in profiles.get("smoke").arms(layer)
    )
    if not gates_ok:
        assert conclusions["prediction2"] == verdict.NOT_TESTABLE


def test_answers_page_states_what_the_results_files_hold(smoke_results, tmp_path, data_env):
    folder = data_env / "results" / "smoke"
    if not (folder / "conclusions_hidden.json").exists():
        execute(
            "03_compare.ipynb",
            tmp_path,
            profile="smoke",
            layer="hidden",
        )
    if not (folder / "atlas_hidden.json").exists():
        execute("05_atlas.ipynb", tmp_path, profile="smoke", layer="hidden")
    text = outputs(execute("04_answers.ipynb", tmp_path, profile="smoke"))
    am = json.loads((folder / "am_summary.json").read_text())
    hidden = json.loads((folder / "conclusions_hidden.json").read_text())
    assert f"Prediction 1: {am['prediction1']}." in text
    assert f"({', '.join(dict.fromkeys(hidden['modules'].values()))}): {hidden['prediction2']}." in text
    assert "beyond class and predictions" in text and "shares features" in text
    for rule in (verdict.describe_am_gates(), verdict.describe_prediction1(), verdict.describe_sae_gates(),
                 verdict.describe_prediction2()):  # the methods, as the code holds them
        assert rule in text


def test_the_atlas_shows_each_chosen_feature_with_its_partner_as_03_matched_it(smoke_results, tmp_path, data_env):
    """The atlas page on the smoke results: both families, each feature's sheet row, partners present in the other
    family, the held-out r of 03's per-feature table, and the page's script and data in the output."""
    import base64
    import io

    import pandas as pd
    from PIL import Image

    from helpers import atlas
    folder = data_env / "results" / "smoke"
    if not (folder / "conclusions_hidden.json").exists():
        execute("03_compare.ipynb", tmp_path, profile="smoke", layer="hidden")
    nb = execute("05_atlas.ipynb", tmp_path, profile="smoke", layer="hidden")
    html = "".join("".join(o.get("data", {}).get("text/html", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert 'class="atlas-data"' in html and "addEventListener('change'" in html
    data = atlas.load("smoke", "hidden")
    table = pd.read_csv(folder / "compare_hidden_features.csv.gz")
    observed = table[(table.statistic == "observed") & (table.comparison == "question") & (table.arm == "l1")
                     & (table.model_seed == 0) & (table.sae_seed == 0)]
    for family, other in (("cnn", "mlp"), ("mlp", "cnn")):
        records = data["families"][family]["features"]
        assert {"best matched", "typical (random alive)"} <= {r["why"] for r in records}
        sheet = Image.open(io.BytesIO(base64.b64decode(data["families"][family]["sheet"].split(",", 1)[1])))
        assert sheet.size == (data["tile"] * (data["top"] + 1), data["tile"] * len(records))
        shown = {r["feature"] for r in data["families"][other]["features"]}
        rows = observed[observed.direction == f"{family}->{other}"].set_index("feature")
        for r in records:
            assert r["frequency"] > 0 and len(r["labels"]) == data["top"]
            if r["partner"] is not None and not r["why"].startswith("partner"):
                assert r["partner"] in shown  # a chosen feature's partner can be opened in turn
            if r["partner"] is not None:
                assert rows.loc[r["feature"], "partner"] == r["partner"]
                assert r["r"] == pytest.approx(rows.loc[r["feature"], "heldout_r"], abs=1e-4)
    # transfer: one row per chosen feature with a partner, its partner's percentile in the other network
    transfer = pd.DataFrame(data["transfer"])
    assert set(transfer.direction) == {"cnn->mlp", "mlp->cnn"} and transfer.percentile.between(0, 1).all()
    partners = {(family, r["feature"]): r["partner"] for family in ("cnn", "mlp")
                for r in data["families"][family]["features"] if r["partner"] is not None}
    assert all(partners[(t.direction[:3], t.feature)] == t.partner for t in transfer.itertuples())
    assert len(transfer) == len(partners) and "share above 0.5" in outputs(nb)
    assert set(atlas.transfer_summary(data).direction) == {"VGG → MLP", "MLP → VGG"}


def test_compare_notebook_names_the_missing_step(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError) as err:
        execute("03_compare.ipynb", tmp_path, profile="paper")
    assert "01_activation_maximization.ipynb" in str(err.value) and "-p profile paper" in str(err.value)


def test_a_lost_kernel_info_reply_does_not_hang_the_run(tmp_path, monkeypatch):
    """papermill waits forever for the kernel_info reply after the last cell (nteract/papermill#711); ours asks
    again and then gives up with minimal metadata. Here every request goes unanswered: it was never sent."""
    source = tmp_path / "tiny.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, source)
    monkeypatch.setattr(study._Client, "reply_seconds", 1)
    monkeypatch.setattr(study._Client, "request_kernel_info", lambda self: "a request the kernel never got")
    out = tmp_path / "out.ipynb"
    study.execute_notebook(source, out, {})
    result = json.loads(out.read_text())
    assert result["metadata"]["language_info"]["name"] == "python"
    assert "42" in outputs(result)
