"""The front page (``04_answers``): both verdicts as the decision rules returned them, read from the results the
other pages wrote."""
import json
from dataclasses import dataclass

from helpers import profiles, store
from helpers.compare_study import WHERE

P1_COLUMNS = ["objective", "measure", "setting", "cnn_delta", "cnn_low", "mlp_delta", "mlp_low", "position",
              "position_low", "position_high", "verdict"]
P2_COLUMNS = ["comparison", "arm", "direction", "observed", "position", "position_low", "position_high",
              "position_vs_conditional-shuffle", "position_vs_full-shuffle", "position_vs_random-init", "verdict"]


@dataclass
class AnswersPage:
    profile: str

    def __post_init__(self):
        profiles.get(self.profile)
        self.am = json.loads(store.require("am_summary", profile=self.profile).read_text())
        store.require("conclusions", profile=self.profile, layer="hidden")
        self.conclusions = {layer: json.loads(path.read_text()) for layer in profiles.STUDY_LAYERS
                            if (path := store.path("conclusions", profile=self.profile, layer=layer)).exists()}

    def prediction1_text(self):
        am = self.am
        return (f"**Verdict: {am['prediction1']}** ({', '.join(f'{k}: {v}' for k, v in am['per_kind'].items())}). "
                f"Profile `{self.profile}` ({profiles.get(self.profile).models}); {am['units']} units per layer × "
                f"{am['am_seeds']} AM seeds, {am['steps']} steps.")

    def prediction1_table(self):
        import pandas as pd
        return pd.DataFrame(self.am["comparisons"])[P1_COLUMNS].round(3)

    def figure(self, artifact, **fields):
        return str(store.require(artifact, profile=self.profile, **fields))

    def prediction2(self):
        """For each study layer compared: its verdict in words, and the positions of the question, the reference
        pair, the second CNN against the MLP and the sanity control, against each null."""
        import pandas as pd
        from IPython.display import Markdown, display

        from helpers.compare import COMPARISON_LABELS
        for layer, c in self.conclusions.items():
            shares = "; ".join(f"{k}: {v:.0%}" for k, v in c.get("reference_share", {}).items() if v == v)
            arms = "; ".join(f"{arm} arm: {v} ({c['reasons'][arm]})" for arm, v in c["per_arm"].items())
            display(Markdown(
                f"**{WHERE[layer]} ({', '.join(c['modules'].values())}): {c['prediction2']}** ({arms}). "
                f"Similar here means beyond what class and both models' predictions share: the position is 0 at "
                f"the strongest null and 1 at the ceiling"
                + (f"; the MLP's position as a share of the reference pair's: {shares}" if shares else "")
                + f". Profile `{c['profile']}`, {profiles.get(c['profile']).models}."))
            table = pd.DataFrame(c["directions"])
            table = table.assign(comparison=table.comparison.map(COMPARISON_LABELS))
            display(table[[k for k in P2_COLUMNS if k in table]].round(3))
