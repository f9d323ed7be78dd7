"""The executed notebooks made into the book: each shaped for a reader, its results files linked, the table of
contents and the landing page's answers written, and ``jupyter-book build``. Used by the study runner
(``helpers.study``, papermill) and by the one-process run (``helpers.headless``); needs no Jupyter itself."""
import json
import re
import subprocess
import sys
from pathlib import Path

from helpers import manifest, profiles, store
from helpers.paths import ROOT, atomic_path, data_dir

BOOK = ROOT / "book"


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def prepare_for_book(path, downloads=(), folder=None):
    """Shape an executed notebook for the book, in place: parameter cells removed, every other code cell folded
    behind "show code" (setup cells, tagged ``remove-input`` in the source, stay hidden), logs (stderr: caching,
    loading, warnings) and progress bars (widget views) left out of the outputs, and a last cell linking
    ``downloads`` (see ``download_links``)."""
    nb = json.loads(Path(path).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if {"parameters", "injected-parameters"} & set(tags):
            tags.append("remove-cell")
        elif not {"remove-cell", "remove-input", "hide-input"} & set(tags):
            tags.append("hide-input")
        cell["outputs"] = [
            o
            for o in cell.get("outputs", [])
            if not (o["output_type"] == "stream" and o["name"] == "stderr") and WIDGET_VIEW not in o.get("data", {})
        ]
    nb.get("metadata", {}).pop("widgets", None)
    links = download_links(downloads, folder) if downloads else []
    if links:
        nb["cells"].append(dict(id="results-files", cell_type="markdown", metadata={},
                                source="**Results files of this page**: " + ", ".join(links) + "."))
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def download_links(files, folder):
    """Copy ``files`` (paths under the data folder) into ``folder``; return MyST download-role links to the copies
    (the book ships them with the page). A results file is named by its path below its profile's results folder,
    after that profile's name where it is not the book part's own (``folder`` is ``book/<profile>/results``): the
    competence-matched pages' files sit beside the base profile's under the same names."""
    import shutil
    links = []
    for source in files:
        rel = source.relative_to(data_dir()).as_posix()
        if rel.startswith("results/"):
            _, profile, below = rel.split("/", 2)
            name = ("" if profile == folder.parent.name else f"{profile}_") + below.replace("/", "_")
        else:
            name = rel.split("/")[-1]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / name)
        links.append(f"{{download}}`{name} <{folder.name}/{name}>`")
    return links


# An absolute file path: '/' then at least two path parts, not inside a word, a number ("1/8") or a URL.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[\w.-]+/)+[\w.-]+")
DATA_URL = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")  # an embedded image (the atlas's sheets), not a path


def machine_paths(path):
    """Absolute file paths that an executed notebook shows a reader (its outputs and its visible sources):
    each one names the machine that ran it, which ``shown_path`` exists to avoid."""
    found = []
    for cell in json.loads(Path(path).read_text())["cells"]:
        texts = [] if "remove-cell" in cell.get("metadata", {}).get("tags", []) else ["".join(cell["source"])]
        for o in cell.get("outputs", []):
            texts.append("".join(o.get("text", "")))
            texts += ["".join(v) for k, v in o.get("data", {}).items() if k.startswith("text/")]
        found += [m for text in texts for m in ABSOLUTE_PATH.findall(DATA_URL.sub("", text))]
    return found


def write_toc():
    """``_toc.yml`` from the manifest, for every profile whose answers page is in ``book/`` (the committed book has
    the cpu profile's)."""
    import yaml
    shown = [p for p in profiles.STUDY_PROFILES if (BOOK / p / "answers.ipynb").exists()]
    text = yaml.safe_dump(manifest.toc(shown), sort_keys=False, allow_unicode=True)
    with atomic_path(ROOT / "_toc.yml") as tmp:
        tmp.write_text("# Table of contents of the book (linked from book/_toc.yml), written from helpers.manifest.toc "
                       "by the study. Paths are relative to book/.\n" + text)


LANDING_ORDER = ("official", "paper", "cpu", "smoke")  # the landing page states the answers of the first one shown


ANSWERS_BLOCK = re.compile(r"(<!-- answers -->\n).*?(<!-- /answers -->)", re.S)


def with_answers(intro, answers):
    """``intro`` (the landing page's Markdown) with its answers block replaced by ``answers``."""
    if not ANSWERS_BLOCK.search(intro):
        raise ValueError("the landing page has no '<!-- answers -->' ... '<!-- /answers -->' block to fill")
    return ANSWERS_BLOCK.sub(lambda m: m.group(1) + answers + "\n" + m.group(2), intro)


def write_intro():
    """The landing page's answers block from the answers page of the largest profile whose pages the book holds (its
    ``landing`` file); left as it is when that profile's results are not in this data folder."""
    shown = [p for p in LANDING_ORDER if (BOOK / p / "answers.ipynb").exists()]
    landing = store.ARTIFACTS["landing"].path(profile=shown[0]) if shown else None
    if landing is None or not landing.exists():
        return
    intro = BOOK / "intro.md"
    text = with_answers(intro.read_text(), landing.read_text())
    with atomic_path(intro) as tmp:
        tmp.write_text(text)


def build_book(path_output=None):
    """`jupyter-book build book` with this interpreter's Jupyter Book (``path_output`` moves _build elsewhere)."""
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(BOOK)]
    if path_output:
        command += ["--path-output", str(path_output)]
    return subprocess.run(command, cwd=ROOT, check=True, capture_output=path_output is not None, text=True)


