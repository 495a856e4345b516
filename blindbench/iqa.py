"""Optional learned metrics through pyiqa (``pip install 'blindbench[iqa]'``): LPIPS per sample, FID per set.

Nothing is ever downloaded. pyiqa and torchvision fetch weights into torch's hub folder on first use; here the
hub folder is pointed at ``--iqa-weights DIR`` and every download function is replaced by one that raises a
one-line error naming the file that should have been there, only while a metric is built or called
(:func:`offline`), so nothing else in the process is affected. Put the files where pyiqa caches them
(``DIR/pyiqa/…`` and ``DIR/checkpoints/…``, i.e. copy a warmed ``~/.cache/torch/hub`` from a machine with
internet) and the metrics run offline.

Note: pyiqa pulls torchvision and other large dependencies that do not install beside the CPU torch build used
in this project's CI, so this path is exercised there only up to the import (and with a stand-in module).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from blindbench.errors import BlindbenchError, ConfigError

PER_SAMPLE = ("lpips",)
PER_SET = ("fid",)


def parse_iqa(text: str) -> tuple[str, ...]:
    """``"lpips,fid"`` → ``("lpips", "fid")``; an unknown name is a one-line error."""
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    for name in names:
        if name not in PER_SAMPLE + PER_SET:
            raise ConfigError(f"unknown --iqa metric {name!r}; known: {', '.join(PER_SAMPLE + PER_SET)}")
    return names


def _refuse_download(url: str, dst: Any = None, *args: Any, **kwargs: Any) -> None:
    raise BlindbenchError(f"pyiqa wants to download {url}; place that file under --iqa-weights (nothing is fetched)")


def _import_pyiqa(weights: str) -> tuple[Any, Path]:
    """pyiqa and the weights folder, or a one-line error for either missing."""
    root = Path(weights) if weights else None
    if root is None or not root.is_dir():
        raise BlindbenchError(f"--iqa needs --iqa-weights pointing to a folder of weights (got {weights!r})")
    try:
        import pyiqa
    except ImportError:
        raise BlindbenchError("--iqa needs pyiqa: pip install 'blindbench[iqa]'") from None
    return pyiqa, root


@contextmanager
def offline(root: Path) -> Iterator[None]:
    """Within the block, torch's hub folder is ``root`` and every download raises; both restored after."""
    modules: list[Any] = [torch.hub]
    try:  # pyiqa binds the download function into its own namespace
        import pyiqa.utils.download_util as download_util

        modules.append(download_util)
    except ImportError:
        pass
    saved_dir = torch.hub.get_dir()
    saved = [getattr(m, "download_url_to_file", None) for m in modules]
    torch.hub.set_dir(str(root))
    for module in modules:
        module.download_url_to_file = _refuse_download
    try:
        yield
    finally:
        torch.hub.set_dir(saved_dir)
        for module, function in zip(modules, saved, strict=True):
            if function is not None:
                module.download_url_to_file = function


class IqaMetrics:
    """The ``--iqa`` metrics of one eval run; empty (and free) when none are asked for."""

    def __init__(self, text: str, weights: str, device: torch.device) -> None:
        self.names = parse_iqa(text)
        self.per_sample_names = [n for n in self.names if n in PER_SAMPLE]
        self._metrics: dict[str, Any] = {}
        if not self.names:
            return
        pyiqa, self._root = _import_pyiqa(weights)
        for name in self.names:
            try:
                with offline(self._root):
                    self._metrics[name] = pyiqa.create_metric(name, device=device)
            except BlindbenchError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure to build the metric is a setup problem
                message = f"pyiqa cannot build {name}: {type(exc).__name__}: {exc}"
                raise BlindbenchError(message.splitlines()[0]) from None

    def per_sample(self, restored: Tensor, target: Tensor) -> dict[str, Tensor]:
        """(B,) values of the per-sample metrics; images in [-1, 1] as the model gives them."""
        out = {}
        for name in self.per_sample_names:
            metric = self._metrics[name]
            device = next(iter(metric.parameters()), torch.empty(0)).device
            pred = ((restored.float() + 1) / 2).clamp(0, 1).to(device)
            real = ((target.float() + 1) / 2).clamp(0, 1).to(device)
            with torch.no_grad(), offline(self._root):
                out[name] = metric(pred, real).reshape(-1).double().cpu()
        return out

    def per_set(self, images: Path, targets: Path) -> dict[str, float]:
        """Set-level metrics between two folders of PNGs (FID: restored vs targets)."""
        names = [name for name in self.names if name in PER_SET]
        if not names:
            return {}
        with offline(self._root):
            return {name: float(self._metrics[name](str(images), str(targets))) for name in names}
