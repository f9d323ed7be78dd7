"""The feature atlas (``05_atlas``): for one study layer, a page on which the reader picks a feature of either
family's primary SAE (L1 arm, the first model seed and SAE seed) and sees its most activating test images, its AM image,
its firing frequency, and its best partner in the other family with their held-out correlation and the partner's
own images. Plain HTML and JavaScript over images rendered here, so the static book needs no kernel.

Which features: per family the ``BEST`` alive features best matched to the other family (held-out r, as 03 reports
it) and ``RANDOM`` drawn at random among the other alive ones (what a typical feature looks like), plus every
partner of those in the other family, so that a partner can be opened in turn. The images of each family sit in one
JPEG sheet (a row per feature: its AM image, then its top test images), which the page crops."""
import base64
import io
import json
from dataclasses import dataclass

import torch

from helpers import profiles, store
from helpers import sae_study as saes
from helpers.paths import write_json

BEST, RANDOM = 24, 24      # features chosen per family (then their partners are added to the other family)
TOP_IMAGES = 8             # most activating test images per feature
TILE = 32                  # pixels per image in the sheet (CIFAR-10's own size; the page shows them at 2x)


def direction_name(family, other):
    return f"{family}->{other}"


@dataclass
class Atlas:
    profile: str
    layer: str = "hidden"
    seed: int = 0   # the random pick of typical features and the AM start images

    def __post_init__(self):
        import pandas as pd

        from helpers.data import load_cifar10
        from helpers.train import load_trained
        profiles.get(self.profile)
        profiles.check_layer(self.layer)
        profiles.check_seed(self.seed)
        self.families = profiles.FAMILIES
        self.primary = {f: saes.primary_spec(f, self.profile) for f in self.families}
        self.features = {f: saes.load_features(self.profile, self.layer, self.primary[f]) for f in self.families}
        self.frequency = {f: (acts > 0).float().mean(0) for f, acts in self.features.items()}
        table = pd.read_csv(store.require("compare_features", profile=self.profile, layer=self.layer))
        observed = table[(table.comparison == "question") & (table.arm == "l1") & (table.statistic == "observed")
                         & (table.model_seed == self.primary["cnn"].model_seed)
                         & (table.sae_seed == self.primary["cnn"].sae_seed)]
        self.matches = {}
        for f in self.families:
            other = self.other(f)
            rows = observed[observed.direction == direction_name(f, other)]
            self.matches[f] = {int(r.feature): dict(partner=int(r.partner), r=float(r.heldout_r),
                                                    mutual=bool(r.mutual) if r.mutual == r.mutual else False,
                                                    reproducibility=float(r.reproducibility))
                               for r in rows.itertuples()}
        self.test_images, self.test_labels, _ = load_cifar10("test", verbose=False)
        self.readouts = {f: profiles.readout(self.profile, self.layer, f) for f in self.families}
        self.modules = {f: module for f, (module, _) in self.readouts.items()}
        # the first model seed and its primary SAE, read once: AM renders along the encoder, transfer reads the codes
        self.nets = {f: load_trained(f, self.profile, self.primary[f].model_seed) for f in self.families}
        self.saes = {f: saes.load_sae(self.profile, self.layer, self.primary[f]) for f in self.families}

    def other(self, family):
        return next(f for f in self.families if f != family)

    def chosen(self):
        """{family: [(feature, why), ...]}: the best matched, typical alive ones, then the partners of the other
        family's choice."""
        g = torch.Generator().manual_seed(self.seed)
        picked = {}
        for f in self.families:
            frequency = self.frequency[f]
            matched = sorted(self.matches[f].items(), key=lambda kv: -kv[1]["r"])
            best = [i for i, m in matched if frequency[i] > 0][:BEST]
            taken = set(best)
            rest = [i for i in torch.nonzero(frequency > 0).flatten().tolist() if i not in taken]
            typical = [rest[j] for j in torch.randperm(len(rest), generator=g)[:RANDOM].tolist()]
            picked[f] = [(i, "best matched") for i in best] + [(i, "typical (random alive)") for i in typical]
        for f in self.families:
            other = self.other(f)
            have = {i for i, _ in picked[other]}
            for i, _ in list(picked[f]):
                p = self.matches[f].get(i, {}).get("partner")
                if p is not None and p not in have:
                    picked[other].append((p, f"partner of {profiles.side_name(f)} feature {i}"))
                    have.add(p)
        return picked

    def render_am(self, picked, steps):
        """AM images along the chosen features' encoder directions, one batch per family."""
        from helpers import actmax
        out, color = {}, actmax.cifar_color_matrix()  # (it reads the training images: once)
        for f in self.families:
            rows = self.saes[f].W_enc.detach()
            ids = [i for i, _ in picked[f]]
            out[f] = actmax.render(self.nets[f], actmax.direction(self.modules[f], rows[ids]),
                                   steps=steps, seed=self.seed, color_matrix=color,
                                   progress=False).images
        return out

    @torch.no_grad()
    def codes(self, family, images):
        """The primary SAE's features of ``family`` (the first model seed) on float images in [0, 1], read at the study
        layer as 02 harvests it."""
        from helpers.activations import pooled
        from helpers.models import record
        net, (module, grid) = self.nets[family], self.readouts[family]
        with record(net, [module]) as acts:
            net(images.to(next(net.parameters()).device))
            x = pooled(acts[module], grid).flatten(1).float().cpu()
        return self.saes[family].encode(x)

    def transfer(self, picked, am):
        """Do one network's AM images of a feature drive its best-matched partner in the other network more than
        the other network's other features? For each chosen feature with a partner: the partner's rank among the
        other network's alive features on that AM image, each feature's activation taken relative to its largest
        on the test images (mid-ranks for ties; 0.5 when the image tells the partner from no other feature).
        Returns a list of rows (direction, feature, partner, why, r, percentile)."""
        rows = []
        for f in self.families:
            other = self.other(f)
            items = [(row, i, why) for row, (i, why) in enumerate(picked[f]) if i in self.matches[f]]
            if not items:
                continue
            codes = self.codes(other, am[f][[row for row, _, _ in items]])
            alive = self.frequency[other] > 0
            relative = codes[:, alive] / self.features[other][:, alive].max(0).values.clamp_min(1e-12)
            index = torch.cumsum(alive.long(), 0) - 1  # a feature's column among the alive ones
            for n, (_, i, why) in enumerate(items):
                partner = self.matches[f][i]["partner"]
                value = relative[n, index[partner]]
                percentile = ((relative[n] < value).float().mean() + 0.5 * (relative[n] == value).float().mean())
                rows.append(dict(direction=direction_name(f, other), feature=i, partner=partner, why=why,
                                 r=round(self.matches[f][i]["r"], 4), percentile=round(percentile.item(), 4)))
        return rows

    def data(self, am_steps):
        """Everything the page shows: per family its features (id, why, frequency, partner, r, mutual,
        reproducibility, the labels of the top images) and its image sheet as a JPEG data URL."""
        from helpers.data import CLASSES
        picked = self.chosen()
        am = self.render_am(picked, am_steps)
        out = dict(profile=self.profile, layer=self.layer, modules=self.modules, tile=TILE, top=TOP_IMAGES,
                   names={f: profiles.side_name(f) for f in self.families}, families={},
                   transfer=self.transfer(picked, am))
        for f in self.families:
            acts, frequency = self.features[f], self.frequency[f]
            records, tiles = [], []
            for row, (i, why) in enumerate(picked[f]):
                top = acts[:, i].topk(TOP_IMAGES).indices
                match = self.matches[f].get(i, {})
                records.append(dict(feature=i, why=why, row=row, frequency=round(frequency[i].item(), 5),
                                    partner=match.get("partner"), r=round(match["r"], 4) if match else None,
                                    mutual=match.get("mutual", False),
                                    reproducibility=round(match["reproducibility"], 4) if match else None,
                                    labels=[CLASSES[self.test_labels[j]] for j in top.tolist()],
                                    images=top.tolist()))
                tiles.append(torch.cat([am[f][row:row + 1].cpu(), self.test_images[top].float() / 255]))
            out["families"][f] = dict(features=records, sheet=sheet_url(torch.stack(tiles)))
        return out


def build(profile, layer="hidden", seed=0):
    """The atlas of ``layer`` (AM at the profile's ``compare.am_steps``), written as ``atlas`` for the book's pages;
    returns its data."""
    data = Atlas(profile, layer, seed).data(profiles.get(profile).compare.am_steps)
    write_json(store.path("atlas", profile=profile, layer=layer), data)
    return data


def load(profile, layer="hidden"):
    return json.loads(store.require("atlas", profile=profile, layer=layer).read_text())


def sheet_url(tiles):
    """(rows, columns, 3, H, W) images in [0, 1] as one JPEG sheet, a data URL."""
    from PIL import Image
    rows, cols, _, h, w = tiles.shape
    grid = tiles.clamp(0, 1).permute(0, 3, 1, 4, 2).reshape(rows * h, cols * w, 3)
    buffer = io.BytesIO()
    Image.fromarray((grid * 255).round().to(torch.uint8).numpy()).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


STYLE = """
.atlas {font-size: 0.9rem}
.atlas .pick {display: flex; gap: 1.5rem; margin-bottom: 0.8rem; flex-wrap: wrap}
.atlas .card {border: 1px solid #ccc; border-radius: 4px; padding: 0.6rem; margin-bottom: 0.8rem}
.atlas .tiles {display: flex; gap: 4px; flex-wrap: wrap}
.atlas .tile {text-align: center; font-size: 0.75rem}
.atlas .tile div.img {width: 64px; height: 64px; image-rendering: pixelated; background-repeat: no-repeat}
.atlas .tile.am div.img {outline: 2px solid #444}
.atlas .numbers {margin: 0.3rem 0 0.5rem 0}
"""

SCRIPT = """
(function () {
  const root = document.currentScript.closest('.atlas');
  const data = JSON.parse(root.querySelector('script.atlas-data').textContent);
  const family = root.querySelector('select.atlas-family'), feature = root.querySelector('select.atlas-feature');
  const other = f => Object.keys(data.families).find(g => g !== f);
  const find = (f, i) => data.families[f].features.find(r => r.feature === i);
  function tiles(card, f, rec) {
    const box = card.querySelector('.tiles');
    box.innerHTML = '';
    const scale = 64 / data.tile, sheet = data.families[f].sheet;
    for (let c = 0; c <= data.top; c++) {
      const tile = document.createElement('div'), img = document.createElement('div'),
            caption = document.createElement('div');
      tile.className = 'tile' + (c === 0 ? ' am' : '');
      img.className = 'img';
      img.style.backgroundImage = 'url(' + sheet + ')';
      img.style.backgroundSize = (data.tile * (data.top + 1) * scale) + 'px auto';
      img.style.backgroundPosition = (-c * 64) + 'px ' + (-rec.row * 64) + 'px';
      caption.textContent = c === 0 ? 'AM image' : rec.labels[c - 1];
      tile.append(img, caption);
      box.append(tile);
    }
  }
  function describe(f, rec) {
    return data.names[f] + ' feature ' + rec.feature + ' (' + rec.why + '): fires on ' +
      (100 * rec.frequency).toFixed(2) + '% of the test images';
  }
  function show() {
    const f = family.value, rec = find(f, Number(feature.value)), o = other(f);
    const main = root.querySelector('.card.main'), partner = root.querySelector('.card.partner');
    main.querySelector('.numbers').textContent = describe(f, rec);
    tiles(main, f, rec);
    const p = rec.partner === null ? null : find(o, rec.partner);
    partner.querySelector('.numbers').textContent = rec.partner === null ? 'No partner recorded.' :
      'Best partner: ' + data.names[o] + ' feature ' + rec.partner + ', held-out correlation r = ' +
      rec.r.toFixed(3) + (rec.mutual ? ' (mutual: each is the other\\'s best match)' : '') +
      (p ? '; it fires on ' + (100 * p.frequency).toFixed(2) + '% of the test images' : '');
    if (p) { tiles(partner, o, p); } else { partner.querySelector('.tiles').innerHTML = ''; }
  }
  function options() {
    feature.innerHTML = '';
    for (const rec of data.families[family.value].features) {
      const opt = document.createElement('option');
      opt.value = rec.feature;
      opt.textContent = 'feature ' + rec.feature + (rec.r === null ? '' : ', r = ' + rec.r.toFixed(2)) +
        ' (' + rec.why + ')';
      feature.append(opt);
    }
    show();
  }
  family.addEventListener('change', options);
  feature.addEventListener('change', show);
  options();
})();
"""


def page_html(data):
    """The atlas as one self-contained HTML block (styles, data, the sheets as data URLs, the script)."""
    names = data["names"]
    choices = "".join(f'<option value="{f}">{names[f]}</option>' for f in data["families"])
    card = '<div class="card {0}"><b>{1}</b><div class="numbers"></div><div class="tiles"></div></div>'
    payload = json.dumps(data).replace("</", "<\\/")
    return (f'<div class="atlas" data-layer="{data["layer"]}"><style>{STYLE}</style>'
            f'<div class="pick"><label>Family <select class="atlas-family">{choices}</select></label>'
            f'<label>Feature <select class="atlas-feature"></select></label></div>'
            + card.format("main", "The feature") + card.format("partner", "Its best partner in the other family")
            + f'<script type="application/json" class="atlas-data">{payload}</script><script>{SCRIPT}</script>'
            '</div>')


def describe(data):
    """The sentence above the atlas: what is shown, from which models."""
    counts = ", ".join(f"{len(v['features'])} {data['names'][f]}" for f, v in data["families"].items())
    modules = ("the last hidden layers" if data["layer"] == "hidden" else "layers " + ", ".join(
        f"{data['names'][f]} {m}" for f, m in data["modules"].items()))
    return (f"Profile `{data['profile']}` ({profiles.get(data['profile']).models}), {modules}: the L1 SAE "
            f"of the first model seed ({profiles.get(data['profile']).model_seeds[0]}) and the first SAE seed on each "
            f"side. {counts} features: per family the {BEST} alive features best matched "
            f"to the other family, {RANDOM} drawn at random among the other alive ones, and the partners of the "
            f"other family's choice. For each: its AM image (framed), its {TOP_IMAGES} most activating test images "
            f"with their classes, its firing frequency, and its best partner by held-out correlation (the match "
            f"that 03 reports), with the partner's images.")


def transfer_summary(data, replicates=2000, seed=0):
    """The transfer rows of ``data`` per direction and kind of feature (best matched, typical, partners): pairs,
    the mean percentile of the partner with a bootstrap 95% interval over pairs, the share above 0.5, the one-sided
    Wilcoxon p of percentile > 0.5, the share in the top tenth, and the one-sided Mann-Whitney p of the kind's
    percentiles over the typical features' in the same direction. The percentiles are bimodal (a partner silent on
    the image ties with the other silent features near 0.5; one it drives sits near 1), so the typical features,
    not 0.5, are the level of no transfer, and the top share says how often a partner is driven. A pandas table."""
    import pandas as pd
    from scipy.stats import wilcoxon
    rows = pd.DataFrame(data["transfer"])
    if rows.empty:
        return rows
    rows["kind"] = rows.why.where(rows.why.isin(["best matched", "typical (random alive)"]), "partner")
    out = []
    g = torch.Generator().manual_seed(seed)
    for (direction, kind), part in rows.groupby(["direction", "kind"], sort=False):
        v = torch.tensor(part.percentile.values, dtype=torch.float64)
        reps = v[torch.randint(len(v), (replicates, len(v)), generator=g)].mean(1)
        low, high = torch.quantile(reps, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
        centred = v.numpy() - 0.5
        p = float(wilcoxon(centred, alternative="greater").pvalue) if (centred != 0).any() else 1.0
        out.append(dict(direction=direction.replace("->", " → ").replace("cnn", "VGG").replace("mlp", "MLP"),
                        features=kind, pairs=len(v), mean_percentile=round(v.mean().item(), 3),
                        low=round(low, 3), high=round(high, 3), above_half=round((v > 0.5).double().mean().item(), 3),
                        p=float(f"{p:.3g}"), top_share=round((v >= 0.9).double().mean().item(), 3),
                        p_vs_typical=_over_typical(part.percentile.values, rows, direction, kind)))
    return pd.DataFrame(out)


def _over_typical(values, rows, direction, kind):
    """One-sided Mann-Whitney p of ``values`` over the typical features' percentiles in ``direction``; NaN for the
    typical row itself or without typical features."""
    from scipy.stats import mannwhitneyu
    typical = rows[(rows.direction == direction) & (rows.kind == "typical (random alive)")].percentile.values
    if kind == "typical (random alive)" or len(typical) == 0:
        return float("nan")
    return float(f"{mannwhitneyu(values, typical, alternative='greater').pvalue:.3g}")


def transfer_table(data):
    """``transfer_summary`` as the atlas page shows it: one row per direction and kind of feature, the partner's
    mean percentile beside its interval, in words."""
    t = transfer_summary(data)
    if t.empty:
        return t
    return t.assign(interval=[f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in zip(t.mean_percentile, t.low, t.high)])[
        ["direction", "features", "pairs", "interval", "above_half", "p"]].rename(columns={
            "interval": "partner's mean percentile [95% interval]", "above_half": "share above 0.5",
            "p": "p (Wilcoxon, > 0.5)"}).set_index(["direction", "features"])


def matched_pairs_figure(data, kinds=("best matched", "typical (random alive)"), per_kind=3, family="cnn"):
    """The best and typical CNN features with their MLP partners: AM image and top images of each, side by side
    (for the answers page)."""
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image
    other = next(f for f in data["families"] if f != family)
    find = {f: {r["feature"]: r for r in data["families"][f]["features"]} for f in data["families"]}
    sheets = {f: np.asarray(Image.open(io.BytesIO(base64.b64decode(v["sheet"].split(",", 1)[1]))))
              for f, v in data["families"].items()}
    rows = [r for kind in kinds for r in [r for r in data["families"][family]["features"] if r["why"] == kind
                                          and r["partner"] in find[other]][:per_kind]]
    if not rows:
        return None
    t, cols = data["tile"], 5
    fig, axes = plt.subplots(len(rows), 2, figsize=(2 * cols * 0.9 + 1, len(rows) * 1.2), squeeze=False)
    for ax_row, rec in zip(axes, rows):
        for ax, (f, r) in zip(ax_row, ((family, rec), (other, find[other][rec["partner"]]))):
            ax.imshow(sheets[f][r["row"] * t:(r["row"] + 1) * t, :cols * t])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{data['names'][f]} feature {r['feature']}" + (f" ({rec['why']}, r = {rec['r']:.2f})"
                                                                        if f == family else ""), fontsize=8)
    fig.tight_layout()
    return fig
