"""Optional learned metrics through pyiqa (``pip install 'blindbench[iqa]'``): LPIPS per sample, FID per set.

Nothing is ever downloaded. pyiqa and torchvision fetch weights into torch's hub folder on first use; here the
hub folder is pointed at ``--iqa-weights DIR`` and every download function is replaced by one that raises a
one-line error naming the file that should have been there, only while a metric is built or called
(:func:`offline`), so nothing else in the process is affected. Put the files where pyiqa caches them
(``DIR/pyiqa/…`` and ``DIR/checkpoints/…``, i.e. copy a warmed ``~/.cache/torch/hub`` from a machine with
internet) and the metrics run offline.

Note: pyiqa pulls torchvision and other large dependencies that do not install beside the CPU torch build used
in this project's CI, so this path is exercised there only up to the import (and with a stand-in module). A
torchvision built for another torch fails inside ``import pyiqa`` (an undefined symbol, or ``operator
torchvision::nms does not exist``); that is one line naming both versions, not a traceback.

The metrics' names, kinds and directions are rows of :data:`blindbench.results.METRICS` (``kind="learned"``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from blindbench import results
from blindbench.errors import BlindbenchError, ConfigError


def learned(per: results.Per) -> tuple[str, ...]:
    """The learned (pyiqa) metrics of the metric table computed per sample or per set."""
    return tuple(m.name for m in results.metrics(per) if m.kind == "learned")



def parse_iqa(text: str) -> tuple[str, ...]:
    """``"lpips,fid"`` → ``("lpips", "fid")``; an unknown name is a one-line error."""
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    known = learned("sample") + learned("set")
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown --iqa metric {name!r}; known: {', '.join(known)}")
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
    except ImportError as exc:
        if _missing_module(exc) != "pyiqa":  # pyiqa is there, one of its imports (torchvision's ops) fails
            raise BlindbenchError(_broken_import(exc)) from None
        raise BlindbenchError("--iqa needs pyiqa: pip install 'blindbench[iqa]'") from None
    except Exception as exc:  # noqa: BLE001 - a mismatched torchvision raises RuntimeError/OSError/AttributeError
        raise BlindbenchError(_broken_import(exc)) from None
    return pyiqa, root


def _missing_module(exc: ImportError) -> str | None:
    """The top-level module an ImportError says is missing, if it says so."""
    name = getattr(exc, "name", None)
    return name.split(".")[0] if isinstance(name, str) and isinstance(exc, ModuleNotFoundError) else None


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _broken_import(exc: BaseException) -> str:
    """One line for an ``import pyiqa`` that fails inside: the cause's first line and the installed versions."""
    first = next((line for line in str(exc).splitlines() if line.strip()), "")[:200]
    return (
        f"--iqa: importing pyiqa failed ({type(exc).__name__}: {first}); torch {_version('torch')} and "
        f"torchvision {_version('torchvision')} are installed: install the torchvision built for this torch "
        "(from the index torch came from)"
    )


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
        self.per_sample_names = [n for n in self.names if n in learned("sample")]
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
        names = [name for name in self.names if name in learned("set")]
        if not names:
            return {}
        with offline(self._root):
            return {name: float(self._metrics[name](str(images), str(targets))) for name in names}
