import numpy as np
import pytest
import torch

from dfscan.train.models.frontend import (
    FFT_LOG_STD,
    FFTFrontend,
    SpatialFrontend,
    dft_bases,
    real_dft2_matmul,
    real_dft2_torch,
    signed_log1p,
)


@pytest.mark.parametrize("size", [8, 31, 64, 224])
def test_matmul_dft_equals_torch_fft(size):
    x = torch.rand(2, 3, size, size)
    cos, sin = dft_bases(size)
    got = real_dft2_matmul(x, cos, sin, cos, sin)
    want = real_dft2_torch(x)
    scale = want.abs().max()
    assert torch.allclose(got, want, atol=2e-6 * scale, rtol=0)


def test_shift_matches_numpy_fftshift():
    x = np.random.default_rng(0).random((9, 9))
    want = np.fft.fftshift(np.fft.fft2(x).real)
    cos, sin = dft_bases(9, dtype=torch.float64)
    got = real_dft2_matmul(torch.from_numpy(x), cos, sin, cos, sin)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-9)
    assert np.argmax(want) == np.ravel_multi_index((4, 4), (9, 9))  # DC in the centre


def test_fft_frontend_impls_agree_through_the_log():
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    front = FFTFrontend(64)
    a = front.use_impl("torch")(x)
    b = front.use_impl("matmul")(x)
    assert torch.allclose(a, b, atol=1e-4)


def test_uint8_and_unit_float_inputs_agree():
    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    for front in (FFTFrontend(32), SpatialFrontend((0.5,) * 3, (0.25,) * 3)):
        assert torch.allclose(front(x), front(x.float() / 255), atol=1e-5)


def test_fft_scaling_is_size_independent_on_photos():
    skimage_data = pytest.importorskip("skimage.data")
    photo = torch.from_numpy(skimage_data.astronaut()).permute(2, 0, 1)
    stds = [float(FFTFrontend(n)(photo[None, :, :n, :n]).std()) for n in (64, 128, 256)]
    assert all(0.7 < s < 1.4 for s in stds), stds  # unit-ish variance, not 25,000 at DC
    assert max(stds) / min(stds) < 1.3


def test_signed_log1p_is_odd_and_compresses():
    v = torch.tensor([-25000.0, -1.0, 0.0, 1.0, 25000.0])
    out = signed_log1p(v)
    assert torch.allclose(out, -out.flip(0))
    assert out.abs().max() < 11 and FFT_LOG_STD > 1


def test_matmul_needs_its_size():
    with pytest.raises(ValueError):
        FFTFrontend(32, impl="matmul")(torch.rand(1, 3, 16, 16))
