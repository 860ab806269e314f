"""IoU tracker: follows faces across frames so each person gets one decision, not one per frame."""

from __future__ import annotations

from edgeface.types import Detection, Track


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    w = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    h = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = w * h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


class IouTracker:
    """`update(detections, ts) -> [(track, detection)]`; greedy best-IoU assignment, tracks expire."""

    def __init__(self, min_iou: float = 0.3, max_age_s: float = 0.4) -> None:
        self.min_iou = min_iou
        self.max_age_s = max_age_s
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def update(self, detections: list[Detection], ts: float) -> list[tuple[Track, Detection]]:
        pairs = sorted(
            (
                (iou(t.bbox, d.bbox), tid, di)
                for tid, t in self.tracks.items()
                for di, d in enumerate(detections)
            ),
            reverse=True,
        )
        used_tracks: set[int] = set()
        used_detections: set[int] = set()
        assigned: list[tuple[Track, Detection]] = []
        for overlap, tid, di in pairs:
            if overlap < self.min_iou:
                break
            if tid in used_tracks or di in used_detections:
                continue
            used_tracks.add(tid)
            used_detections.add(di)
            track = self.tracks[tid]
            track.bbox, track.last_seen = detections[di].bbox, ts
            track.frames_seen += 1
            assigned.append((track, detections[di]))
        for di, detection in enumerate(detections):
            if di not in used_detections:
                track = Track(self._next_id, detection.bbox, ts, ts, frames_seen=1)
                self.tracks[track.track_id] = track
                self._next_id += 1
                assigned.append((track, detection))
        return assigned

    def restart(self, track: Track, ts: float) -> Track:
        """Replace a track by a fresh one at the same place (someone else now stands there)."""
        del self.tracks[track.track_id]
        fresh = Track(self._next_id, track.bbox, ts, ts, frames_seen=1)
        self.tracks[fresh.track_id] = fresh
        self._next_id += 1
        return fresh

    def expire(self, ts: float) -> list[Track]:
        """Remove and return the tracks not seen for max_age_s."""
        gone = [t for t in self.tracks.values() if ts - t.last_seen > self.max_age_s]
        for track in gone:
            del self.tracks[track.track_id]
        return gone
