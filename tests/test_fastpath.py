"""blindbench.fastpath: the compiled CPU forward equals eager, and every case it does not cover falls back to eager."""

from __future__ import annotations

import pytest
import torch

from blindbench import fastpath
from blindbench.fastpath import FastModel, prepare_for_inference
from blindbench.inpainting import inpaint_tensor, size_multiple
from blindbench.models import create_model
from vcn.types import InpaintOutput

needs_compiler = pytest.mark.skipif(not fastpath.compiler_available(), reason="inductor needs a C++ compiler")


def _model(name: str = "vcn") -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, "tiny").eval()


def _image(batch: int, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class FakeCompile:
    """Stands in for ``torch.compile``: runs the module eagerly, records the batch sizes it is called with."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error, self.batches, self.options = error, [], None

    def __call__(self, module: torch.nn.Module, **kwargs: object):
        self.options = kwargs

        def run(image: torch.Tensor, mask: torch.Tensor | None = None, beta: float | None = None) -> InpaintOutput:
            self.batches.append(image.shape[0])
            if self.error is not None:
                raise self.error
            return module(image, mask=mask, beta=beta)

        return run


@needs_compiler
def test_compiled_vcn_equals_eager_blind_and_with_mask_and_beta() -> None:
    model = _model()
    fast = prepare_for_inference(model)
    x = _image(2)
    mask = (torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(2)) > 0.7).float()
    with torch.inference_mode():
        ref, out = model(x), fast(x)
        ref_guided, out_guided = model(x, mask=mask, beta=0.3), fast(x, mask=mask, beta=0.3)
        out_short = fast(x[:1])  # padded to the compiled batch of 2: no third compilation
    assert isinstance(out, InpaintOutput) and out.image.is_contiguous()
    torch.testing.assert_close(out.image, ref.image, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.mask_logits, ref.mask_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_guided.image, ref_guided.image, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out_guided.image, out.image, atol=1e-3)  # the mask and β did reach the graph
    torch.testing.assert_close(out_short.image, ref.image[:1], atol=1e-5, rtol=1e-5)
    assert out_short.image.shape == (1, 3, 32, 32)
    assert sorted(fast.compile_seconds) == [(2, 3, 32, 32, False, None), (2, 3, 32, 32, True, 0.3)]
    assert not fast.failures and "compiled" in fast.describe()


@needs_compiler
def test_compiled_baseline_equals_eager() -> None:
    model = _model("pc")
    fast = prepare_for_inference(model)
    x = _image(1)
    with torch.no_grad():
        ref, out = model(x), fast(x)
    torch.testing.assert_close(out.image, ref.image, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.mask_logits, ref.mask_logits, atol=1e-5, rtol=1e-5)


def test_short_batches_are_padded_to_a_compiled_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCompile()
    monkeypatch.setattr(torch, "compile", fake)
    model, x = _model(), _image(3)
    fast = prepare_for_inference(model)
    with torch.no_grad():
        fast(x)
        short = fast(x[:2])
        ref = model(x[:2])
    assert fake.batches == [3, 3]  # the batch of 2 ran as a batch of 3
    assert fake.options == {"dynamic": False, "options": {"freezing": True}}
    assert short.image.shape == (2, 3, 32, 32) and short.mask_logits.shape == (2, 1, 32, 32)
    torch.testing.assert_close(short.image, ref.image, atol=1e-6, rtol=1e-6)


def test_new_variants_beyond_the_limit_run_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCompile()
    monkeypatch.setattr(torch, "compile", fake)
    fast = prepare_for_inference(_model(), max_variants=1)
    with torch.no_grad():
        fast(_image(1))
        out = fast(_image(2))  # a larger batch: a new variant, over the limit
    assert fake.batches == [1] and out.image.shape[0] == 2
    with pytest.raises(ValueError, match="max_variants must be >= 1"):
        prepare_for_inference(_model(), max_variants=0)


def test_a_failed_compilation_warns_once_and_runs_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCompile(RuntimeError("backend exploded\nlong traceback"))
    monkeypatch.setattr(torch, "compile", fake)
    model, x = _model(), _image(1)
    fast = prepare_for_inference(model)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match=r"failed \(backend exploded\); running it eagerly"):
        out = fast(x)
    with torch.no_grad():
        again, ref = fast(x), model(x)
    assert fake.batches == [1]  # not tried again
    assert list(fast.failures.values()) == ["backend exploded"]
    assert torch.equal(out.image, ref.image) and torch.equal(again.image, ref.image)


def test_the_models_own_value_errors_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "compile", FakeCompile())
    fast = prepare_for_inference(_model())
    with torch.no_grad(), pytest.raises(ValueError, match="divisible by 4"):
        fast(_image(1, size=30))
    assert not fast.failures


@pytest.mark.parametrize("case", ["eager", "grad", "training", "no-compiler"])
def test_eager_cases_never_compile(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCompile()
    monkeypatch.setattr(torch, "compile", fake)
    if case == "no-compiler":
        monkeypatch.delenv("CXX", raising=False)
        monkeypatch.setattr(fastpath.shutil, "which", lambda name: None)
    model, x = _model(), _image(1)
    fast = prepare_for_inference(model, eager=case == "eager")
    if case == "training":
        fast.train()
    with torch.set_grad_enabled(case in ("grad", "training")):
        out = fast(x)
        ref = model(x)
    assert fake.batches == []
    assert torch.equal(out.image, ref.image)
    assert out.image.requires_grad == (case in ("grad", "training"))
    expected = {"eager": "eager requested", "no-compiler": "no C++ compiler"}.get(case, "")
    assert fast.eager_reason == expected
    assert fast.describe().startswith("eager" if expected else "compiled")


def test_inpaint_sees_the_wrapped_model(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeCompile()
    monkeypatch.setattr(torch, "compile", fake)
    model = _model("ca")
    fast = prepare_for_inference(model)
    assert isinstance(fast, FastModel) and fast.model is model
    assert size_multiple(fast) == size_multiple(model) == 8
    image = _image(1, size=44)
    restored, mask = inpaint_tensor(image, fast, tile=0)
    ref_restored, ref_mask = inpaint_tensor(image, model, tile=0)
    assert fake.batches == [1]  # inpaint ran the fast path, on the padded 48² piece
    torch.testing.assert_close(restored, ref_restored, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(mask, ref_mask, atol=1e-6, rtol=1e-6)
    assert not fast.training  # inpaint restored the mode it found


@pytest.mark.slow
@needs_compiler
def test_inference_benchmark_quick_run() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "inference.py"
    done = subprocess.run([sys.executable, str(script), "--quick", "--models", "vcn", "--routes", "compile"],
                          capture_output=True, text=True, timeout=900, check=True)  # fmt: skip
    rows = [line.split("|") for line in done.stdout.splitlines() if line.startswith("| vcn | 1 |")]
    assert [row[3].strip() for row in rows] == ["eager", "compile"]
    assert all(float(row[7]) <= 1e-4 for row in rows)  # the PSNR check the script also enforces
