"""The study's manifest: its steps in the order they run, the page each writes in the book, the parameters each
takes beyond the profile, the results files each page links for download, and the book's table of contents."""
from dataclasses import dataclass, field, replace

from helpers import profiles, store


@dataclass(frozen=True)
class Step:
    notebook: str              # the source, in notebooks/
    page: str                  # the executed notebook's name in book/<profile>/, without .ipynb
    title: str                 # its chapter title in the book
    parameters: dict           # what the study passes beyond the profile
    downloads: tuple = field(default=())   # (artifact, fields) pairs the page links for download
    after: tuple = field(default=())       # the pages whose results this one reads (``needs``): it runs after them

    def target(self, book, profile):
        return book / profile / f"{self.page}.ipynb"

    def profile(self, profile):
        """The profile the step runs: the study's, or the competence-matched one built on it."""
        return self.parameters.get("profile", profile)

    def download_paths(self, profile):
        """The results files of the page that exist (paths under the data folder)."""
        paths = [store.ARTIFACTS[name].path(profile=self.profile(profile), **fields) for name, fields in self.downloads]
        return [p for p in paths if p.exists()]


NAMES = {"cnn": "CNN", "mlp": "MLP", "resnet": "reference ResNet", "mlp-small": "smaller MLP"}
AM_DOWNLOADS = ("am_scores", "am_controls", "am_gates", "am_effects", "am_comparisons", "am_summary")
COMPARE_DOWNLOADS = ("compare_gates", "compare_statistics", "compare_directions", "compare_features", "compare_cka")
SEED_WORDS = {0: "", 1: ", second seed", 2: ", third seed"}


def steps(profile, seed=0):
    """Every step of the study on ``profile`` in the order it runs (the answers page last, as it reads the rest)."""
    p = profiles.get(profile)
    out = [Step("00_train.ipynb", f"00_train_{m}" + (f"_seed{s}" if s else ""),
                f"Training the {NAMES[m]}" + SEED_WORDS.get(s, f", seed {s}"), dict(model=m, seed=seed + s),
                (("training_record", dict(family=m, seed=seed + s)),))
           for m in p.trained_models for s in range(p.model_seeds)] if not p.official else []
    out.append(Step("01_activation_maximization.ipynb", "01_activation_maximization",
                    "Activation maximization (Prediction 1)", dict(model="both", seed=seed, explorer=False),
                    tuple((a, {}) for a in AM_DOWNLOADS)))
    # Prediction 2 at the proposal's layer (the last hidden one), then again at the best-aligned mid-depth pair.
    for layer, tag in (("hidden", ""), ("mid", "_mid")):
        for m in p.families:
            where = "the " + NAMES[m] if layer == "hidden" else f"a mid-depth {NAMES[m]} layer"
            out.append(Step("02_sae.ipynb", f"02_sae_{m}{tag}", f"Sparse autoencoder on {where}",
                            dict(model=m, layer=layer, seed=seed, explorer=False),
                            tuple((a, dict(family=m, layer=layer))
                                  for a in ("sae_metrics", "sae_gates", "sae_summary"))))
        out.append(Step("03_compare.ipynb", f"03_compare{tag}", "Comparison and conclusions (Prediction 2)"
                        if layer == "hidden" else "Comparison at the mid-depth layers", dict(layer=layer, seed=seed),
                        tuple((a, dict(layer=layer)) for a in COMPARE_DOWNLOADS)
                        + (("layer_map_table", {}), ("conclusions", dict(layer=layer)))))
    # Both predictions again, through the same pages, with the CNNs at the epoch whose accuracy matches the MLP's.
    for matched in profiles.matched_profiles(profile):
        m = profiles.get(matched)
        out.append(Step("01_activation_maximization.ipynb", "matched_01_activation_maximization",
                        "Activation maximization, competence-matched CNNs",
                        dict(profile=matched, model="both", seed=seed, explorer=False),
                        tuple((a, {}) for a in AM_DOWNLOADS)))
        for f in m.matching.families:
            out.append(Step("02_sae.ipynb", f"matched_02_sae_{f}", f"Sparse autoencoder on the competence-matched "
                            f"{NAMES[f]}", dict(profile=matched, model=f, layer="hidden", seed=seed, explorer=False),
                            tuple((a, dict(family=f, layer="hidden"))
                                  for a in ("sae_metrics", "sae_gates", "sae_summary"))))
        out.append(Step("03_compare.ipynb", "matched_03_compare", "Comparison with competence-matched CNNs "
                        "(Prediction 2)", dict(profile=matched, layer="hidden", seed=seed),
                        tuple((a, dict(layer="hidden")) for a in COMPARE_DOWNLOADS)
                        + (("conclusions", dict(layer="hidden")),)))
    if p.scale_models:
        out.append(Step("06_training.ipynb", "06_training", "Alignment along training and scale",
                        dict(seed=seed), (("trajectory", {}),)))
    for layer, tag in (("hidden", ""), ("mid", "_mid")):
        out.append(Step("05_atlas.ipynb", f"05_atlas{tag}", "Feature atlas" + ("" if layer == "hidden" else
                                                                                ", mid-depth layers"),
                        dict(layer=layer, seed=seed), (("atlas", dict(layer=layer)),)))
    out.append(Step("04_answers.ipynb", "answers", "The answers", {},
                    (("am_summary", {}), ("conclusions", dict(layer="hidden")), ("conclusions", dict(layer="mid")))
                    + (("trajectory", {}),) * bool(p.scale_models)))
    return [replace(step, after=needs(step, out, p)) for step in out]


def needs(step, steps, p):
    """The pages of ``steps`` that ``step`` reads results of, so the study may run any pages whose needs are met at
    the same time: AM and the SAEs read the trained models (the SAE pages every family's, for the layer map that
    picks the mid-depth layers); a mid-depth SAE page the hidden page's harvest; a comparison every SAE page of its
    layer and the AM summary; a competence-matched page the base profile's page whose random-init results it
    reuses; the atlas its layer's comparison; the curve every training; the answers every other page."""
    kind, prm = step.notebook[:2], step.parameters
    matched = "profile" in prm
    pages = {}
    for s in steps:
        pages.setdefault((s.notebook[:2], "profile" in s.parameters, s.parameters.get("layer"),
                          s.parameters.get("model")), []).append(s.page)

    def of(kind, matched=False, layer=None, model=None):
        return [page for (k, m, lay, mod), names in pages.items() for page in names
                if k == kind and m == matched and layer in (None, lay) and model in (None, mod)]
    training = [page for m in p.families for page in of("00", model=m)]
    if kind == "00":
        return ()
    if kind == "01":
        return tuple(of("01") if matched else training)
    if kind == "02":
        if matched:
            return tuple(of("02", layer="hidden", model=prm["model"]))
        return tuple(training if prm["layer"] == "hidden" else of("02", layer="hidden", model=prm["model"]))
    if kind == "03":
        return tuple(of("02", matched, prm["layer"]) + of("01", matched))
    if kind == "05":
        return tuple(of("03", layer=prm["layer"]))
    if kind == "06":
        return tuple(of("00"))
    return tuple(s.page for s in steps if s.page != step.page)


def toc(book_profiles):
    """The book's table of contents (``_toc.yml``) for the profiles whose pages it holds: per profile, the answers
    first, then every page in the order the study wrote them; the references last."""
    parts = []
    for name in book_profiles:
        ordered = sorted(steps(name), key=lambda s: s.notebook != "04_answers.ipynb")
        parts.append(dict(caption=f"{name} profile: {profiles.get(name).caption}",
                          chapters=[dict(file=f"{name}/{s.page}", title=s.title) for s in ordered]))
    parts.append(dict(caption="Back matter", chapters=[dict(file="references")]))
    return dict(format="jb-book", root="intro", parts=parts)
