"""Baseline generators (CA, GMC, PC, GC), each run behind the VCN mask prediction network."""

from baselines.blind import PRESETS, BlindInpainter, ca, gc, gmc, pc
from baselines.ca import CAGenerator, ContextualAttention, DeepFillGenerator, contextual_attention
from baselines.gc import GatedConv2d, GCGenerator, gated_activation
from baselines.gmc import GMCGenerator
from baselines.pc import PartialConv2d, PCGenerator, partial_conv2d, partial_conv_mask_update

__all__ = [
    "PRESETS",
    "BlindInpainter",
    "CAGenerator",
    "ContextualAttention",
    "DeepFillGenerator",
    "GCGenerator",
    "GMCGenerator",
    "GatedConv2d",
    "PCGenerator",
    "PartialConv2d",
    "ca",
    "contextual_attention",
    "gated_activation",
    "gc",
    "gmc",
    "partial_conv2d",
    "partial_conv_mask_update",
    "pc",
]
