"""Every knob of a training run, in one plain dataclass: the CLI, the MLproject and the tuner read its fields."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, fields

from seqrec.core.ties import TIE_ORDERS

REGIMES = ("all_steps", "paper")
MAX_SEED = 2**32 - 1  # numpy's legacy seeding (keras.utils.set_random_seed) takes 0..2**32-1
IMPUTED_TARGETS = ("mask", "keep")
MODELS = ("rnn", "sasrec", "cnn", "pooling", "mingru")  # seqrec.core.models: one file each
LOSSES = ("cce", "pointwise", "bpr", "hinge", "adaptive_hinge")  # cce: full softmax; the others seqrec.core.losses
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")  # Keras dtype policies (mixed: float32 weights)
DISTRIBUTE = ("auto", "none", "mirrored")  # see TrainConfig.distribute
# rating predictors of seqrec.core.explicit, named here so that the command line knows them without loading Keras
PREDICTORS = ("global_mean", "user_mean", "item_mean", "biased_mf", "item_autorec", "user_autorec")
AUTO = "auto"  # exclude_seen, slist_weight, dropout: the default recipe's values for it, the earlier ones elsewhere
DEFAULT_SLIST_WEIGHT = 0.7  # SLIST's share of the default's blend, chosen on validation (docs/models.md)
# the options that default to auto: (elsewhere, as before auto existed; for the default recipe), chosen on validation
AUTO_OPTIONS: dict[str, tuple[bool | float, bool | float]] = {"exclude_seen": (False, True),
                                                               "slist_weight": (0.0, DEFAULT_SLIST_WEIGHT),
                                                               "dropout": (0.2, 0.0)}
AUTOREC_LR = 3e-4  # the autoencoders' Adam step: at 1e-3 they overfitted within 10 epochs (docs/models.md)
RATING_PATIENCE = 10  # epochs the learned rating predictors wait for a better held-out RMSE (docs/models.md)


def check_tied_output(model: str, hidden: int, embedding: int, projection: int) -> None:
    """A tied output scores the network's output features against the item embedding, so their widths must agree.
    The output width is the bottleneck's, else the recurrent or convolution layer's (``hidden``), else the
    embedding's (self-attention and pooling keep it throughout)."""
    width = projection or (hidden if model in ("rnn", "cnn", "mingru") else embedding)
    if width != embedding:
        raise ValueError(f"tied_output needs the network's output width to be embedding={embedding}, got {width} "
                         f"(model={model}): set projection={embedding}")


def is_default_recipe(model: str, regime: str, loss: str, rating_input: bool) -> bool:
    """Where ``auto`` turns ``exclude_seen`` and the SLIST blend on and dropout off: the GRU (or LSTM) with the full
    softmax over every step, reading items alone, the kind of network they were chosen on (docs/results.md). The
    paper's regime, the sampled losses, the star inputs and the other models keep the behaviour they had before the
    options were ``auto``."""
    return model == "rnn" and regime == "all_steps" and loss == "cce" and not rating_input


def auto_value(name: str, default_recipe: bool) -> bool | float:
    """What the ``auto`` option ``name`` resolves to: on for the default recipe (:func:`is_default_recipe`), else
    off."""
    off, on = AUTO_OPTIONS[name]
    return on if default_recipe else off


def check_setting(name: str, value: object, test: Callable[[float], bool], expected: str,
                  integer: bool = False) -> None:
    """One hyper-parameter of a model built from settings (a benchmark's JSON reaches it untyped): a finite number
    (an integer where ``integer``) that passes ``test``, else a ValueError naming it and saying what was expected."""
    kind = numbers.Integral if integer else numbers.Real
    typed = isinstance(value, kind) and not isinstance(value, bool)
    finite = typed and (isinstance(value, numbers.Integral) or math.isfinite(value))  # a huge int overflows a float
    if not finite or not test(value):
        raise ValueError(f"{name} must be {'an integer' if integer else 'a number'} {expected}, got {value!r}")


def _is_fraction(value: float) -> bool:
    return 0.0 <= value < 1.0


# TrainConfig's one-field checks, in the order a run reports them: each field, its test, what it expects
_CHOICES: dict[str, tuple[str, ...]] = {"regime": REGIMES, "model": MODELS, "loss": LOSSES, "tie_order": TIE_ORDERS,
                                        "imputed_targets": IMPUTED_TARGETS, "precision": PRECISIONS,
                                        "distribute": DISTRIBUTE}
_POSITIVE_INTEGERS = ("hidden", "embedding", "max_len", "batch_size", "epochs", "k", "lookahead", "negatives", "blocks",
                      "heads")
_BOUNDS: tuple[tuple[str, Callable[[float], bool], str], ...] = (
    ("seed", lambda value: 0 <= value <= MAX_SEED, f"between 0 and {MAX_SEED}"),
    ("patience", lambda value: value >= 0, "0 or more epochs"),
    *((name, lambda value: value >= 1, "a positive integer") for name in _POSITIVE_INTEGERS),
    ("cuts_per_user", lambda value: value >= 0, "0 (users drawn with replacement) or positive"),
    ("projection", lambda value: value >= 0, "0 (none) or a positive size"),
    ("dropout", _is_fraction, "in [0, 1)"),
    ("lookahead_decay", lambda value: 0.0 < value <= 1.0, "in (0, 1]"),
    ("rating_min_history", lambda value: value >= 0, "0 (always read the stars) or more items"),
    ("item_dropout", _is_fraction, "in [0, 1) (0: every item of a training window is read)"),
    ("rating_dropout", _is_fraction, "in [0, 1) (0: every known star is read)"),
    ("rating_weight", lambda value: value >= 0, ">= 0"),
    ("tie_noise", lambda value: value >= 0, ">= 0"),
    ("lr", lambda value: value > 0, "positive"),
    ("weight_decay", lambda value: value >= 0, "0 (Adam) or more (AdamW)"),
    ("ema_momentum", _is_fraction, "in [0, 1) (0: no weight average)"),
    ("label_smoothing", _is_fraction, "in [0, 1) (0: the plain CCE)"),
)


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run; logged as MLflow params as is."""

    model: str = "rnn"
    hidden: int = 256
    embedding: int = 128
    dropout: float | str = AUTO
    item_dropout: float = 0.0
    max_len: int = 50
    batch_size: int = 64
    lr: float = 8e-3
    weight_decay: float = 0.0
    ema_momentum: float = 0.0
    lr_warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    epochs: int = 3
    cell: str = "gru"
    projection: int = 0
    tied_output: bool = False
    regime: str = "all_steps"
    lookahead: int = 1
    lookahead_decay: float = 0.5
    burst_targets: bool = False
    loss: str = "cce"
    negatives: int = 5
    blocks: int = 2
    heads: int = 1
    tie_order: str = "movie"
    tie_noise: float = 0.8
    rating_weight: float = 0.0
    rating_input: bool = False
    rating_min_history: int = 0
    rating_dropout: float = 0.0
    exclude_seen: bool | str = AUTO
    slist_weight: float | str = AUTO
    cuts_per_user: int = 0
    imputed_targets: str = "keep"
    seed: int = 0
    patience: int = 3
    k: int = 10
    precision: str = "float32"
    distribute: str = "auto"

    def __post_init__(self) -> None:
        for spec in fields(self):  # nan passes every comparison below, inf would train to nan
            value = getattr(self, spec.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{spec.name} must be a finite number, got {value}")
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        for name, (off, _) in AUTO_OPTIONS.items():
            if isinstance(getattr(self, name), str) and getattr(self, name) != AUTO:
                kind = "true or false" if isinstance(off, bool) else "a number"
                raise ValueError(f"{name} must be {AUTO} or {kind}, got {getattr(self, name)!r}")
        for name, holds, expected in _BOUNDS:
            if not holds(self.resolved(name) if name in AUTO_OPTIONS else getattr(self, name)):
                raise ValueError(f"{name} must be {expected}, got {getattr(self, name)}")
        if not 0.0 <= self.lr_warmup_epochs < self.epochs:
            raise ValueError(f"lr_warmup_epochs must be in [0, epochs={self.epochs}) (0: no warm-up), "
                             f"got {self.lr_warmup_epochs}")
        self.check_combinations()
        self.check_slist_weight()

    def check_combinations(self) -> None:
        """Options that only mean something beside another setting: refused elsewhere rather than silently ignored."""
        if self.cuts_per_user and self.regime != "paper":  # all_steps trains on every transition
            raise ValueError(f"cuts_per_user is for regime=paper only, got regime={self.regime!r}")
        if self.resolved_exclude_seen and self.regime != "all_steps":
            raise ValueError(f"exclude_seen is for regime=all_steps only, got regime={self.regime!r}")
        if self.tied_output:
            check_tied_output(self.model, self.hidden, self.embedding, self.projection)
        if self.rating_min_history and not self.rating_input:
            raise ValueError(f"rating_min_history is for rating_input=true only (a model without the stars has none "
                             f"to leave out), got rating_min_history={self.rating_min_history}")
        if self.rating_dropout and not self.rating_input:
            raise ValueError(f"rating_dropout is for rating_input=true only, got rating_dropout={self.rating_dropout}")
        if self.burst_targets and (self.lookahead < 2 or self.regime != "all_steps"):
            raise ValueError(f"burst_targets is for lookahead of 2 or more with regime=all_steps (the later items of "
                             f"the next second), got lookahead={self.lookahead}, regime={self.regime!r}")
        if self.label_smoothing and self.loss != "cce":
            raise ValueError(f"label_smoothing is for loss=cce only, got loss={self.loss!r}")

    def is_default_recipe(self) -> bool:
        """Whether ``auto`` gives the default recipe's values (:func:`is_default_recipe`)."""
        return is_default_recipe(self.model, self.regime, self.loss, self.rating_input)

    def resolved(self, name: str) -> bool | float:
        """The ``auto`` option ``name`` (:data:`AUTO_OPTIONS`) as the run uses it."""
        value = getattr(self, name)
        return auto_value(name, self.is_default_recipe()) if value == AUTO else value

    @property
    def resolved_exclude_seen(self) -> bool:
        return bool(self.resolved("exclude_seen"))

    @property
    def resolved_slist_weight(self) -> float:
        return float(self.resolved("slist_weight"))

    @property
    def resolved_dropout(self) -> float:
        return float(self.resolved("dropout"))

    def check_slist_weight(self) -> None:
        """``slist_weight`` (SLIST's share of the blend the network is validated, kept and served in,
        :func:`seqrec.core.ensemble.slist_blended`) blends a softmax, so the full-softmax loss, of a network that reads
        the items only."""
        if not 0.0 <= self.resolved_slist_weight < 1.0:
            raise ValueError(f"slist_weight must be in [0, 1) (0: the network alone), got {self.slist_weight}")
        if not self.resolved_slist_weight:
            return
        needs = {"loss": "cce", "rating_input": False}
        for name, value in needs.items():
            if getattr(self, name) != value:
                raise ValueError(f"slist_weight needs {name}={value}, got {name}={getattr(self, name)!r}")
