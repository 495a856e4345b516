"""blindbench: a toolkit for blind image inpainting built around VCN (Wang et al., ECCV 2020)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "inpaint"]


def __getattr__(name: str) -> Any:
    # Lazy: `import blindbench` (and the CLI's --help) stays fast; torch loads only when a model is asked for.
    if name == "create_model":
        from blindbench.models import create_model

        return create_model
    if name == "inpaint":
        from blindbench.inpainting import inpaint

        return inpaint
    raise AttributeError(f"module 'blindbench' has no attribute {name!r}")
