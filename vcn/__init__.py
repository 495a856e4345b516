"""VCN: mask prediction network (MPN) + robust inpainting network (RIN) with probabilistic context normalization."""

from vcn.critics import GlobalCritic, PatchCritic
from vcn.model import PRESETS, VCN, VCNConfig, vcn, vcn_ed, vcn_no_fusion, vcn_no_mpn, vcn_rm
from vcn.mpn import MPN
from vcn.pcn import PCN, pcn
from vcn.rin import PCB, RIN
from vcn.types import InpaintOutput
from vcn.vgg import VGG19Features, load_vgg19

__all__ = [
    "MPN",
    "PCB",
    "PCN",
    "PRESETS",
    "RIN",
    "VCN",
    "GlobalCritic",
    "InpaintOutput",
    "PatchCritic",
    "VCNConfig",
    "VGG19Features",
    "load_vgg19",
    "pcn",
    "vcn",
    "vcn_ed",
    "vcn_no_fusion",
    "vcn_no_mpn",
    "vcn_rm",
]
