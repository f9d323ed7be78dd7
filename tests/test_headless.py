"""The one-process study (``helpers.headless``, the paper run on a borrowed GPU): at tiny size on the CPU, without
papermill, Jupyter, IPython, tqdm or yaml, it writes every page and every results file the book reads."""
import json
import os
import subprocess
import sys

from helpers import manifest, profiles
from helpers.paths import ROOT

# Packages a stock PyTorch image lacks: the run must not import them (an entry of None makes the import fail).
ABSENT = ("IPython", "tqdm", "papermill", "yaml", "ipywidgets", "nbformat", "nbclient", "jupyter_core", "sklearn")


def test_the_smoke_study_runs_in_one_process_without_jupyter(tmp_path, data_env):
    book = tmp_path / "book"
    code = (f"import sys; sys.modules.update(dict.fromkeys({ABSENT!r})); from helpers import headless; "
            f"headless.main(['--profile', 'smoke', '--book', {str(book)!r}, '--cifar', {os.environ['CIFAR10_JPG']!r}])")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    steps = manifest.steps("smoke")
    assert run.stdout.count("[done]") == len(steps)
    for step in steps:
        page = step.target(book, "smoke")
        cells = json.loads(page.read_text())["cells"]
        assert any(c.get("outputs") for c in cells if c["cell_type"] == "code"), page.name
        declared = [name for name, _ in step.downloads]
        assert len(step.download_paths("smoke")) == len(declared), (page.name, declared)  # every file it shows
    answers = json.loads(manifest.steps("smoke")[-1].target(book, "smoke").read_text())
    shown = "".join("".join(o.get("data", {}).get("text/markdown", "")) for c in answers["cells"]
                    for o in c.get("outputs", []))
    assert "Prediction 1" in shown and "competence-matched" in shown.lower()
    times = json.loads((data_env / "results" / "smoke" / "headless_times.json").read_text())
    assert set(times["seconds"]) == {s.page for s in steps} and times["device"] == "cpu"
    assert profiles.matched_profiles("smoke") == ["smoke-matched"]
    # stamped as the study runner stamps its pages: a second run (of either runner) skips every page
    assert all(manifest.read_stamp(s.target(book, "smoke"), s.run_parameters("smoke")) for s in steps)
    again = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("[skip]") == len(steps), again.stdout[-2000:]
