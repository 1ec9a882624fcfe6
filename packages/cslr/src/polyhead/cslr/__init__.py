"""polyhead.cslr: continuous sign-language recognition from pose keypoints (Isharah-1000 / SignEval 2025).

This first part holds the data layer: the 86-point layout, the Isharah release-format reader, per-part
normalisation, missing-hand filling, augmentations, temporal crop/pad and the gloss vocabulary. Models,
the CLI, the MediaPipe extractor and the pipeline are not written yet (see the issue).
"""
