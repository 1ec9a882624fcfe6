"""Readers (COCO, Pascal VOC, ExDark, DARK FACE), the low-light synthesiser and the generated scenes."""

from polyhead.lowlight.data.coco import read_coco, write_coco, write_coco_results
from polyhead.lowlight.data.darkface import read_darkface, write_darkface
from polyhead.lowlight.data.exdark import EXDARK_CLASSES, read_exdark, write_exdark
from polyhead.lowlight.data.images import list_images, load_image, to_rgb_array
from polyhead.lowlight.data.records import DetectionSet, ImageRecord
from polyhead.lowlight.data.scenes import CLASSES, generate_scenes, render_scene
from polyhead.lowlight.data.synthesis import LowLightParams, LowLightSynthesizer
from polyhead.lowlight.data.validation import AnnotationError
from polyhead.lowlight.data.voc import VOC_CLASSES, read_voc, write_voc

__all__ = [
    "CLASSES", "EXDARK_CLASSES", "VOC_CLASSES", "AnnotationError", "DetectionSet", "ImageRecord",
    "LowLightParams", "LowLightSynthesizer", "generate_scenes", "list_images", "load_image", "read_coco",
    "read_darkface", "read_exdark", "read_voc", "render_scene", "to_rgb_array", "write_coco",
    "write_coco_results", "write_darkface", "write_exdark", "write_voc",
]  # fmt: skip
