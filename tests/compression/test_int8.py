"""int8 post-training quantisation (torch FX) and its storage."""

from __future__ import annotations

import torch

from cnnlab.compression.int8 import quantize_int8
from cnnlab.compression.measure import count_parameters
from cnnlab.compression.state import CompressState
from cnnlab.compression.storage import load_compressed, save_compressed


def test_int8_runs_close_to_fp32_and_reloads_exactly(make_model, tmp_path):
    model, spec = make_model("vgg_small", size=12)
    gen = torch.Generator().manual_seed(0)
    calib = [torch.randn(32, 1, 12, 12, generator=gen) for _ in range(4)]
    q = quantize_int8(model, calib)
    x = torch.randn(64, 1, 12, 12, generator=gen)
    with torch.inference_mode():
        ref, out = model(x), q(x)
    # Tolerance: int8 rounding of weights and activations; 10% of the fp32 logits' range,
    # and the same top-1 answer for at least 90% of the inputs.
    span = float(ref.max() - ref.min())
    assert float((out - ref).abs().max()) <= 0.1 * span
    assert float((out.argmax(1) == ref.argmax(1)).float().mean()) >= 0.9
    state = CompressState(model, spec, int8={"backend": "x86", "float_model": model})
    path = tmp_path / "q.safetensors"
    save_compressed(path, q, spec=spec, int8=state.int8)
    loaded, meta = load_compressed(path)
    assert meta["kind"] == "int8"
    with torch.inference_mode():
        assert torch.equal(loaded(x), out)
    params, nonzero = count_parameters(q)
    assert 0 < nonzero <= params <= sum(p.numel() for p in model.parameters())
    assert path.stat().st_size < 0.4 * sum(p.numel() for p in model.parameters()) * 4
