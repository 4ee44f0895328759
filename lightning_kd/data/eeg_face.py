"""EEG + face-video emotion data (DEAP, MAHNOB-HCI): the per-trial record every reader returns.

Each reader (``formats/deap.py``, ``formats/mahnob.py``) turns its on-disk layout into a list of
:class:`EEGFaceTrial`; the shared datamodule windows them (4 s, 5 frames per window), splits them by trial or
by subject (windows of one trial never straddle splits) and binarises the ratings. Names of the inputs a batch
carries: ``eeg (B, C, T)`` and ``face (B, F, D)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: DEAP's 32 EEG channels in the Geneva order of ``data_preprocessed_python`` (channels 0-31)
DEAP_EEG_CHANNELS: tuple[str, ...] = (
    "Fp1", "AF3", "F3", "F7", "FC5", "FC1", "C3", "T7", "CP5", "CP1", "P3", "P7", "PO3", "O1", "Oz", "Pz",
    "Fp2", "AF4", "Fz", "F4", "F8", "FC6", "FC2", "Cz", "C4", "T8", "CP6", "CP2", "P4", "P8", "PO4", "O2",
)
#: midline channels CDGKD leaves out (IJCAI 2025, Sec. 4.1): 28 channels remain
MIDLINE_CHANNELS: tuple[str, ...] = ("Fz", "Cz", "Pz", "Oz")
#: the 28 channels the models read, in DEAP order
EEG_CHANNELS_28: tuple[str, ...] = tuple(c for c in DEAP_EEG_CHANNELS if c not in MIDLINE_CHANNELS)
#: the sampling rate every reader resamples EEG to
EEG_RATE_HZ = 128


@dataclass
class EEGFaceTrial:
    """One stimulus trial of one participant, as a reader returns it.

    Attributes:
        subject: participant id (1-based, as the data set numbers them).
        trial: the trial's id within the subject (DEAP: Experiment_id, i.e. video order; MAHNOB: session id).
        eeg: ``(channels, samples)`` float32 at :data:`EEG_RATE_HZ`, the stimulus part only (baseline removed),
            channels in the order of ``channels``.
        channels: channel names of ``eeg`` rows.
        ratings: self-assessment on 1..9, e.g. ``{"valence": 6.0, "arousal": 3.0}``.
        video: the trial's face video file, or ``None`` when the data set has none for this trial.
        source: the file the EEG came from (for messages).
        rate_hz: sampling rate of ``eeg``; the datamodule resamples to :data:`EEG_RATE_HZ` when it differs.
        face_features: the trial's per-frame face feature file (``.npz`` with ``features`` (n_frames, D) float32 and
            ``fps``, :func:`lightning_kd.data.formats.video.read_face_features`), or ``None``.
    """

    subject: int
    trial: int
    eeg: np.ndarray
    channels: tuple[str, ...]
    ratings: dict[str, float] = field(default_factory=dict)
    video: Path | None = None
    source: Path | None = None
    rate_hz: float = EEG_RATE_HZ
    face_features: Path | None = None
