"""blindbench: a toolkit for blind image inpainting built around VCN (Wang et al., ECCV 2020)."""

from __future__ import annotations

__version__ = "0.1.0"
