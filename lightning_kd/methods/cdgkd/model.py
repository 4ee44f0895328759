"""CDGKD networks (Wu et al., IJCAI 2025): one class for the teacher, the assistants, the student and the
unimodal references, chosen by ``role``.

* ``teacher``: visual pyramid + full TSception; reads ``face`` and ``eeg``.
* ``ta1``: visual pyramid + TSception with 2 windows and 1 spatial kernel; ``face`` and ``eeg``.
* ``ta2``: visual pyramid + TSception with 1 window and 1 spatial kernel; ``face`` and ``eeg``.
* ``student``: visual pyramid; ``face`` only (trained without teachers: the video-only reference).
* ``eeg``: full TSception; ``eeg`` only (the EEG-only reference).

Every role ends in the same head: the encoder features concatenated (visual first) -> dropout (0.5) ->
``hidden_layers`` x (Linear(``hidden``) + ReLU) (3 x 128) -> Linear(2).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from lightning_kd.checkpoint import ConfigError
from lightning_kd.nn.tsception import TSception, TSceptionOptions
from lightning_kd.nn.visual_pyramid import VisualPyramid, VisualPyramidOptions
from lightning_kd.options import options

__all__ = ["EEG", "FACE", "ROLES", "CDGKDNet", "CDGKDNetOptions", "CDGKDOutput", "role_inputs"]

EEG, FACE = "eeg", "face"
ROLES = ("teacher", "ta1", "ta2", "student", "eeg")
_INPUTS = {"teacher": (FACE, EEG), "ta1": (FACE, EEG), "ta2": (FACE, EEG), "student": (FACE,), "eeg": (EEG,)}


def role_inputs(role: str) -> tuple[str, ...]:
    """The inputs a role reads (visual first)."""
    try:
        return _INPUTS[role]
    except KeyError:
        raise ConfigError(f"CDGKD role must be one of {', '.join(ROLES)}, got {role!r}") from None


class CDGKDOutput(NamedTuple):
    logits: Tensor  # (B, classes)
    features: dict[str, Tensor]  # modality -> (B, d_m) encoder output (the prototypes' embedding space)


@dataclass(frozen=True)
class CDGKDNetOptions:
    """Head and teacher-assistant options of :class:`CDGKDNet`.

    Attributes:
        hidden / hidden_layers: the head's dense layers (3 x 128).
        dropout: dropout on the concatenated features (0.5).
        classes: output classes (2: low / high).
        ta1_windows / ta2_windows: temporal windows (s) of the assistants' TSception ((0.5, 0.125) / (0.5,)).
        ta_spatial: the assistants' single spatial kernel (``hemisphere`` or ``global``).
    """

    hidden: int = 128
    hidden_layers: int = 3
    dropout: float = 0.5
    classes: int = 2
    ta1_windows: tuple[float, ...] = (0.5, 0.125)
    ta2_windows: tuple[float, ...] = (0.5,)
    ta_spatial: str = "hemisphere"


def eeg_options(role: str, eeg: TSceptionOptions, net: CDGKDNetOptions) -> TSceptionOptions:
    """The role's TSception: the configured one for teacher / eeg, shrunk for the assistants."""
    if role == "ta1":
        return replace(eeg, windows=net.ta1_windows, spatial=(net.ta_spatial,))
    if role == "ta2":
        return replace(eeg, windows=net.ta2_windows, spatial=(net.ta_spatial,))
    return eeg


class CDGKDNet(nn.Module):
    """Encoders of the role + the shared head (see the module docstring).

    Args:
        feature_dims: ``{"eeg": channels, "face": per-frame feature size}`` (linked from the datamodule).
        seq_lens: ``{"eeg": samples per window, "face": frames per window}``.
        role: one of :data:`ROLES`.
        eeg / visual / net: :class:`TSceptionOptions`, :class:`VisualPyramidOptions`, :class:`CDGKDNetOptions`
            (instances, mappings or None).
    """

    def __init__(self, feature_dims: dict[str, int], seq_lens: dict[str, int] | None, role: str = "teacher",
                 eeg: TSceptionOptions | dict[str, Any] | None = None,
                 visual: VisualPyramidOptions | dict[str, Any] | None = None,
                 net: CDGKDNetOptions | dict[str, Any] | None = None) -> None:
        super().__init__()
        self.role = role
        self.inputs = role_inputs(role)
        n = self.net_options = options(CDGKDNetOptions, net)
        missing = [m for m in self.inputs if m not in feature_dims or seq_lens is None or m not in seq_lens]
        if missing:
            raise ConfigError(f"CDGKD role {role!r} reads {', '.join(self.inputs)}; feature_dims / seq_lens lack "
                              f"{', '.join(missing)} (they are linked from the datamodule: use an EEG + face "
                              "datamodule such as DEAP or MAHNOB-HCI)")
        self.encoders = nn.ModuleDict()
        if FACE in self.inputs:
            self.encoders[FACE] = VisualPyramid(feature_dims[FACE], seq_lens[FACE], visual)
        if EEG in self.inputs:
            opts = eeg_options(role, options(TSceptionOptions, eeg), n)
            self.encoders[EEG] = TSception(feature_dims[EEG], seq_lens[EEG], opts)
        width = sum(self.encoders[m].out_dim for m in self.inputs)
        layers: list[nn.Module] = [nn.Dropout(n.dropout)]
        for _ in range(n.hidden_layers):
            layers += [nn.Linear(width, n.hidden), nn.ReLU()]
            width = n.hidden
        layers.append(nn.Linear(width, n.classes))
        self.head = nn.Sequential(*layers)

    def forward(self, inputs: dict[str, Tensor]) -> CDGKDOutput:
        features = {m: self.encoders[m](inputs[m]) for m in self.inputs}
        return CDGKDOutput(self.head(torch.cat([features[m] for m in self.inputs], dim=-1)), features)
