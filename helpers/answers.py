"""The front page (``04_answers``): both verdicts as the decision rules returned them, read from the results the
other pages wrote."""
import json
from dataclasses import dataclass

from helpers import profiles, store
from helpers.compare_study import WHERE

P1_COLUMNS = ["objective", "measure", "setting", "cnn_delta", "cnn_low", "mlp_delta", "mlp_low", "position",
              "position_low", "position_high", "verdict"]
P2_COLUMNS = ["arm", "direction", "observed", "strongest_null", "ceiling", "position", "position_low",
              "position_high", "gates_ok", "verdict"]


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
        """For each study layer compared: its verdict in words, and its table of directions."""
        import pandas as pd
        from IPython.display import Markdown, display
        for layer, c in self.conclusions.items():
            display(Markdown(
                f"**{WHERE[layer]} ({c['modules']['cnn']}, {c['modules']['mlp']}): {c['prediction2']}** "
                f"({'; '.join(f'{arm} arm: {v}' for arm, v in c['per_arm'].items())}). Profile `{c['profile']}`, "
                f"{profiles.get(c['profile']).models}."))
            display(pd.DataFrame(c["directions"])[P2_COLUMNS].round(3))
