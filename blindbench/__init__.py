"""blindbench: a toolkit for blind image inpainting built around VCN (Wang et al., ECCV 2020)."""

from __future__ import annotations

import fnmatch
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "inpaint", "list_models"]


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models that match a shell-style ``pattern`` (timm's ``list_models``), sorted.

    Every name works with :func:`create_model` and ``blindbench train/eval/inpaint --model``; plug-in models
    (``pkg.module:build``) are not registered and so not listed. The registry loads (and torch with it) on the
    first call, not at ``import blindbench``.

    Example:
        >>> blindbench.list_models("vcn*")  # doctest: +SKIP
        ['vcn', 'vcn-no-fusion', ...]
    """
    from blindbench.models import model_names

    return sorted(name for name in model_names() if fnmatch.fnmatchcase(name, pattern))


def __getattr__(name: str) -> Any:
    # Lazy: `import blindbench` (and the CLI's --help) stays fast; torch loads only when a model is asked for.
    if name == "create_model":
        from blindbench.models import create_model

        return create_model
    if name == "inpaint":
        from blindbench.inpainting import inpaint

        return inpaint
    raise AttributeError(f"module 'blindbench' has no attribute {name!r}")
