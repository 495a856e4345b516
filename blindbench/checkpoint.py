"""Training checkpoints: atomic writes, ``weights_only`` loads, RNG capture, and a model loader for eval/inpaint.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python containers, so it loads with
``torch.load(weights_only=True)``::

    {"format": 1, "model_name", "preset", "step", "stage", "stage_step", "data_batches",
     "config": dict, "model": state_dict, "model_sha256": str, "critics": {name: state_dict},
     "optimizers": {name: state_dict}, "scalers": {name: state_dict}, "rng": {"python", "numpy", "torch", "cuda"},
     "bad_steps": int, "sessions": [{"steps": [first, last], "seconds", "device", "threads", "cpu"}]}

``model_sha256`` is a digest of the weights' names, dtypes, shapes and bytes (:func:`weights_digest`): a flipped
byte inside a weight, which torch's zip container does not notice, is refused at load, and so are non-finite
weights. Checkpoints written before the digest existed load without the check.
"""

from __future__ import annotations

import hashlib
import os
import platform
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from blindbench.errors import BlindbenchError

FORMAT = 1


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA, when initialised) generator states as plain lists and tensors."""
    version, state, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    rng: dict[str, Any] = {
        "python": [version, list(state), gauss],
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
    }
    return rng


def restore_rng(rng: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng` (CUDA states are restored only when the device count matches)."""
    version, state, gauss = rng["python"]
    random.setstate((version, tuple(state), gauss))
    np_rng = rng["numpy"]
    np.random.set_state(
        {
            "bit_generator": np_rng["bit_generator"],
            "state": {"key": np_rng["key"].numpy().astype(np.uint32), "pos": np_rng["pos"]},
            "has_gauss": np_rng["has_gauss"],
            "gauss": np_rng["gauss"],
        }
    )
    torch.set_rng_state(rng["torch"])
    cuda = rng.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically: a temp file in the same folder, fsync, ``os.replace``.

    A crash or exception at any point leaves the previous file at ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would make runs unreadable to the rest of a group
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format": FORMAT, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return path


def weights_digest(weights: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        tensor = weights[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def non_finite(weights: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors that hold a NaN or an infinity."""
    return [n for n, t in weights.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def check_weights(weights: Any, recorded_sha256: str | None, what: str) -> None:
    """Refuse weights whose digest differs from the recorded one, or that are not finite (one line, ``what``)."""
    if not isinstance(weights, dict) or not all(isinstance(t, torch.Tensor) for t in weights.values()):
        raise BlindbenchError(f"{what}: the weights are not a state dict of tensors")
    if recorded_sha256 and weights_digest(weights) != recorded_sha256:
        raise BlindbenchError(f"{what}: the weights do not match their recorded sha256 (the file is damaged)")
    bad = non_finite(weights)
    if bad:
        raise BlindbenchError(f"{what}: {len(bad)} weight tensor(s) hold NaN or inf, e.g. {bad[0]}")


def read_weights(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """A training checkpoint or a weights-only file (``blindbench.zoo``, ``.pt`` or ``.safetensors``) with its
    weights checked and in float32.

    Returns the file's dict with ``model`` as float32 tensors; one-line errors (starting with ``what``) for a
    missing or unreadable file, no weights, a digest mismatch or non-finite weights.
    """
    path = checkpoint_file(path)
    if not path.is_file():
        raise BlindbenchError(f"{what} not found: {path}")
    if path.suffix == ".safetensors":
        blob = _read_safetensors(path, what)
    else:
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a damaged file
            raise BlindbenchError(f"cannot read {what} {path} ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or "model" not in blob:
        raise BlindbenchError(f"{path} is neither a blindbench checkpoint nor a weights file")
    check_weights(blob["model"], blob.get("model_sha256"), f"{what} {path}")
    return {**blob, "model": {k: v.float() if v.is_floating_point() else v for k, v in blob["model"].items()}}


def _read_safetensors(path: Path, what: str) -> dict[str, Any]:
    """A ``.safetensors`` weights file as read_weights' dict: its string metadata, ``step`` as int, ``model``."""
    try:
        from safetensors import safe_open
    except ImportError:
        raise BlindbenchError(f"{what} {path} is a safetensors file: pip install safetensors") from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            blob: dict[str, Any] = dict(handle.metadata() or {})
            blob["model"] = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 - not a dict
    except Exception as exc:  # noqa: BLE001 - a bad header or truncated data is a damaged file
        raise BlindbenchError(f"cannot read {what} {path} ({type(exc).__name__})") from None
    if str(blob.get("step", "")).isdigit():
        blob["step"] = int(blob["step"])
    return blob


def hardware() -> dict[str, Any]:
    """What a training session ran on: device name, torch threads, CPU model."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        cpu = f"{names[0]} ({len(names)} logical CPUs)" if names else cpu
    except OSError:
        pass
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and torch.cuda.is_initialized() else "cpu"
    return {"device": device, "threads": torch.get_num_threads(), "cpu": cpu}


def checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """The checkpoint a path names: the file itself, or a run folder's ``checkpoints/last.pt``."""
    path = Path(path)
    return path / "checkpoints" / "last.pt" if path.is_dir() else path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``; a missing or unreadable file is a one-line error."""
    path = checkpoint_file(path)
    if not path.is_file():
        raise BlindbenchError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        # not torch's first line: for a corrupt file it advises weights_only=False, which is wrong and unsafe here
        raise BlindbenchError(f"cannot read checkpoint {path}: not a torch checkpoint of tensors, or damaged "
                              f"({type(exc).__name__})") from None  # fmt: skip
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise BlindbenchError(f"{path} is not a blindbench training checkpoint")
    return state


def retired_keys(module: nn.Module, weights: Any) -> list[str]:
    """Names in ``weights`` under the module's ``retired_prefixes`` (parameters an earlier version built but no loss
    reached, such as the baselines' MPN fusion block) that the module no longer has."""
    prefixes = tuple(getattr(module, "retired_prefixes", ()))
    if not prefixes or not isinstance(weights, dict):
        return []
    present = module.state_dict().keys()
    return [k for k in weights if isinstance(k, str) and k.startswith(prefixes) and k not in present]


def load_weights(module: nn.Module, weights: Any, what: str) -> None:
    """``module.load_state_dict(weights)``; weights that do not fit are a one-line error starting with ``what``.

    Retired parameters (:func:`retired_keys`) in older weights are dropped first: unreachable, they never changed
    an output. Digests are checked on the weights as stored, before this.
    """
    if retired := set(retired_keys(module, weights)):
        weights = {k: v for k, v in weights.items() if k not in retired}
    try:
        module.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise BlindbenchError(f"{what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def retire_optimizer_state(state: dict, weights: dict, module: nn.Module) -> dict:
    """An Adam/SGD ``state_dict`` of an optimizer over all of an older ``module``'s parameters, with the entries of
    its retired parameters removed and the rest renumbered, so that it loads into an optimizer over the module now.

    ``weights`` is the older state dict: its keys, less the module's buffers, are the parameters in the order the
    optimizer numbered them (``named_parameters`` order). A state that does not match is returned unchanged (the
    optimizer's own load then reports it).
    """
    retired = set(retired_keys(module, weights))
    if not retired or len(state.get("param_groups", ())) != 1:
        return state
    buffers = {name for name, _ in module.named_buffers()}
    old_params = [k for k in weights if k not in buffers]
    group = state["param_groups"][0]
    if len(group["params"]) != len(old_params):
        return state
    kept = [i for i, name in enumerate(old_params) if name not in retired]
    renumber = {group["params"][i]: new for new, i in enumerate(kept)}
    return {
        "state": {renumber[i]: v for i, v in state["state"].items() if i in renumber},
        "param_groups": [{**group, "params": list(range(len(kept)))}],
    }


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def load_model_from_checkpoint(
    path: str | os.PathLike[str],
    name: str | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the trained model of a checkpoint (or a run folder's ``checkpoints/last.pt``) for eval/inpaint.

    Args:
        path: checkpoint file or run folder.
        name: expected model name; a checkpoint of another model is a one-line error.
        map_location: where the tensors are loaded.

    Returns:
        ``(model in eval mode, meta)`` with meta = the checkpoint without the state dicts (config, step, stage).
    """
    from blindbench.models import create_model

    state = load_checkpoint(path, map_location)
    stored = state.get("model_name")
    if name is not None and stored != name:
        raise BlindbenchError(f"checkpoint {path} holds model {stored!r}, not {name!r}")
    model = create_model(stored, state.get("preset", "paper"))
    check_weights(state["model"], state.get("model_sha256"), f"checkpoint {path}")
    load_weights(model, state["model"], f"checkpoint {path} does not fit model {stored!r}")
    meta = {k: v for k, v in state.items() if k not in ("model", "critics", "optimizers", "scalers", "rng")}
    return model.to(map_location).eval(), meta
