"""polyhead.cslr: continuous sign-language recognition from pose keypoints (Isharah-1000 / SignEval 2025).

- ``data``: the 86-point layout, the Isharah release-format reader, per-part normalisation, missing-hand
  filling, augmentations, temporal crop/pad, the gloss vocabulary and the generator of continuous signing
  (the embedded default data, with the challenge's signer-independent and unseen-sentence splits);
- ``models``: the Signer-Invariant Conformer, the Multi-Scale Fusion Transformer and the starter-kit
  baseline, on ``polyhead.attention``; ``losses`` (CTC) and ``decoding`` (greedy / beam, WER);
- ``datamodule``, ``module``: the Lightning side; ``cli``: ``polyhead-cslr fit|validate|test|predict`` and
  ``extract`` (MediaPipe Holistic keypoints, ``extract.py``; needs ``polyhead-cslr[extract]``);
- ``pipeline``: the quick comparison that ``polyhead demo`` runs.

See packages/cslr/README.md for the commands and results.
"""
