"""The AVA-format detection data: label and proposal CSVs, keyframes at 1 Hz, validated before any decoding.

A detection set is a folder with
  `videos.csv` + `classes.txt`: an ordinary manifest of the videos (`path,label,...`; the label column holds the
      actions present in each video, `;`-joined); a video's id is its file name without extension;
  label CSVs (`train.csv`, `val.csv`), AVA's format without header:
      `video_id, timestamp, x1, y1, x2, y2, action_id, person_id`, boxes normalised to [0, 1], one row per
      (person, action); action ids start at 1 as in AVA (`classes.txt` line i names action i + 1);
  proposal CSVs (`<split>_proposals.csv`): `video_id, timestamp, x1, y1, x2, y2, , score` (PySlowFast's
      predicted-box files; the action column is empty), kept when score >= the threshold (0.8, as the paper).

Keyframe at `timestamp` seconds = frame round(timestamp * fps) of the video (AVA's movies start their labels
at 902 s: subtract 900 from real AVA timestamps, as PySlowFast's `(sec - 900) * 30`).

Bad input: boxes more than 0.01 outside [0, 1] or with x2 <= x1 / y2 <= y1, unknown video ids, keyframes
outside their video, and malformed rows stop loading with `file:line` and what to do (before any decoding).
Boxes within 0.01 of the border are clipped to [0, 1]. How the clips are decoded is `dali_pipelines.ava`.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from slowfast_trt.common.bounds import cut, short
from slowfast_trt.common.errors import SlowFastError
from slowfast_trt.data.manifest import Video, read_manifest, to_videos

VIDEOS_FILE = "videos.csv"
PROPOSAL_THRESHOLD = 0.8
BOX_TOLERANCE = 0.01  # normalised coordinates this far outside [0, 1] are clipped; farther is an error
KEY_FPS = 1  # AVA labels one keyframe per second


@dataclass(frozen=True)
class AvaRow:
    """One CSV row: a box on a keyframe with an action (labels) or a score (proposals)."""

    video_id: str
    timestamp: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 normalised
    action: int | None  # 0-based class index (the file's action id - 1); None for proposals
    person: int | None = None
    score: float | None = None


@dataclass
class Keyframe:
    """One sample: a video, a timestamp, its ground-truth persons (box + action set) and its proposals."""

    index: int
    video: Video
    video_id: str
    timestamp: int
    frame: int
    gt_boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    gt_labels: list[set[int]] = field(default_factory=list)
    proposals: list[tuple[float, float, float, float]] = field(default_factory=list)
    proposal_scores: list[float] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, int]:
        return (self.video_id, self.timestamp)


def looks_like_ava_csv(path: str | Path) -> bool:
    """True when the file is an AVA label CSV (no `path,label` header; 7 or 8 fields), not a manifest."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            first = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError, csv.Error):  # csv.Error: a first field over 128 KiB; the reader names it
        return False
    # A manifest header in any case, or behind a UTF-8 byte-order mark, is still a manifest.
    return bool(first) and first[0].strip().lstrip("\ufeff").lower() != "path" and len(first) in (7, 8)


def _box(values: list[str], where: str) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in values)
    if any(v < -BOX_TOLERANCE or v > 1 + BOX_TOLERANCE for v in (x1, y1, x2, y2)):
        raise SlowFastError(
            f"{where}: box ({x1}, {y1}, {x2}, {y2}) is outside [0, 1]; AVA boxes are normalised "
            "by the frame's width and height: divide pixel coordinates by them"
        )
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2))
    if x2 <= x1 or y2 <= y1:
        raise SlowFastError(f"{where}: box ({x1}, {y1}, {x2}, {y2}) is empty (needs x1 < x2 and y1 < y2; the order is x1, y1, x2, y2)")
    return x1, y1, x2, y2


def read_ava_csv(
    path: str | Path, kind: str = "labels", num_classes: int | None = None, threshold: float = PROPOSAL_THRESHOLD
) -> list[AvaRow]:
    """Rows of an AVA label CSV (`kind="labels"`) or proposal CSV (`kind="proposals"`, score >= `threshold`)."""
    path = Path(path)
    if not path.is_file():
        raise SlowFastError(f"{kind} file {path} not found")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            records = list(csv.reader(f))
    except (csv.Error, UnicodeDecodeError) as e:  # a field over the csv module's limit (128 KiB), a NUL byte, not UTF-8
        raise SlowFastError(f"{path} is not a readable CSV ({cut(str(e))}); fix or regenerate it") from None
    rows = []
    for n, rec in enumerate(records, start=1):
        if not rec or not "".join(rec).strip():
            continue
        where = f"{path}:{n}"
        if len(rec) not in (7, 8):
            raise SlowFastError(
                f"{where}: expected 8 fields (video_id, timestamp, x1, y1, x2, y2, action_id, "
                f"{'score' if kind == 'proposals' else 'person_id'}), got {len(rec)}"
            )
        try:
            video_id, ts = rec[0].strip(), float(rec[1])
            box = _box(rec[2:6], where)
            if kind == "labels":
                action = int(rec[6]) - 1
                person = int(rec[7]) if len(rec) == 8 and rec[7].strip() else None
                score = None
            else:
                action, person = None, None
                score = float(rec[7] if len(rec) == 8 else rec[6])
        except ValueError as e:
            raise SlowFastError(f"{where}: {cut(str(e))}; fields must be numbers after the video id") from None
        if ts != int(ts) or ts < 0:
            raise SlowFastError(f"{where}: timestamp {cut(rec[1])} must be a whole number of seconds >= 0 (keyframes are at 1 Hz)")
        if action is not None and (action < 0 or (num_classes is not None and action >= num_classes)):
            raise SlowFastError(f"{where}: action id {action + 1} is outside 1..{num_classes}; fix the row or classes.txt")
        if kind == "proposals" and score < threshold:
            continue
        rows.append(AvaRow(video_id, int(ts), box, action, person, score))
    return rows


def proposals_path(labels_csv: str | Path) -> Path:
    """Where the proposals of a label CSV are by default: `<stem>_proposals.csv` beside it."""
    p = Path(labels_csv)
    return p.with_name(f"{p.stem}_proposals.csv")


def keyframe_frame(timestamp: int, fps: float) -> int:
    """The frame number of a keyframe (the video's time 0 is frame 0)."""
    return int(round(timestamp * fps))


@dataclass
class AvaSet:
    """A split of a detection set: its videos, class names and keyframes (ground truth and proposals)."""

    videos: list[Video]
    classes: list[str]
    keyframes: list[Keyframe]
    labels_csv: Path
    proposals_csv: Path | None
    unlabelled_proposal_keyframes: int = 0  # proposal keyframes without ground truth (evaluated: detections there are false positives)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_ava(
    labels_csv: str | Path, proposals_csv: str | Path | None = None, *, use_proposals: bool = False, threshold: float = PROPOSAL_THRESHOLD
) -> AvaSet:
    """Read a split (labels + videos.csv beside them, and proposals when `use_proposals`); check every reference."""
    labels_csv = Path(labels_csv)
    videos_csv = labels_csv.with_name(VIDEOS_FILE)
    if not videos_csv.is_file():
        raise SlowFastError(
            f"{videos_csv} not found: a detection set keeps its videos manifest beside the label CSV "
            "(see `slowfast data synth --detection`)"
        )
    manifest = read_manifest(videos_csv)
    videos = to_videos(manifest)
    by_id: dict[str, Video] = {}
    for v in videos:
        vid = Path(v.path).stem
        if vid in by_id:
            raise SlowFastError(f"{videos_csv}: two videos have the id {short(vid)} (file name without extension); rename one")
        by_id[vid] = v
    classes = list(manifest.classes)
    gt_rows = read_ava_csv(labels_csv, "labels", num_classes=len(classes))
    prop_rows: list[AvaRow] = []
    if use_proposals:
        proposals_csv = Path(proposals_csv) if proposals_csv else proposals_path(labels_csv)
        prop_rows = read_ava_csv(proposals_csv, "proposals", threshold=threshold)
    else:
        proposals_csv = None
    for rows, src in ((gt_rows, labels_csv), (prop_rows, proposals_csv)):
        unknown = sorted({r.video_id for r in rows} - set(by_id))
        if unknown:
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise SlowFastError(f"{src}: video id {short(unknown[0])}{more} is not in {videos_csv}; add the video or drop its rows")
    frames: dict[tuple[str, int], Keyframe] = {}

    def keyframe(vid: str, ts: int, src: Path) -> Keyframe:
        k = frames.get((vid, ts))
        if k is None:
            v = by_id[vid]
            f = keyframe_frame(ts, v.fps)
            if not 0 <= f < v.frame_count:
                raise SlowFastError(
                    f"{src}: keyframe {vid} at {ts} s is frame {f}, outside the video's {v.frame_count} frames "
                    f"at {v.fps:g} fps; timestamps count seconds from the video's start (real AVA: subtract 900)"
                )
            k = frames[(vid, ts)] = Keyframe(len(frames), v, vid, ts, f)
        return k

    persons: dict[tuple[str, int], dict] = defaultdict(dict)
    for r in gt_rows:
        k = keyframe(r.video_id, r.timestamp, labels_csv)
        ident = (r.person, r.box)  # one person = one id and box on a keyframe; rows list its actions
        if ident not in persons[k.key]:
            persons[k.key][ident] = (r.box, set())
        persons[k.key][ident][1].add(r.action)
    for key, people in persons.items():
        for box, labels in people.values():
            frames[key].gt_boxes.append(box)
            frames[key].gt_labels.append(labels)
    labelled = set(frames)
    for r in prop_rows:
        k = keyframe(r.video_id, r.timestamp, proposals_csv)
        k.proposals.append(r.box)
        k.proposal_scores.append(float(r.score))
    extra = len(set(frames) - labelled)
    keyframes = sorted(frames.values(), key=lambda k: (k.video.index, k.timestamp))
    for i, k in enumerate(keyframes):
        k.index = i
    return AvaSet(videos, classes, keyframes, labels_csv, proposals_csv, extra)
