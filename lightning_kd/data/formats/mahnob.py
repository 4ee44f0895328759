"""MAHNOB-HCI emotion elicitation data as downloaded (``Sessions/<id>/``), read into :class:`EEGFaceTrial` records.

Layout (Soleymani, Lichtenauer, Pun, Pantic, "A multimodal database for affect recognition and implicit
tagging", IEEE TAC 3(1), 2012; the download's ``Sessions.zip``):

- ``Sessions/<id>/session.xml``: one ``<session>`` element whose attributes hold the session (``sessionId``,
  ``cutNr``, ``cutLenSec``, ``isStim``, ``mediaFile``, ``vidRate``, ...) and the participant's self-assessment
  ``feltArsl``, ``feltVlnc``, ``feltCtrl``, ``feltPred`` (1..9) and ``feltEmo`` (a keyword id, not a rating);
  a ``<subject id="..">`` child (the only reliable subject id: folder numbers do not encode it), and
  ``<track type="Physiological" filename=..>`` / ``<track type="Video" color="1" filename=..>`` children.
  Each stimulus (``isStim="1"``, the ``S`` trials, even ``cutNr``) follows a neutral clip stored as its own
  session (``isStim="0"``, the ``N`` trials) that carries no ratings: those are skipped.
- ``Part_<subject>_<S|N>_Trial<k>_emotion.bdf`` (``k = cutNr // 2``): BioSemi BDF at 256 Hz, the 32 EEG
  channels under their 10-20 names, the peripheral channels ``EXG1..8, GSR1, GSR2, Erg1, Erg2, Resp, Temp``
  and the trigger channel ``Status``.
- ``P<subject>-Rec1-<date>_C1 trigger _C_Section_<cutNr>.avi``: the frontal colour camera (the one
  ``session.xml`` marks ``color="1"``; the folder holds other, grey-level views too).
- ``face_features.npz`` (this project's per-session face feature file, not part of the download; layout in
  :mod:`lightning_kd.data.formats.video`): written by ``lightning-kd generate mahnob``; for the real data set,
  extract it from the colour video yourself or use ``face_features: backbone``.

Stimulus segment: each ``.bdf`` holds 30 s of signal before the stimulus and 30 s after it; the ``Status``
channel's trigger bits (the low 16 bits; BioSemi keeps amplifier status in the high byte) mark stimulus
onset (first event, at 30 s) and stimulus end (second event). The segment kept is the samples
``[onset, end)``, between the two events TorchEEG's ``MAHNOBDataset`` cuts at (``events[0]``, ``events[1]`` of
``mne.find_events(raw, stim_channel='Status')``; it keeps ``events[0] + 1 .. events[1] - 1``); a public reader measured the first edge at exactly 30.000 s in
every file. The colour video is taken to start at stimulus onset (its time 0 = the segment's first sample).

EEG is read with MNE (``mne.io.read_raw_bdf``, ``stim_channel='Status'``), in microvolts, cut at 256 Hz and
returned at the file's rate; :class:`~lightning_kd.data.eeg_face_data.EEGFaceDataModule` resamples the cut
segment to 128 Hz, so no baseline sample leaks into the stimulus through the anti-aliasing filter.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lightning_kd.checkpoint import DataFileNotFoundError, DataFormatError
from lightning_kd.data.eeg_face import DEAP_EEG_CHANNELS, EEGFaceTrial
from lightning_kd.data.eeg_face_data import EEGFaceDataModule

if TYPE_CHECKING:
    import mne

__all__ = [
    "FEATURE_FILE", "MAHNOB_EEG_CHANNELS", "MAHNOB_PERIPHERAL_CHANNELS", "MAHNOB_RATE_HZ", "RATING_ATTRIBUTES",
    "STATUS_CHANNEL", "MAHNOBDataModule", "MahnobSession", "read_mahnob", "read_session_eeg", "read_session_xml", "session_bdf", "session_video",
    "stimulus_samples",
]

#: the 32 EEG channels of a MAHNOB-HCI ``.bdf`` (BioSemi 10-20 names; the reader selects them by name)
MAHNOB_EEG_CHANNELS: tuple[str, ...] = DEAP_EEG_CHANNELS
#: the peripheral channels that follow the EEG in each ``.bdf`` (ECG on EXG1-3, GSR, respiration, temperature)
MAHNOB_PERIPHERAL_CHANNELS: tuple[str, ...] = (
    "EXG1", "EXG2", "EXG3", "EXG4", "EXG5", "EXG6", "EXG7", "EXG8", "GSR1", "GSR2", "Erg1", "Erg2", "Resp", "Temp",
)
#: the BioSemi trigger channel
STATUS_CHANNEL = "Status"
#: sampling rate of the released ``.bdf`` files
MAHNOB_RATE_HZ = 256
#: this project's per-session face feature file, next to session.xml (not part of the download)
FEATURE_FILE = "face_features.npz"
#: ``session.xml`` attribute -> rating name of :attr:`EEGFaceTrial.ratings` (feltCtrl is the dominance scale)
RATING_ATTRIBUTES: dict[str, str] = {
    "feltArsl": "arousal", "feltVlnc": "valence", "feltCtrl": "dominance", "feltPred": "predictability",
}
_REQUIRED_RATINGS = ("feltArsl", "feltVlnc")
_TRIGGER_MASK = 0xFFFF
_FIX_LAYOUT = ("point root at the folder that holds Sessions/ as downloaded from mahnob-db.eu "
               "(`lightning-kd generate mahnob --out DIR` writes that layout)")


@dataclass
class MahnobSession:
    """What the reader uses of one ``session.xml``.

    Attributes:
        session_id: ``sessionId`` (the folder name in the download).
        subject: ``<subject id>``.
        ratings: rating name -> value on 1..9 (keys from :data:`RATING_ATTRIBUTES` present in the file).
        is_stim: ``isStim == "1"`` (an emotion elicitation trial, not the neutral clip before it).
        cut_nr: ``cutNr`` (the section number in the file names), or ``None``.
        media_file: ``mediaFile`` (the stimulus clip's name), or ``""``.
        tracks: ``(type, filename, attributes)`` of each ``<track>`` child.
        path: the ``session.xml`` file.
    """

    session_id: int
    subject: int
    ratings: dict[str, float]
    is_stim: bool
    cut_nr: int | None
    media_file: str
    tracks: list[tuple[str, str, dict[str, str]]]
    path: Path


def _int_attr(path: Path, el: ET.Element, name: str, what: str) -> int:
    value = el.get(name)
    if value is None:
        raise DataFormatError(f"{path}: {what} has no {name!r} attribute. Fix: {_FIX_LAYOUT}.")
    try:
        return int(value)
    except ValueError:
        raise DataFormatError(f"{path}: {what} attribute {name}={value!r} is not an integer. Fix: {_FIX_LAYOUT}.") from None


def read_session_xml(path: str | Path) -> MahnobSession:
    """Parse one ``session.xml`` (see the module docstring for the attributes read).

    Raises:
        DataFileNotFoundError: no such file.
        DataFormatError: not XML, no ``<session>`` root or ``<subject id>``, an emotion trial (``isStim="1"``)
            without ``feltArsl`` / ``feltVlnc``, or a rating that is not a number on 1..9.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: session.xml not found. Fix: {_FIX_LAYOUT}.")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataFormatError(f"{path}: not a readable XML file ({e}). Fix: {_FIX_LAYOUT}.") from None
    if root.tag != "session":
        raise DataFormatError(f"{path}: root element is <{root.tag}>, expected <session>. Fix: {_FIX_LAYOUT}.")
    subject_el = root.find("subject")
    if subject_el is None:
        raise DataFormatError(f"{path}: no <subject id=..> element. Fix: {_FIX_LAYOUT}.")
    subject = _int_attr(path, subject_el, "id", "<subject>")
    session_id = _int_attr(path, root, "sessionId", "<session>")
    has_felt = any(root.get(a) is not None for a in RATING_ATTRIBUTES)
    is_stim_attr = root.get("isStim")
    is_stim = is_stim_attr == "1" if is_stim_attr is not None else has_felt
    ratings: dict[str, float] = {}
    if is_stim:
        for a in _REQUIRED_RATINGS:
            if root.get(a) is None:
                raise DataFormatError(f"{path}: emotion session (isStim=1) without the rating {a!r}. Fix: restore "
                                      f"the file from the download, or delete the session folder {path.parent}.")
        for a, name in RATING_ATTRIBUTES.items():
            value = root.get(a)
            if value is None:
                continue
            try:
                r = float(value)
            except ValueError:
                r = float("nan")
            if not 1.0 <= r <= 9.0:
                raise DataFormatError(f"{path}: rating {a}={value!r} is outside 1..9. Fix: correct it, or delete "
                                      f"the session folder {path.parent}.")
            ratings[name] = r
    cut_nr = _int_attr(path, root, "cutNr", "<session>") if root.get("cutNr") is not None else None
    tracks = [(t.get("type", ""), t.get("filename", ""), dict(t.attrib)) for t in root.findall("track")]
    return MahnobSession(session_id=session_id, subject=subject, ratings=ratings, is_stim=is_stim, cut_nr=cut_nr,
                         media_file=root.get("mediaFile", ""), tracks=tracks, path=path)


def session_bdf(session: MahnobSession) -> Path:
    """The session's EEG file: the ``Physiological`` track's file, else the folder's only ``*.bdf``.

    Raises:
        DataFileNotFoundError: no ``.bdf`` in the session folder (or the one the XML names is absent).
    """
    folder = session.path.parent
    named = [folder / f for t, f, _ in session.tracks if t == "Physiological" and f]
    for p in named:
        if p.is_file():
            return p
    found = sorted(folder.glob("*.bdf"))
    if len(found) == 1 or (found and not named):
        return found[0]
    want = named[0].name if named else f"Part_{session.subject}_S_Trial<k>_emotion.bdf"
    raise DataFileNotFoundError(f"{folder}: EEG file {want} not found (the session's .bdf is missing). Fix: restore it "
                                "from the download, or delete the session folder, or set skip_incomplete=True.")


def session_video(session: MahnobSession) -> Path | None:
    """The frontal colour camera's ``.avi``: the ``Video`` track marked ``color="1"``, else the file named
    ``*C1 trigger*.avi``, else the folder's only ``.avi``; ``None`` when there is none."""
    folder = session.path.parent
    for t, f, attrs in session.tracks:
        if t == "Video" and f and attrs.get("color") == "1" and (folder / f).is_file():
            return folder / f
    for pattern in ("*C1 trigger*.avi", "*.avi"):
        found = sorted(folder.glob(pattern))
        if len(found) == 1:
            return found[0]
    return None


def stimulus_samples(raw: mne.io.BaseRaw, path: Path) -> tuple[int, int]:
    """``(onset, end)`` sample indices of the stimulus: the first two events of the ``Status`` channel's trigger
    bits (``mne.find_events`` on the low 16 bits), as TorchEEG's MAHNOB reader takes them.

    Raises:
        DataFormatError: fewer than two trigger events.
    """
    import mne

    events = mne.find_events(raw, stim_channel=STATUS_CHANNEL, shortest_event=1, initial_event=True,
                             mask=_TRIGGER_MASK, mask_type="and", verbose="error")
    if len(events) < 2:
        raise DataFormatError(
            f"{path}: the {STATUS_CHANNEL} channel holds {len(events)} trigger event(s); stimulus onset and end "
            "need 2. Fix: use the session's .bdf as downloaded (30 s before the stimulus, onset and end triggers).")
    return int(events[0, 0] - raw.first_samp), int(events[1, 0] - raw.first_samp)


def _check_complete(path: Path) -> None:
    """Stop on a ``.bdf`` shorter than its header declares (MNE would pad the missing records with zeros)."""
    with path.open("rb") as f:
        head = f.read(256)
        try:
            n_records, n_signals = int(head[236:244]), int(head[252:256])
            f.seek(256 + 216 * n_signals)
            per_record = sum(int(f.read(8)) for _ in range(n_signals))
        except ValueError:
            return  # not a BDF header: MNE reports it
    want = 256 * (1 + n_signals) + 3 * per_record * n_records
    have = path.stat().st_size
    if n_records > 0 and have < want:
        raise DataFormatError(f"{path}: truncated BDF file ({have} of the {want} bytes its header declares). Fix: "
                              "re-download the session's .bdf.")


def read_session_eeg(path: str | Path) -> tuple[np.ndarray, tuple[str, ...], float]:
    """The stimulus segment of one ``.bdf``: ``(eeg (C, samples) float32 microvolts, channel names, rate Hz)`` with
    the file's EEG channels of :data:`MAHNOB_EEG_CHANNELS` (in that order) at the file's rate.

    Raises:
        DataFileNotFoundError: no such file.
        DataFormatError: not a readable BDF, truncated, no ``Status`` channel, none of the EEG channels, fewer
            than two triggers, or non-finite samples.
    """
    import mne

    path = Path(path)
    if not path.is_file():
        raise DataFileNotFoundError(f"{path}: EEG .bdf not found. Fix: restore it from the download, or delete "
                                    "the session folder, or set skip_incomplete=True.")
    _check_complete(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = mne.io.read_raw_bdf(path, preload=True, stim_channel=STATUS_CHANNEL, verbose="error")
    except (ValueError, OSError, IndexError, KeyError, RuntimeError) as e:
        raise DataFormatError(f"{path}: not a readable BDF file ({e}). Fix: re-download the session's .bdf.") from None
    names = set(raw.ch_names)
    if STATUS_CHANNEL not in names:
        raise DataFormatError(f"{path}: no {STATUS_CHANNEL!r} trigger channel, so the stimulus cannot be cut. Fix: use "
                              "the .bdf as downloaded (BioSemi files keep the triggers in 'Status').")
    channels = tuple(c for c in MAHNOB_EEG_CHANNELS if c in names)
    if not channels:
        raise DataFormatError(f"{path}: none of the 32 EEG channels ({', '.join(MAHNOB_EEG_CHANNELS[:4])}, ...) is in "
                              "the file. Fix: use the .bdf as downloaded.")
    onset, end = stimulus_samples(raw, path)
    eeg = raw.get_data(picks=list(channels), start=onset, stop=end) * 1e6
    if not np.isfinite(eeg).all():
        raise DataFormatError(f"{path}: non-finite EEG samples in the stimulus segment. Fix: re-download the file.")
    return np.ascontiguousarray(eeg, dtype=np.float32), channels, float(raw.info["sfreq"])


def read_mahnob(root: str | Path, subjects: Sequence[int] | None = None,
                skip_incomplete: bool = False) -> list[EEGFaceTrial]:
    """Every emotion elicitation session under ``root/Sessions`` as an :class:`EEGFaceTrial`, ordered by subject then
    session: ``trial`` = the session id, ``eeg`` the stimulus segment at the file's rate (``rate_hz``, 256; the
    datamodule resamples), ``video`` the frontal colour camera or ``None``, ``face_features`` the session's
    :data:`FEATURE_FILE` when present. Neutral-clip sessions (``isStim="0"``, no ratings) are skipped.

    Args:
        root: the folder that holds ``Sessions/``.
        subjects: participant ids to read (``<subject id>``); ``None`` = all.
        skip_incomplete: leave out sessions whose ``.bdf`` is missing (the real download lacks some), with one
            warning listing them, instead of stopping.

    Raises:
        DataFileNotFoundError: no ``Sessions`` folder, or (unless ``skip_incomplete``) a session without its .bdf.
        DataFormatError: a bad ``session.xml`` or ``.bdf`` (see :func:`read_session_xml`, :func:`read_session_eeg`),
            or no emotion session at all.
    """
    sessions_dir = Path(root) / "Sessions"
    if not sessions_dir.is_dir():
        raise DataFileNotFoundError(f"{sessions_dir}: folder not found. Fix: {_FIX_LAYOUT}.")
    wanted = None if subjects is None else {int(s) for s in subjects}
    xmls = sorted(sessions_dir.glob("*/session.xml"))
    trials: list[EEGFaceTrial] = []
    skipped: list[str] = []
    for xml in xmls:
        session = read_session_xml(xml)
        if not session.is_stim or (wanted is not None and session.subject not in wanted):
            continue
        try:
            bdf = session_bdf(session)
        except DataFileNotFoundError:
            if not skip_incomplete:
                raise
            skipped.append(xml.parent.name)
            continue
        eeg, channels, rate = read_session_eeg(bdf)
        features = xml.parent / FEATURE_FILE
        trials.append(EEGFaceTrial(subject=session.subject, trial=session.session_id, eeg=eeg, channels=channels,
                                   ratings=dict(session.ratings), video=session_video(session), source=bdf,
                                   rate_hz=rate, face_features=features if features.is_file() else None))
    if skipped:
        warnings.warn(f"{sessions_dir}: {len(skipped)} emotion session(s) without a .bdf left out: "
                      f"{', '.join(skipped)}", stacklevel=2)
    if not trials:
        which = "" if wanted is None else f" of subjects {sorted(wanted)}"
        raise DataFormatError(f"{sessions_dir}: no emotion elicitation session (isStim=1 with a .bdf){which} found "
                              f"among {len(xmls)} session.xml file(s). Fix: {_FIX_LAYOUT}.")
    trials.sort(key=lambda t: (t.subject, t.trial))
    return trials


class MAHNOBDataModule(EEGFaceDataModule):
    """MAHNOB-HCI as downloaded (module doc), windowed and split by
    :class:`~lightning_kd.data.eeg_face_data.EEGFaceDataModule`.

    Args:
        root: the folder holding ``Sessions/``.
        subjects: participant ids (``<subject id>`` of session.xml; default: all found).
        skip_incomplete: leave out sessions without a ``.bdf`` (one warning lists them) instead of stopping.
        Other arguments: see :class:`~lightning_kd.data.eeg_face_data.EEGFaceDataModule`.
    """

    def __init__(self, root: str, *, skip_incomplete: bool = False, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.skip_incomplete = bool(skip_incomplete)

    def read_trials(self) -> list[EEGFaceTrial]:
        return read_mahnob(self.root, self.subjects, self.skip_incomplete)
