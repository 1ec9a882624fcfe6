"""CTR models: AutoInt / AutoInt+ and the LR, FM and DNN baselines."""

from polyhead.ctr.models.autoint import AutoInt, InteractingLayer
from polyhead.ctr.models.baselines import DNN, MLP, FactorizationMachine, LogisticRegression
from polyhead.ctr.models.embedding import FieldEmbedding

__all__ = [
    "DNN",
    "MLP",
    "AutoInt",
    "FactorizationMachine",
    "FieldEmbedding",
    "InteractingLayer",
    "LogisticRegression",
]
