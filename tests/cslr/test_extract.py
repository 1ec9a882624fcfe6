"""polyhead-cslr extract: MediaPipe Holistic on a real photograph and a clip made from it, per-file problem
reports (empty, unreadable, no person, damaged), resumability, and the .pose reader on a pose-format file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from polyhead.cslr.data.isharah import load_unlabeled
from polyhead.cslr.data.layout import BODY, LEFT_HAND, LIPS, LIPS_MEDIAPIPE, NUM_POINTS, RIGHT_HAND
from polyhead.cslr.extract import (
    _FFMPEG_LINE,
    _captured_stderr,
    _iter_frames,
    find_inputs,
    main,
    read_pose_file,
    run_extract,
)

cv2 = pytest.importorskip("cv2")
pytest.importorskip("mediapipe")

PHOTO = Path(__file__).parents[2] / "shared" / "cslr" / "messi5.jpg"


def _clip(path: Path, frames: int) -> None:
    img = cv2.imread(str(PHOTO))
    h, w = img.shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    for t in range(frames):
        out.write(np.roll(img, 3 * t, axis=1))  # a small pan
    out.release()


@pytest.mark.slow
def test_extract_real_photo_clip_and_bad_files(tmp_path: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "photo.jpg").write_bytes(PHOTO.read_bytes())
    _clip(inp / "clip.avi", 4)
    cv2.imwrite(str(inp / "nobody.png"), np.full((240, 320, 3), 90, np.uint8))
    (inp / "empty.mp4").write_bytes(b"")
    (inp / "garbage.mp4").write_bytes(b"this is not a video" * 10)
    _clip(tmp_path / "full.avi", 12)
    data = (tmp_path / "full.avi").read_bytes()
    (inp / "cut.avi").write_bytes(data[: int(len(data) * 0.6)])  # truncated: the index says 12 frames
    (inp / "notes.txt").write_text("ignored")
    out = tmp_path / "out"

    summary = run_extract([inp], out, workers=1, progress=False)
    assert summary["inputs"] == 6 and summary["processed"] == {
        "ok": 2,
        "damaged": 1,
        "no_person": 1,
        "empty": 1,
        "unreadable": 1,
    }
    problems = {Path(p["path"]).name: p["status"] for p in summary["problems"]}
    assert problems == {"nobody.png": "no_person", "empty.mp4": "empty", "garbage.mp4": "unreadable",
                        "cut.avi": "damaged"}  # fmt: skip
    (cut,) = [p for p in summary["problems"] if p["status"] == "damaged"]
    assert 0 < cut["frames"] < 12 and f"decoded {cut['frames']} of the 12 frames" in cut["message"]
    assert summary["frames_per_s"] > 0 and summary["frames"] == 1 + 4 + 1 + cut["frames"]

    kp = {s.id: s.keypoints for s in load_unlabeled(out / "keypoints.pkl")}  # the release reader accepts it
    assert set(kp) == {"photo", "clip", "cut"} and len(kp["cut"]) == cut["frames"]  # damaged: frames kept
    photo, clip = kp["photo"], kp["clip"]
    assert photo.shape == (1, NUM_POINTS, 3) and clip.shape == (4, NUM_POINTS, 3)
    h, w = cv2.imread(str(PHOTO)).shape[:2]
    for part in (RIGHT_HAND, LEFT_HAND, LIPS, BODY):  # everything is visible in this photo
        xy = photo[0, part, :2]
        assert not np.isnan(xy).any()
        assert (xy[:, 0] > -0.2 * w).all() and (xy[:, 0] < 1.2 * w).all()
    conf = photo[0, :, 2]
    assert ((conf >= 0) & (conf <= 1)).all() and (conf[RIGHT_HAND] == 1).all()
    # The lips lie inside the face: within the body's nose-to-shoulder span, near the nose (body point 0).
    nose = photo[0, BODY.start, :2]
    assert np.linalg.norm(photo[0, LIPS, :2].mean(0) - nose) < 0.1 * w
    # The panned clip: the person moves right by 3 px a frame.
    shift = np.nanmedian(clip[3, BODY, 0] - clip[0, BODY, 0])
    assert 4 < shift < 14

    # Resume: finished files (ok, no person) are not redone; the failed ones are retried.
    again = run_extract([inp], out, workers=1, progress=False)
    assert again["skipped_finished"] == 4 and again["processed"] == {"empty": 1, "unreadable": 1}
    assert again["samples_in_pickle"] == 3
    lines = [json.loads(x) for x in (out / "status.jsonl").read_text().splitlines()]
    assert [r["id"] for r in lines].count("photo") == 1


def test_extract_cli_reports_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.mp4").write_bytes(b"1")
    with pytest.raises(ValueError, match="sample id 'x'"):
        find_inputs([tmp_path])


def test_read_pose_file_maps_holistic_components(tmp_path: Path) -> None:
    from pose_format import Pose
    from pose_format.numpy.pose_body import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions
    from pose_format.utils.holistic import holistic_components

    rng = np.random.default_rng(0)
    header = PoseHeader(0.2, PoseHeaderDimensions(640, 480, 0), holistic_components("XYZC"))
    T, P = 5, header.total_points()
    data = rng.uniform(0, 400, (T, 1, P, 3)).astype(np.float32)
    conf = rng.uniform(0.5, 1, (T, 1, P)).astype(np.float32)
    lh = header.get_point_index("LEFT_HAND_LANDMARKS", "WRIST")
    conf[2, 0, lh : lh + 21] = 0  # left hand lost in frame 2
    body = NumPyPoseBody(
        fps=25, data=np.ma.masked_array(data, mask=(conf == 0)[..., None].repeat(3, -1)), confidence=conf
    )
    path = tmp_path / "x.pose"
    with open(path, "wb") as f:
        Pose(header, body).write(f)

    kp = read_pose_file(path)
    assert kp.shape == (T, NUM_POINTS, 3)
    rh = header.get_point_index("RIGHT_HAND_LANDMARKS", "WRIST")
    face = header.get_point_index("FACE_LANDMARKS", "0")
    pose0 = header.get_point_index("POSE_LANDMARKS", "NOSE")
    np.testing.assert_allclose(kp[:, RIGHT_HAND, :2], data[:, 0, rh : rh + 21, :2])
    np.testing.assert_allclose(kp[:, LIPS, :2], data[:, 0, face + np.array(LIPS_MEDIAPIPE), :2])
    np.testing.assert_allclose(kp[:, BODY, 2], conf[:, 0, pose0 : pose0 + 25])
    assert np.isnan(kp[2, LEFT_HAND, :2]).all() and (kp[2, LEFT_HAND, 2] == 0).all()
    assert not np.isnan(kp[1, LEFT_HAND]).any()


def test_decoder_complaints_are_captured(tmp_path: Path) -> None:
    """A clip with corrupted bytes decodes every frame, and only FFmpeg's stderr says so: it is captured."""
    path = tmp_path / "clip.avi"
    img = cv2.imread(str(PHOTO))
    h, w = img.shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (w, h))
    for t in range(12):
        out.write(np.roll(img, 3 * t, axis=1))
    out.release()
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    info = {"declared": 0}
    with _captured_stderr() as lines:
        frames = list(_iter_frames(path, info))
        os.write(2, b"an unrelated library line\n")
    assert len(frames) == info["declared"] == 12  # nothing missing: the frame count alone would not tell
    decoder = [m.group(1) for m in map(_FFMPEG_LINE.match, lines) if m]
    assert decoder and set(decoder) == {"mpeg4"}
    assert "an unrelated library line" in lines and not _FFMPEG_LINE.match("an unrelated library line")
