"""The study's units, typed: an SAE of the study (``SAESpec``) and a group of AM images (``AMGroup``). Their ids name
files and table rows; code builds them from these fields and never parses an id or a display label back."""
from dataclasses import asdict, dataclass, fields

# A trained network; its null, a randomly initialized one; and Prediction 2's sanity control, a trained network's
# layer under a fixed random invertible linear map (``activations.linear_map``): the same features in another basis.
NETWORKS = ("trained", "random-init", "linear-map")


@dataclass(frozen=True)
class SAESpec:
    family: str          # "cnn", "mlp" or "resnet"
    net: str             # one of NETWORKS
    model_seed: int      # the training seed of the network (a random-init one: the seed it was initialized with)
    arm: str             # "l1" or "topk"
    sae_seed: int = 0

    @property
    def id(self):
        """The SAE's file stem and row name, e.g. ``cnn-seed1-l1``, ``mlp-random-topk``, ``cnn-seed0-l1-saeseed1``,
        ``cnn-mapped0-l1``."""
        names = {"random-init": "random", "linear-map": f"mapped{self.model_seed}"}
        net = names.get(self.net, f"seed{self.model_seed}")
        return f"{self.family}-{net}-{self.arm}" + (f"-saeseed{self.sae_seed}" if self.sae_seed else "")

    @property
    def network(self):
        """The key of the activations it reads: (net, model seed)."""
        return self.net, self.model_seed

    @property
    def side(self):
        """What Prediction 2 compares it as: its family, or ``<family>-mapped`` for the sanity control."""
        return f"{self.family}-mapped" if self.net == "linear-map" else self.family

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
