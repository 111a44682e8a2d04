"""The per-tensor norms every layer-wise optimizer reads, on each way they are summed."""

from __future__ import annotations

import pytest
import torch

from optimizers.norms import stacked_norms, stacked_sq_norms


def _float64_sums(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([torch.view_as_real(t).double().square().sum() if t.is_complex()
                        else t.double().square().sum() for t in tensors])


def _tensors(dtype: torch.dtype) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    shapes = [(2_000_000,), (64, 3, 7, 7), (10,), (1,)]
    return [torch.randn(shape, generator=generator).to(dtype) * 3 + 1 for shape in shapes]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dot_sums_agree_with_a_float64_sum(dtype: torch.dtype) -> None:
    """The CPU's dot-product sums match a float64 sum of squares within float32's rounding of a
    long sum (2M elements), and exactly as float64 for float64 tensors."""
    tensors = _tensors(dtype)
    sums = stacked_sq_norms(tensors)
    assert sums.dtype == dtype
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(sums.double(), _float64_sums(tensors), rtol=tolerance, atol=0)
    torch.testing.assert_close(stacked_norms(tensors), sums.sqrt())


def test_a_strided_tensor_takes_the_norm_and_agrees_with_the_dot() -> None:
    """A strided tensor is summed by torch's norm instead of the dot; the two agree (so a transposed
    parameter's factor is the one its contiguous copy gets)."""
    tensors = _tensors(torch.float32)
    strided = [t.t() if t.dim() == 2 else t for t in [tensors[0].view(1000, 2000), *tensors[1:]]]
    assert not strided[0].is_contiguous()
    torch.testing.assert_close(stacked_sq_norms(strided), stacked_sq_norms(tensors), rtol=1e-4, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_tensors_are_summed_in_float32(dtype: torch.dtype) -> None:
    """fp16 squares overflow past 256: the sums are float32 and finite for values of a few hundred."""
    tensors = [torch.full((1000,), 300.0, dtype=dtype), torch.ones(3, dtype=dtype)]
    sums = stacked_sq_norms(tensors)
    assert sums.dtype == torch.float32
    torch.testing.assert_close(sums, torch.tensor([1000 * 300.0**2, 3.0]), rtol=1e-2, atol=0)


def test_mixed_and_complex_tensors() -> None:
    """A float64 tensor among float32 ones makes the stack float64; a complex tensor's sum is
    Σ|tᵢ|² of its real view."""
    tensors = [torch.tensor([3.0, 4.0]), torch.tensor([1.0], dtype=torch.float64),
               torch.tensor([1 + 2j, 2 - 1j], dtype=torch.complex64)]
    sums = stacked_sq_norms(tensors)
    assert sums.dtype == torch.float64
    assert sums.tolist() == [25.0, 1.0, 10.0]


def test_no_tensors_give_an_empty_stack() -> None:
    """A model with no gradients this step (all frozen) has no norms, not an error."""
    assert stacked_sq_norms([]).shape == (0,)
    assert stacked_norms([]).tolist() == []
