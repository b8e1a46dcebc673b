"""People over time: the detections of each frame linked into tracks, one per person.

A file's own track ids are used where they are usable (every detection has one and no frame
holds one id twice; AlphaPose without ``--pose_track`` writes ``idx`` 0 for everyone, which is
not). Otherwise detections are linked frame to frame by Hungarian assignment
(``scipy.optimize.linear_sum_assignment``) on a cost of keypoint distance (mean over the joints
both have, over the person's size), box overlap (1 - IoU) and change of size; a track unseen for
up to ``max_gap`` frames can still be continued, a link is refused when the person would have
moved more than :data:`MAX_JUMP` body sizes or changed size more than :data:`MAX_RESIZE` times,
and leaving a track or a detection unmatched has a price, so one refused link never forces two
poor ones. The whole video is known, so no motion model is needed:
Kalman trackers made for keypoints (norfair) add little here and pull more dependencies.

A link that moves a person more than :data:`SUSPICIOUS` body sizes in one frame is counted as a
possible identity switch. :func:`pick_switches` counts how often "the best detection of each
frame" (the rule without tracking) jumps from one track to another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hotpatch.errors import DataError
from hotpatch.keypoints.model import Detection

__all__ = ["MAX_JUMP", "SUSPICIOUS", "Tracks", "link", "people", "pick_switches", "single", "tracks_from_ids",
           "usable_ids"]

#: A link may move a person at most this many body sizes per frame (more: a new track).
MAX_JUMP = 1.0
#: A link that moves a person more than this many body sizes is counted as a possible identity switch.
SUSPICIOUS = 0.5
#: A link may change a person's size (box diagonal) at most this many times.
MAX_RESIZE = 2.5
_NO = 1e6
#: The cost of leaving a track or a detection without a partner in a frame (a match costs less than two of these).
_ALONE = 1.0


@dataclass
class Tracks:
    """``keypoints`` (P, T, J, 3), NaN where the person is not detected; ``scores`` (P, T)
    detection scores (NaN where absent); ``ids`` the P track ids; ``source`` how they were made;
    ``switches`` the frames (and track ids) of links counted as possible identity switches;
    ``detections`` (T,) lists of each frame's (track index, detection score)."""

    keypoints: np.ndarray
    scores: np.ndarray
    ids: list[Any]
    source: str
    switches: list[tuple[int, Any]] = field(default_factory=list)
    detections: list[list[tuple[int, float]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def frames_seen(self) -> np.ndarray:
        """(P,) frames in which each track is detected."""
        return np.isfinite(self.scores).sum(axis=1)

    def weight(self) -> np.ndarray:
        """(P,) how much each track is "the" person: the sum of its detection scores."""
        return np.nansum(self.scores, axis=1)


def usable_ids(frames: list[list[Detection] | None]) -> bool:
    """Whether every detection has a track id and no frame holds one id twice."""
    dets = [d for f in frames if f for d in f]
    if not dets or any(d.track is None for d in dets):
        return False
    return all(len({d.track for d in f}) == len(f) for f in frames if f)


def _empty(frames: list, ids: list, joints: int, source: str) -> Tracks:
    p, t = len(ids), len(frames)
    return Tracks(np.full((p, t, joints, 3), np.nan), np.full((p, t), np.nan), ids, source,
                  detections=[[] for _ in range(t)])


def tracks_from_ids(frames: list[list[Detection] | None], joints: int) -> Tracks:
    """Tracks from the file's own track ids (see :func:`usable_ids`)."""
    ids = sorted({d.track for f in frames if f for d in f}, key=lambda v: (str(type(v)), v))
    out = _empty(frames, ids, joints, "the file's track ids")
    index = {v: i for i, v in enumerate(ids)}
    for t, dets in enumerate(frames):
        for d in dets or []:
            out.keypoints[index[d.track], t], out.scores[index[d.track], t] = d.keypoints, d.score
            out.detections[t].append((index[d.track], d.score))
    return out


def _box(kp: np.ndarray) -> np.ndarray | None:
    xy = kp[np.isfinite(kp[:, :2]).all(axis=1), :2]
    return np.concatenate([xy.min(axis=0), xy.max(axis=0)]) if len(xy) >= 2 else None


def _cost(last: np.ndarray, det: np.ndarray, gap: int) -> tuple[float, float]:
    """(assignment cost, distance moved in body sizes) of continuing a track last seen as ``last``
    with ``det``, ``gap`` frames later; the cost is :data:`_NO` where the link is refused."""
    a, b = _box(last), _box(det)
    if a is None or b is None:
        return _NO, float("inf")
    size_a, size_b = max(np.hypot(*(a[2:] - a[:2])), 1.0), max(np.hypot(*(b[2:] - b[:2])), 1.0)
    size = max(size_a, size_b)
    both = np.isfinite(last[:, :2]).all(axis=1) & np.isfinite(det[:, :2]).all(axis=1)
    if both.sum() >= 3:
        moved = float(np.linalg.norm(last[both, :2] - det[both, :2], axis=1).mean() / size)
    else:
        moved = float(np.linalg.norm((a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2) / size)
    inter = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None).prod()
    union = (a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter
    iou = float(inter / union) if union > 0 else 0.0
    rescale = abs(float(np.log(size_a / size_b)))
    if moved > MAX_JUMP * min(gap, 3) or rescale > np.log(MAX_RESIZE):
        return _NO, moved
    return moved + (1.0 - iou) + rescale, moved


def _assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """Rows matched to columns at least cost, where leaving a row (a track) or a column (a
    detection: a new track) unmatched costs :data:`_ALONE` each: ``linear_sum_assignment`` on the
    matrix padded with those choices, so a refused link never forces two poor ones."""
    from scipy.optimize import linear_sum_assignment

    n, m = cost.shape
    full = np.full((n + m, m + n), _NO)
    full[:n, :m] = cost
    full[np.arange(n), m + np.arange(n)] = _ALONE
    full[n + np.arange(m), np.arange(m)] = _ALONE
    full[n:, m:] = 0.0
    return [(r, c) for r, c in zip(*linear_sum_assignment(full)) if r < n and c < m and cost[r, c] < _NO]


def link(frames: list[list[Detection] | None], joints: int, *, max_gap: int = 30) -> Tracks:
    """Link the detections of consecutive frames into tracks (see the module docstring); tracks are
    numbered 0, 1, ... by how much they are the main person (:meth:`Tracks.weight`), most first."""
    last: list[np.ndarray] = []     # each track's latest keypoints
    seen: list[int] = []            # the frame it was last seen in
    rows: list[list[tuple[int, Detection]]] = []  # (frame, detection) per track
    switches: list[tuple[int, int]] = []
    for t, dets in enumerate(frames):
        dets = dets or []
        live = [i for i in range(len(last)) if t - seen[i] <= max_gap]
        taken: dict[int, int] = {}
        if live and dets:
            cost = np.full((len(live), len(dets)), _NO)
            moved = np.zeros_like(cost)
            for r, i in enumerate(live):
                for c, d in enumerate(dets):
                    cost[r, c], moved[r, c] = _cost(last[i], d.keypoints, t - seen[i])
            for r, c in _assign(cost):
                taken[c] = live[r]
                if moved[r, c] > SUSPICIOUS:
                    switches.append((t, live[r]))
        for c, d in enumerate(dets):
            i = taken.get(c)
            if i is None:
                i = len(last)
                last.append(d.keypoints)
                seen.append(t)
                rows.append([])
            last[i] = np.where(np.isfinite(d.keypoints), d.keypoints, last[i])
            seen[i] = t
            rows[i].append((t, d))
    weights = [sum(d.score for _, d in r) for r in rows]
    order = sorted(range(len(rows)), key=lambda i: -weights[i])
    rank = {i: k for k, i in enumerate(order)}
    out = _empty(frames, list(range(len(rows))), joints,
                 "linked by hotpatch (Hungarian assignment on keypoint and box distance)")
    for i, r in enumerate(rows):
        for t, d in r:
            out.keypoints[rank[i], t], out.scores[rank[i], t] = d.keypoints, d.score
            out.detections[t].append((rank[i], d.score))
    out.switches = [(t, rank[i]) for t, i in switches]
    return out


def single(frames: list[list[Detection] | None], joints: int) -> Tracks:
    """One track of a file with at most one detection per frame; jumps are counted as possible switches."""
    out = _empty(frames, [0], joints, "one person per frame")
    previous: tuple[int, np.ndarray] | None = None
    for t, dets in enumerate(frames):
        for d in dets or []:
            out.keypoints[0, t], out.scores[0, t] = d.keypoints, d.score
            out.detections[t].append((0, d.score))
            if previous is not None and _cost(previous[1], d.keypoints, 1)[1] > SUSPICIOUS * (t - previous[0]):
                out.switches.append((t, 0))
            previous = (t, d.keypoints)
    return out


def people(frames: list[list[Detection] | None], joints: int) -> Tracks:
    """The file's tracks if its ids are usable; one track if no frame holds two people; else :func:`link`."""
    if not any(frames):
        raise DataError("the file holds no detected person")
    if usable_ids(frames):
        return tracks_from_ids(frames, joints)
    if all(len(f or []) <= 1 for f in frames):
        return single(frames, joints)
    return link(frames, joints)


def pick_switches(tracks: Tracks) -> int:
    """How often the highest-scoring detection of each frame belongs to another track than the
    previous frame's (the person a reader without tracking would follow changes)."""
    picks = [max(d, key=lambda x: x[1])[0] for d in tracks.detections if d]
    return sum(a != b for a, b in zip(picks, picks[1:]))
