import json

import cv2
import numpy as np
import pytest

from polyhead.face.data.images import ImageError, load_image
from polyhead.face.data.render import FFHQ_TEMPLATE, render
from polyhead.face.module import FaceModule
from polyhead.face.restore import Restorer, align_matrix, paste_back, restore_files, soft_mask, warp_face


def test_alignment_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    pts = FFHQ_TEMPLATE * 64
    ang, s, t = 0.3, 2.5, np.array([40.0, 70.0])
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) * s
    photo_pts = pts @ rot.T + t + rng.normal(0, 0.05, pts.shape)
    m = align_matrix(photo_pts, 64)
    back = photo_pts @ m[:, :2].T + m[:, 2]
    assert np.abs(back - pts).max() < 0.3
    assert np.linalg.det(m[:, :2]) == pytest.approx(1 / s**2, rel=0.02)


def test_paste_back_of_an_unchanged_face_keeps_the_photo():
    img, lm = render(0, [0], 128)
    photo = np.full((300, 400, 3), 90, np.uint8)
    photo[100:228, 150:278] = (img[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    pts = lm[0].numpy() + [150, 100]
    m = align_matrix(pts, 64)
    face = warp_face(photo, m, 64)
    out = photo.copy()
    cut = paste_back(out, face, m, soft_mask(64))
    assert not cut
    assert np.abs(out.astype(int) - photo).mean() < 2.0  # resampled twice, blended: close, not exact
    changed = np.argwhere(np.abs(out.astype(int) - photo).sum(-1) > 0)
    assert changed[:, 0].min() >= 60 and changed[:, 0].max() <= 260  # only the face region is touched
    # A face hanging over the border is reported as cut.
    m2 = align_matrix(pts - [150, 0], 64)
    assert paste_back(photo.copy(), face, m2, soft_mask(64))


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, astronaut):
    d = tmp_path_factory.mktemp("photos")
    rgb = cv2.imread(str(astronaut))
    (d / "unreadable.jpg").write_bytes(b"this is not an image")
    (d / "empty.png").write_bytes(b"")
    cv2.imwrite(str(d / "gray.png"), cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(d / "deep16.png"), rgb.astype(np.uint16) * 257)
    cv2.imwrite(str(d / "rgba.png"), np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 200, np.uint8)], -1))
    cv2.imwrite(str(d / "tiny.png"), rgb[:8, :8])
    cv2.imwrite(
        str(d / "noface.png"), np.tile(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], (240, 1, 3))
    )
    cv2.imwrite(str(d / "cut.png"), rgb[:, 190:])  # the face reaches past the left border
    huge = np.full((6000, 8000, 3), 120, np.uint8)
    huge[:, 1000:7000] = cv2.resize(rgb, (6000, 6000), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(d / "huge.jpg"), huge, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return d


def test_load_image_conversions(bad_inputs):
    assert load_image(bad_inputs / "gray.png").rgb.shape[2] == 3
    deep = load_image(bad_inputs / "deep16.png")
    assert deep.rgb.dtype == np.uint8 and "16-bit" in deep.notes[0]
    rgba = load_image(bad_inputs / "rgba.png")
    assert rgba.alpha is not None and (rgba.alpha == 200).all()
    for name, reason in (("unreadable.jpg", "unreadable"), ("empty.png", "empty"), ("tiny.png", "too_small")):
        with pytest.raises(ImageError, match=name) as e:
            load_image(bad_inputs / name)
        assert e.value.reason == reason
    with pytest.raises(ImageError, match="max_pixels"):
        load_image(bad_inputs / "huge.jpg", max_pixels=10_000_000)


@pytest.mark.slow
def test_a_batch_of_bad_photos_never_stops(bad_inputs, tmp_path, astronaut):
    # The identity "model" (the degraded input) isolates detection, alignment and paste-back.
    restorer = Restorer(FaceModule(model="degraded", resolution=64))
    files = sorted(bad_inputs.iterdir()) + [astronaut]
    results = {r.file.split("/")[-1]: r for r in restore_files(files, tmp_path, restorer, figures=False)}
    assert len(results) == len(files)
    assert results["unreadable.jpg"].status == "error" and results["unreadable.jpg"].reason == "unreadable"
    assert results["empty.png"].reason == "empty" and results["tiny.png"].reason == "too_small"
    assert results["noface.png"].status == "no_face"
    assert (tmp_path / "noface.png").read_bytes() == (
        bad_inputs / "noface.png"
    ).read_bytes()  # copied through
    for name in ("gray.png", "deep16.png", "rgba.png", "huge.jpg", "astronaut.jpg"):
        assert results[name].status == "restored" and len(results[name].faces) == 1, name
    assert load_image(tmp_path / "rgba.png").alpha is not None  # alpha kept
    assert cv2.imread(str(tmp_path / "huge.jpg")).shape == (6000, 8000, 3)
    cut = results["cut.png"]
    assert cut.status == "restored" and cut.faces[0].cut_by_border
    assert not results["astronaut.jpg"].faces[0].cut_by_border
    # Identity restoration: the photo comes back nearly unchanged (only resampling in the face region).
    a = cv2.imread(str(astronaut)).astype(int)
    b = cv2.imread(str(tmp_path / "astronaut.jpg")).astype(int)
    assert np.abs(a - b).mean() < 4
    lines = [json.loads(x) for x in (tmp_path / "report.jsonl").read_text().splitlines()]
    assert len(lines) == len(files) and {x["status"] for x in lines} == {"restored", "no_face", "error"}
