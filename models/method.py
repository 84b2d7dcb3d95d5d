"""`BinaryMethod`: how a network binarises, as data. A config's `model.method` mapping and
`maskbnn train --method KEY=VAL,...` both end up here; unknown keys and values are errors.

No torch import: maskbnn.config validates `model.method` with this module when it loads a YAML.
The layers that implement each choice are in models/binarize.py and models/react.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, get_args

from pydantic import StrictBool, StrictFloat
from pydantic.dataclasses import dataclass

from maskbnn.config import STRICT, parse
from maskbnn.errors import UserError

# Backward rules of the activation sign (forward is always sign with sign(0) = +1).
Estimator = Literal["ste", "ede", "approxsign"]
# Weight binarisers: the forward weight is sign(.) times a per-output-channel scale.
WeightBinarizer = Literal["sign", "libra_pb", "mean_abs"]
# Backward rules of the weight sign; None picks the source method's own (see `weight_grad`).
WeightEstimator = Literal["identity", "clipped", "ede"]
ESTIMATORS = get_args(Estimator)
WEIGHT_BINARIZERS = get_args(WeightBinarizer)


@dataclass(frozen=True, config=STRICT)
class BinaryMethod:
    """One point in the space of the papers' training methods; every field composes with the others.

    estimator        activation sign backward: "ste" (BNN-PYNQ, grad * 1{|x| <= 1}), "ede"
                     (IR-Net), "approxsign" (Bi-Real)
    weight_binarizer "sign" (BNN-PYNQ, scale 1), "libra_pb" (IR-Net), "mean_abs" (XNOR-Net/Bi-Real)
    weight_estimator weight sign backward; None: "ede" when estimator is "ede" (IR-Net binarises
                     weights with the same EDE), "clipped" for mean_abs (Bi-Real/ReActNet code),
                     else "identity" (Brevitas' BinaryQuant STE)
    rsign            ReActNet's learnable per-channel threshold before every sign
    rprelu           ReActNet's RPReLU on the real-valued stream (replaces the family's own)
    learned_scale    Real-to-Binary's learnable per-channel scale on every binary conv output
    pad_value        what binary convs pad with: -1.0 as FINN's hardware, 0.0 as PyTorch
    first_last       first conv and last FC: "float" (the papers) or "int8" (FINN-mappable)
    ede_t_min/max    EDE's annealing range, IR-Net's defaults 0.1 -> 10
    """

    estimator: Estimator = "ste"
    weight_binarizer: WeightBinarizer = "sign"
    weight_estimator: WeightEstimator | None = None
    rsign: StrictBool = False
    rprelu: StrictBool = False
    learned_scale: StrictBool = False
    pad_value: Literal[-1.0, 0.0] = 0.0
    first_last: Literal["float", "int8"] = "float"
    ede_t_min: StrictFloat = 0.1
    ede_t_max: StrictFloat = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.ede_t_min < self.ede_t_max:  # pydantic reports it with the others
            raise ValueError(
                f"need 0 < ede_t_min < ede_t_max, got {self.ede_t_min}, {self.ede_t_max}"
            )

    @property
    def weight_grad(self) -> str:
        """The weight sign's backward rule this method uses (weight_estimator resolved)."""
        if self.weight_estimator is not None:
            return self.weight_estimator
        if self.estimator == "ede":
            return "ede"
        return "clipped" if self.weight_binarizer == "mean_abs" else "identity"

    @property
    def uses_ede(self) -> bool:
        return self.estimator == "ede" or self.weight_grad == "ede"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None, where: str = "method") -> BinaryMethod:
        """Strict: unknown keys are errors that list the known ones, values are type-checked."""
        return parse(cls, dict(values or {}), where)

    def with_overrides(self, text: str, where: str = "--method") -> BinaryMethod:
        """Apply "key=value,key=value" (booleans true/false, `none` for None)."""
        return BinaryMethod.from_dict(self.as_dict() | parse_overrides(text, where), where)


def parse_overrides(text: str, where: str = "--method") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{where}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = _value(value.strip())
    return out


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null", ""):
        return None
    try:
        return float(text)  # the typed fields take no numeric strings
    except ValueError:
        return text
