"""The study's manifest: its steps in the order they run, the page each writes in the book, the parameters each
takes beyond the profile, the results files each page links for download, the other pages' results each reads (and
so the pages it runs after), the runners' stamps of which pages ran here, and the book's table of contents."""
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from helpers import profiles, store
from helpers.paths import ROOT, data_dir, write_json


@dataclass(frozen=True)
class Step:
    notebook: str              # the source, in notebooks/
    page: str                  # the executed notebook's name in book/<profile>/, without .ipynb
    title: str                 # its chapter title in the book
    parameters: dict           # what the study passes beyond the profile
    downloads: tuple = field(default=())   # (artifact, fields) pairs the page links for download
    reads: tuple = field(default=())       # (artifact, fields) pairs of the other pages' results it reads
    after: tuple = field(default=())       # the pages that write those (computed by ``after``): it runs after them

    def target(self, book, profile):
        return book / profile / f"{self.page}.ipynb"

    def profile(self, profile):
        """The profile the step runs: the study's, or the competence-matched one built on it."""
        return self.parameters.get("profile", profile)

    def run_parameters(self, profile):
        """What the step's notebook is given: the study's profile (a matched page names its own) and the rest."""
        return {"profile": profile, **self.parameters}

    def download_paths(self, profile):
        """The results files of the page that exist (paths under the data folder)."""
        paths = [store.ARTIFACTS[name].path(profile=self.profile(profile), **fields) for name, fields in self.downloads]
        return [p for p in paths if p.exists()]


AM_DOWNLOADS = ("am_scores", "am_controls", "am_gates", "am_effects", "am_comparisons", "am_summary",
                "shift_invariance", "shift_invariance_pairs", "am_dose_response", "am_pooling", "am_natural_path",
                "am_power", "network_facts")
COMPARE_DOWNLOADS = ("compare_gates", "compare_statistics", "compare_directions", "compare_features", "compare_cka")
SEED_WORDS = ("", ", second seed", ", third seed", ", fourth seed")  # the profile's first to fourth training seed
LAYER_TAGS = {"hidden": "", "mid": "_mid", "late": "_late"}  # a study layer's suffix in its pages' names
LAYER_TITLES = {"mid": "half depth", "late": "three quarters of depth"}
ATLAS_LAYERS = ("hidden", "mid")  # the feature atlas: the proposal's layers and the middle pair


def steps(profile, seed=0):
    """Every step of the study on ``profile`` in the order it runs (the answers page last, as it reads the rest),
    each with the pages it runs after (``after``). ``seed``: the pages' own random picks (image splits, shuffles,
    figures); the training, SAE and AM seeds are the profile's lists."""
    p = profiles.get(profile)
    out = [Step("00_train.ipynb", f"00_train_{m}" + (f"_seed{s}" if s else ""),
                f"Training the {profiles.FAMILY[m].role}" + (SEED_WORDS[i] if i < len(SEED_WORDS) else f", seed {s}"),
                dict(model=m, seed=s), (("training_record", dict(family=m, seed=s)),))
           for m in p.trained_models for i, s in enumerate(p.seeds_of(m))] if not p.official else []
    out.append(Step("01_activation_maximization.ipynb", "01_activation_maximization",
                    "Activation maximization (Prediction 1)", dict(model="both", seed=seed, explorer=False),
                    tuple((a, {}) for a in AM_DOWNLOADS), reads=am_reads(profile)))
    # Prediction 2 at the proposal's layer (the last hidden one), then at the layer pairs fixed by relative depth.
    for layer in p.layer_arms:
        tag = LAYER_TAGS[layer]
        for m in p.families if p.layer_arms[layer] else ():  # a layer without SAEs: the linear measure alone
            role = profiles.FAMILY[m].role
            out.append(Step("02_sae.ipynb", f"02_sae_{m}{tag}", "Sparse autoencoder on " + (
                f"the {role}" if layer == "hidden" else f"the {role} at {LAYER_TITLES[layer]}"),
                dict(model=m, layer=layer, seed=seed, explorer=False),
                tuple((a, dict(family=m, layer=layer)) for a in ("sae_metrics", "sae_gates", "sae_summary")),
                reads=sae_reads(profile, m, layer)))
        out.append(Step("03_compare.ipynb", f"03_compare{tag}", "Comparison and conclusions (Prediction 2)"
                        if layer == "hidden" else f"Comparison at {LAYER_TITLES[layer]}", dict(layer=layer, seed=seed),
                        tuple((a, dict(layer=layer)) for a in COMPARE_DOWNLOADS
                              if p.layer_arms[layer] or a != "compare_gates")  # no SAEs: no gate table
                        + (("layer_map_table", {}), ("conclusions", dict(layer=layer))),
                        reads=compare_reads(profile, layer)))
    # Both predictions again, through the same pages, with the CNNs at the epoch whose accuracy matches the MLP's.
    for matched in profiles.matched_profiles(profile):
        out += matched_steps(matched, seed)
    if p.scale_models:
        out.append(Step("06_training.ipynb", "06_training", "Alignment along training and scale",
                        dict(seed=seed), (("trajectory", {}),), reads=trajectory_reads(profile)))
    for layer in (a for a in ATLAS_LAYERS if p.layer_arms.get(a)):
        tag = LAYER_TAGS[layer]
        out.append(Step("05_atlas.ipynb", f"05_atlas{tag}", "Feature atlas" + ("" if layer == "hidden" else
                                                                                f", {LAYER_TITLES[layer]}"),
                        dict(layer=layer, seed=seed), (("atlas", dict(layer=layer)),),
                        reads=atlas_reads(profile, layer)))
    out.append(Step("04_answers.ipynb", "answers", "The answers", {},
                    (("am_summary", {}),) + tuple(("conclusions", dict(layer=layer)) for layer in p.layer_arms)
                    + (("trajectory", {}),) * bool(p.scale_models), reads=answers_reads(profile)))
    return [replace(step, after=after(step, out, profile)) for step in out]


def matched_steps(matched, seed):
    """The competence-matched profile's pages: both predictions through the same notebooks, the CNNs' SAEs only."""
    m = profiles.get(matched)
    out = [Step("01_activation_maximization.ipynb", "matched_01_activation_maximization",
                "Activation maximization, competence-matched CNNs",
                dict(profile=matched, model="both", seed=seed, explorer=False), tuple((a, {}) for a in AM_DOWNLOADS),
                reads=am_reads(matched))]
    out += [Step("02_sae.ipynb", f"matched_02_sae_{f}", f"Sparse autoencoder on the competence-matched "
                 f"{profiles.FAMILY[f].role}", dict(profile=matched, model=f, layer="hidden", seed=seed,
                                                    explorer=False),
                 tuple((a, dict(family=f, layer="hidden")) for a in ("sae_metrics", "sae_gates", "sae_summary")),
                 reads=sae_reads(matched, f, "hidden")) for f in m.matching.families]
    out.append(Step("03_compare.ipynb", "matched_03_compare", "Comparison with competence-matched CNNs "
                    "(Prediction 2)", dict(profile=matched, layer="hidden", seed=seed),
                    tuple((a, dict(layer="hidden")) for a in COMPARE_DOWNLOADS)
                    + (("conclusions", dict(layer="hidden")),),
                    reads=compare_reads(matched, "hidden")))
    return out


# ----------------------------------------------------------------------------- what each page reads of the others'
#
# Each page declares the results of other pages it reads, as (artifact, fields) with the reader's profile; which
# pages write them follows from ``store.ARTIFACTS`` (the notebook), ``store.owner`` (the folder, so the profile of
# the page that writes it) and the fields that tell a notebook's pages apart (``IDENTITY``).

IDENTITY = {"00_train.ipynb": {"family": "model", "seed": "seed"},
            "02_sae.ipynb": {"family": "model", "layer": "layer"},
            "03_compare.ipynb": {"layer": "layer"}, "05_atlas.ipynb": {"layer": "layer"}}


def model_reads(profile, families, epochs=False):
    """The trained models a page of ``profile`` loads (``store.owner``: a competence-matched profile's are its base's
    checkpoints), with ``epochs`` every epoch's checkpoint too."""
    p = profiles.get(profile)
    if p.official:
        return ()
    kinds = ("training_record", "epoch_checkpoint") if epochs else ("training_record",)
    return tuple((a, dict(profile=profile, family=f, seed=s)) for f in families for s in p.seeds_of(f) for a in kinds)


def shared_reads(name, profile, families, **fields):
    """The results ``name`` of ``families``' trained and random-init networks that ``profile`` reads from another
    profile's folder (``store.owner``): a competence-matched profile's shared with its base."""
    return tuple((name, dict(fields, profile=profile, family=f, network=n)) for f in families
                 for n in ("trained", "random-init") if store.owner(profile, f, n) != profile)


def am_reads(profile):
    """01 reads both families' models, and the AM runs its profile shares with another."""
    return model_reads(profile, profiles.FAMILIES) + shared_reads("am_run", profile, profiles.FAMILIES)


def sae_reads(profile, family, layer):
    """02 at the last hidden layer reads its family's models and the SAEs its profile shares with another; at another
    study layer, the harvest that the family's hidden-layer page made of every study layer in one pass."""
    if layer != "hidden":
        first = profiles.sae_layer(profile, layer, family)  # the page that trains this readout's SAEs
        return (("activations", dict(profile=profile, family=family, layer="hidden")),) + (
            (("sae_summary", dict(profile=profile, family=family, layer=first)),) if first != layer else ())
    return model_reads(profile, (family,)) + shared_reads("sae", profile, (family,), layer=layer)


def compare_reads(profile, layer):
    """03 reads every family's SAEs at its layer where it has any (trained and random-init), the AM summary and the
    models (it makes the every-layer CKA map itself, cached)."""
    p = profiles.get(profile)
    saes = tuple((a, dict(profile=profile, family=f, network=n, layer=layer)) for f in p.families if p.arms(layer)
                 for a, n in (("sae_summary", None), ("sae_features", "trained"), ("sae_features", "random-init")))
    return model_reads(profile, p.families) + saes + (("am_summary", dict(profile=profile)),)


def atlas_reads(profile, layer):
    """05 reads its layer's comparison and the compared families' primary SAEs and their features."""
    saes = tuple((a, dict(profile=profile, family=f, network="trained", layer=layer)) for f in profiles.FAMILIES
                 for a in ("sae", "sae_features"))
    return (model_reads(profile, profiles.FAMILIES) + (("compare_features", dict(profile=profile, layer=layer)),)
            + saes)


def trajectory_reads(profile):
    """06 reads every model's epoch checkpoints and Prediction 2's positions at the checkpoints where it ran (the
    final CNNs and the competence-matched ones)."""
    profiles_read = [profile, *profiles.matched_profiles(profile)]
    return (model_reads(profile, profiles.get(profile).trained_models, epochs=True)
            + tuple(("conclusions", dict(profile=q, layer="hidden")) for q in profiles_read))


def answers_reads(profile):
    """The answers read every verdict (and the competence-matched profiles'), the figures they show, the atlas and
    the curve along training."""
    p = profiles.get(profile)
    verdicts = tuple(r for q in [profile, *profiles.matched_profiles(profile)]
                     for r in (("am_summary", dict(profile=q)), ("conclusions", dict(profile=q, layer="hidden"))))
    figures = tuple((a, dict(profile=profile, family=f)) for f in profiles.FAMILIES
                    for a in ("am_classes_figure", "am_group_figure"))
    pages = tuple(("conclusions", dict(profile=profile, layer=layer)) for layer in p.layer_arms if layer != "hidden")
    pages += (("atlas", dict(profile=profile, layer="hidden")), ("shift_invariance_pairs", dict(profile=profile)),
             ("am_scores_figure", dict(profile=profile)), ("compare_figure", dict(profile=profile, layer="hidden")),
             ("compare_distributions", dict(profile=profile, layer="hidden")))
    curve = (("trajectory_figure", dict(profile=profile)),) if p.scale_models else ()
    return model_reads(profile, p.families) + verdicts + figures + pages + curve


def writers(name, fields, steps, profile):
    """The steps of ``steps`` (of the study on ``profile``) that write artifact ``name`` with ``fields``: pages of its
    notebook, of the profile whose folder holds it, whose parameters agree with the fields that tell them apart."""
    artifact = store.ARTIFACTS[name]
    folder = artifact.folder(fields)
    return [s for s in steps if s.notebook == artifact.notebook and s.profile(profile) == folder
            and all(fields[f] == s.parameters.get(prm) for f, prm in IDENTITY.get(s.notebook, {}).items()
                    if f in fields)]


def after(step, steps, profile):
    """The pages that write what ``step`` reads: it runs after them (and may run beside any other)."""
    found = [w.page for name, fields in step.reads for w in writers(name, fields, steps, profile) if w is not step]
    return tuple(dict.fromkeys(found))


def longest_paths(steps, seconds):
    """{page: the seconds of the longest chain of ``steps`` that starts at it}: its own expected ``seconds[page]``
    (1 where unknown) plus the longest chain among the pages that run after it. Starting the ready page with the
    longest chain first keeps the critical path busy."""
    later = {s.page: [] for s in steps}
    for s in steps:
        for page in s.after:
            later.get(page, []).append(s.page)
    chain = {}

    def length(page):
        if page not in chain:
            chain[page] = (seconds.get(page) or 1.0) + max((length(p) for p in later[page]), default=0.0)
        return chain[page]
    return {s.page: length(s.page) for s in steps}


def expected_seconds(step, book, profile):
    """A page's time when it last ran: its stamp's, else the executed page's in ``book`` (papermill's duration, which
    a fresh clone has for the committed cpu book), else None."""
    target, parameters = step.target(book, profile), step.run_parameters(profile)
    stamp = read_stamp(target, parameters)
    if stamp and stamp.get("seconds"):
        return stamp["seconds"]
    try:
        return json.loads(target.read_text())["metadata"]["papermill"]["duration"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ----------------------------------------------------------------------------- stamps: which pages ran here
#
# Both runners (``helpers.study`` through papermill, ``helpers.headless`` in one process) leave a stamp per page, so
# either skips what the other ran with the same parameters since the last change to the notebook and the code.

def stamp_path(target, parameters):
    return data_dir() / "results" / parameters["profile"] / "study" / f"{target.stem}.json"


def read_stamp(target, parameters):
    """What the last run of this step left: dict(parameters, seconds), or None."""
    stamp = stamp_path(target, parameters)
    if not stamp.exists():
        return None
    saved = json.loads(stamp.read_text())
    return saved if "parameters" in saved else dict(parameters=saved, seconds=None)  # older stamps: parameters only


def write_stamp(target, parameters, seconds):
    write_json(stamp_path(target, parameters), dict(parameters=parameters, seconds=round(seconds),
                                                    page=str(Path(target).resolve())))


def up_to_date(source, target, parameters):
    """Did this machine run the step into ``target`` (that very file: a run into another book folder does not count)
    with ``parameters``, after the last change to its notebook ``source`` and to the package's code?"""
    stamp, saved = stamp_path(target, parameters), read_stamp(target, parameters)
    if not (target.exists() and saved):
        return False
    newest_code = max(p.stat().st_mtime for p in [source, *(ROOT / "helpers").rglob("*.py")])
    return (saved["parameters"] == parameters and saved.get("page") == str(Path(target).resolve())
            and stamp.stat().st_mtime > newest_code)


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
