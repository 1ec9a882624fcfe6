"""CSLR models: Signer-Invariant Conformer, Multi-Scale Fusion Transformer, starter-kit Transformer + CTC."""

from polyhead.cslr.models.encoders import (
    CTCEncoder,
    MultiScaleFusionTransformer,
    SignerInvariantConformer,
    TransformerCTC,
)

__all__ = ["CTCEncoder", "MultiScaleFusionTransformer", "SignerInvariantConformer", "TransformerCTC"]
