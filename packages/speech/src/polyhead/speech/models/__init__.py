"""The speech model: Conformer encoder + Transformer decoder, joint CTC/attention."""

from polyhead.speech.models.asr import ASRModel, joint_loss

__all__ = ["ASRModel", "joint_loss"]
