"""Readers round-trip in every format, bad records are reported with file and record (or counted), images of
any mode are converted correctly, the synthesiser is seeded and physical, the scenes are consistent."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from polyhead.lowlight.data import (
    AnnotationError,
    DetectionSet,
    ImageRecord,
    LowLightSynthesizer,
    load_image,
    read_coco,
    read_darkface,
    read_exdark,
    read_voc,
    render_scene,
    write_coco,
    write_darkface,
    write_exdark,
    write_voc,
)
from polyhead.lowlight.data.synthesis import linear_to_srgb, srgb_to_linear


def _fixture(tmp_path, n=4, categories=("Bicycle", "Car", "People")) -> DetectionSet:
    rng = np.random.default_rng(0)
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    records = []
    for i in range(n):
        w, h = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        path = img_dir / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        k = int(rng.integers(1, 4))
        x1 = rng.integers(0, w // 2, k).astype(np.float32)
        y1 = rng.integers(0, h // 2, k).astype(np.float32)
        boxes = np.stack([x1, y1, x1 + rng.integers(2, w // 2, k), y1 + rng.integers(2, h // 2, k)], 1)
        records.append(ImageRecord(path, w, h, boxes, rng.integers(0, len(categories), k), image_id=i + 1))
    return DetectionSet(records, list(categories))


def _same(a: DetectionSet, b: DetectionSet) -> None:
    assert a.categories == b.categories
    assert len(a) == len(b)
    for ra, rb in zip(
        sorted(a.records, key=lambda r: r.path.name), sorted(b.records, key=lambda r: r.path.name)
    ):
        assert ra.path.resolve() == rb.path.resolve()
        assert (ra.width, ra.height) == (rb.width, rb.height)
        np.testing.assert_allclose(ra.boxes, rb.boxes, atol=1e-4)
        np.testing.assert_array_equal(ra.labels, rb.labels)


def test_coco_round_trip(tmp_path):
    data = _fixture(tmp_path)
    path = write_coco(data, tmp_path / "ann.json", tmp_path)
    back = read_coco(path, tmp_path)
    _same(data, back)
    raw = json.loads(path.read_text())
    assert raw["annotations"][0]["bbox"][2] == pytest.approx(
        float(data.records[0].boxes[0, 2] - data.records[0].boxes[0, 0])
    )


def test_voc_round_trip(tmp_path):
    data = _fixture(tmp_path)
    write_voc(data, tmp_path / "voc")
    back = read_voc(tmp_path / "voc", image_dir=tmp_path / "images", categories=data.categories)
    _same(data, back)
    # VOC corners are 1-based: xmin = x1 + 1 in the file
    xml = (tmp_path / "voc" / "Annotations" / "img0.xml").read_text()
    assert f"<xmin>{data.records[0].boxes[0, 0] + 1:g}</xmin>" in xml


def test_exdark_round_trip(tmp_path):
    data = _fixture(tmp_path)
    write_exdark(data, tmp_path / "ann", tmp_path / "images")
    text = (tmp_path / "ann" / "img0.png.txt").read_text()
    assert text.startswith("% bbGt version=3\n")
    back = read_exdark(tmp_path / "ann", tmp_path / "images", categories=data.categories)
    _same(data, back)


def test_darkface_round_trip(tmp_path):
    data = _fixture(tmp_path, categories=("face",))
    write_darkface(data, tmp_path / "label")
    first = (tmp_path / "label" / "img0.txt").read_text().splitlines()
    assert int(first[0]) == len(data.records[0].boxes) == len(first) - 1
    _same(data, read_darkface(tmp_path / "label", tmp_path / "images"))


def _bad_coco(tmp_path):
    data = _fixture(tmp_path, n=2)
    path = write_coco(data, tmp_path / "ann.json", tmp_path)
    raw = json.loads(path.read_text())
    raw["annotations"][0]["bbox"] = [70, 70, 50, 50]  # outside every fixture image (< 90 px)
    raw["annotations"].append({"id": 99, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 4]})
    raw["annotations"].append({"id": 100, "image_id": 1, "category_id": 42, "bbox": [1, 1, 4, 4]})
    raw["images"].append({"id": 7, "file_name": "images/nope.png", "width": 10, "height": 10})
    path.write_text(json.dumps(raw))
    return path


def test_coco_reports_every_problem_with_record(tmp_path):
    path = _bad_coco(tmp_path)
    with pytest.raises(AnnotationError) as err:
        read_coco(path, tmp_path)
    msg = str(err.value)
    assert str(path) in msg
    assert "annotations[0] (id 1" in msg and "box_outside" in msg
    assert "annotations[" in msg and "(id 99" in msg and "empty_box" in msg
    assert "(id 100" in msg and "unknown_category" in msg
    assert "nope.png" in msg and "missing_image" in msg
    assert len(err.value.problems) == 4


def test_coco_skip_bad_counts(tmp_path):
    path = _bad_coco(tmp_path)
    data = read_coco(path, tmp_path, skip_bad=True)
    assert data.skipped == {"box_outside": 1, "empty_box": 1, "unknown_category": 1, "missing_image": 1}
    assert len(data) == 2


def test_broken_json_and_xml(tmp_path):
    (tmp_path / "a.json").write_text('{"images": [\n{"id": 1,,}]}')
    with pytest.raises(AnnotationError, match=r"(?s)a\.json.*line 2 column"):
        read_coco(tmp_path / "a.json")
    voc = tmp_path / "voc" / "Annotations"
    voc.mkdir(parents=True)
    (voc / "x.xml").write_text("<annotation><filename>x.jpg</filename>\n<size></annotation>")
    with pytest.raises(AnnotationError, match=r"x\.xml:2:\d+: bad_record: broken XML"):
        read_voc(tmp_path / "voc")
    assert read_voc(tmp_path / "voc", skip_bad=True).skipped == {"bad_record": 1}


def test_exdark_and_darkface_bad_lines(tmp_path):
    data = _fixture(tmp_path, n=1)
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "img0.png.txt").write_text(
        "% bbGt version=3\nCar 1 1 5 5 0 0 0 0 0 0 0\nDragon 1 1 5 5\nCar 1 1 -3 5\n"
    )
    with pytest.raises(AnnotationError) as err:
        read_exdark(ann, tmp_path / "images")
    assert "img0.png.txt:3: unknown_category" in str(err.value)
    assert "img0.png.txt:4: empty_box" in str(err.value)
    got = read_exdark(ann, tmp_path / "images", skip_bad=True)
    assert got.num_boxes == 1 and got.skipped == {"unknown_category": 1, "empty_box": 1}
    lab = tmp_path / "label"
    lab.mkdir()
    (lab / "img0.txt").write_text("2\n1 1 5 5\n")
    with pytest.raises(AnnotationError, match=r"img0\.txt:1: bad_record: says 2 faces but 1"):
        read_darkface(lab, tmp_path / "images")
    del data


@pytest.mark.parametrize(
    ("mode", "make", "expect"),
    [
        (
            "RGBA",
            lambda: np.array([[[200, 100, 50, 255], [200, 100, 50, 0]]], np.uint8),
            [[200, 100, 50], [0, 0, 0]],
        ),
        ("L", lambda: np.array([[7, 250]], np.uint8), [[7, 7, 7], [250, 250, 250]]),
        ("I;16", lambda: np.array([[65535, 257 * 10]], np.uint16), [[255, 255, 255], [10, 10, 10]]),
    ],
)
def test_load_image_modes(tmp_path, mode, make, expect):
    path = tmp_path / "x.png"
    Image.fromarray(make()).save(path)  # PIL picks RGBA / L / I;16 from the array's shape and dtype
    got = load_image(path)
    assert got.dtype == np.uint8 and got.shape == (1, 2, 3)
    np.testing.assert_array_equal(got[0], np.array(expect, np.uint8))


def test_load_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.png"):
        load_image(tmp_path / "nothere.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"bad\.png: not a readable image"):
        load_image(tmp_path / "bad.png")


def test_srgb_curves_invert():
    x = np.random.default_rng(1).random(1000).astype(np.float32)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5)
    assert srgb_to_linear(np.array([0.5]))[0] == pytest.approx(0.21404, abs=1e-4)


def test_synthesizer_seeded_and_physical():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    synth = LowLightSynthesizer(seed=3)
    a, pa = synth(img, 5)
    b, pb = LowLightSynthesizer(seed=3)(img, 5)  # another instance (another worker): same result
    np.testing.assert_array_equal(a, b)
    assert pa == pb and set(pa) >= {"exposure", "gains", "photons", "read_std", "jpeg_quality"}
    c, _ = synth(img, 6)
    assert not np.array_equal(a, c)
    assert a.mean() < img.mean() * 0.6  # darker
    # Without noise, cast and JPEG the mean linear irradiance scales by the exposure.
    clean = LowLightSynthesizer(exposure=(0.1, 0.1), photons=(1e9, 1e9), read_std=(1e-9, 1e-9), cast=0.0,
                                jpeg_quality=None)  # fmt: skip
    flat = np.full((32, 32, 3), 200, np.uint8)
    out, _ = clean(flat, 0)
    want = linear_to_srgb(np.array([srgb_to_linear(np.array([200 / 255]))[0] * 0.1]))[0] * 255
    assert abs(float(out.mean()) - want) < 0.6
    # Shot noise: the variance of the linear signal grows as the mean / photons.
    noisy = LowLightSynthesizer(exposure=(1.0, 1.0), photons=(100.0, 100.0), read_std=(1e-9, 1e-9), cast=0.0,
                                jpeg_quality=None)  # fmt: skip
    out, _ = noisy(np.full((128, 128, 3), 137, np.uint8), 0)  # linear 0.25: no clipping at 1
    lin = srgb_to_linear(out.astype(np.float64) / 255)
    assert lin.mean() == pytest.approx(0.25, rel=0.03)
    assert lin.var() == pytest.approx(lin.mean() / 100, rel=0.1)


def test_synthesizer_rejects_bad_ranges():
    with pytest.raises(ValueError, match="exposure"):
        LowLightSynthesizer(exposure=(0.5, 2.0))
    with pytest.raises(ValueError, match="jpeg_quality"):
        LowLightSynthesizer(jpeg_quality=(0, 50))


def test_scene_boxes_are_tight_visible_boxes():
    rng = np.random.default_rng(4)
    for _ in range(5):
        img, boxes, labels = render_scene(rng, 96)
        assert img.shape == (96, 96, 3) and img.dtype == np.uint8
        assert len(boxes) == len(labels) >= 1
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert boxes.min() >= 0 and boxes.max() <= 96
        assert labels.min() >= 0 and labels.max() < 6
