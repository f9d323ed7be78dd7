"""The study's units, typed: an SAE of the study (``SAESpec``) and a group of AM images (``AMGroup``). Their ids name
files and table rows; code builds them from these fields and never parses an id or a display label back."""
from dataclasses import asdict, dataclass, fields

NETWORKS = ("trained", "random-init")  # a trained network, or its null: a randomly initialized one


@dataclass(frozen=True)
class SAESpec:
    family: str          # "cnn" or "mlp"
    net: str             # "trained" or "random-init"
    model_seed: int      # the training seed of the network (0 for the random-init one)
    arm: str             # "l1" or "topk"
    sae_seed: int = 0

    @property
    def id(self):
        """The SAE's file stem and row name, e.g. ``cnn-seed1-l1``, ``mlp-random-topk``, ``cnn-seed0-l1-saeseed1``."""
        net = "random" if self.net == "random-init" else f"seed{self.model_seed}"
        return f"{self.family}-{net}-{self.arm}" + (f"-saeseed{self.sae_seed}" if self.sae_seed else "")

    @property
    def network(self):
        """The key of the network it reads: (net, model seed)."""
        return self.net, self.model_seed

    def as_dict(self):
        return dict(asdict(self), id=self.id)

    @classmethod
    def from_dict(cls, d):
        return cls(**{f.name: d[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class AMGroup:
    """The AM images of one objective kind on one network (a trained one or its random-init null)."""
    objective: str       # "classes", "units", "earlier", "channels"
    network: str = "trained"

    @property
    def label(self):
        """For figures and tables only."""
        return self.objective if self.network == "trained" else f"random-init {self.objective}"

    @property
    def null(self):
        return AMGroup(self.objective, "random-init")
