"""polyhead.face: blind face restoration with RestoreFormer++ on the polyhead platform.

Wang et al., "RestoreFormer++: Towards Real-World Blind Face Restoration from Undegraded Key-Value Pairs"
(TPAMI 2023, arXiv:2308.07228). Stage 1 learns a high-quality dictionary (a VQ autoencoder), stage 2
restores degraded faces with multi-head cross-attention from degraded features to the dictionary priors
at several scales. See the package README for the commands and measured results.
"""
