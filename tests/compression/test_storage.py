"""The compressed file format: bit packing, encodings, architecture patches, damage."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.compression.arch import ArchitectureError, apply_patches, architecture_patches
from cnnlab.compression.channel_graph import prunable_groups, remove_channels
from cnnlab.compression.encoding import StorageError, decode, encode
from cnnlab.compression.lowrank import decompose_model
from cnnlab.compression.packing import pack_bits, pack_mask, unpack_bits, unpack_mask
from cnnlab.compression.state import CompressState
from cnnlab.compression.storage import load_compressed, save_compressed


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 8, 11])
def test_pack_bits_round_trip_and_size(bits):
    codes = torch.randint(0, 1 << bits, (37,), generator=torch.Generator().manual_seed(bits))
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(37 * bits / 8)
    assert torch.equal(unpack_bits(packed, bits, 37), codes)
    mask = codes % 2 == 1
    assert torch.equal(unpack_mask(pack_mask(mask), 37), mask)


def test_pack_bits_rejects_codes_out_of_range():
    with pytest.raises(ValueError, match="codes must lie in"):
        pack_bits(torch.tensor([0, 4]), 2)


def test_sparse_and_codebook_encodings_round_trip():
    w = torch.tensor([[0.0, 0.5, 0.0, -0.25], [0.5, 0.0, 0.0, 0.5]])
    for enc in ({"kind": "sparse"}, {"kind": "codebook", "bits": 2, "sparse": True},
                {"kind": "codebook", "bits": 2, "sparse": False}):  # fmt: skip
        tensors, meta = encode("w", w, enc)
        assert torch.equal(decode("w", tensors, meta), w)
    with pytest.raises(StorageError, match="distinct values do not fit a 1-bit codebook"):
        encode("w", w, {"kind": "codebook", "bits": 1, "sparse": False})


def test_structural_changes_rebuild_from_spec_and_patches(make_model, tmp_path):
    model, spec = make_model("vgg_small", size=12)
    decompose_model(model, energy=0.6, ratio=None, layers="linear")
    group = prunable_groups(model, (1, 12, 12))[0]
    remove_channels(model, group, torch.arange(0, 32, 2))
    patches = architecture_patches(make_model("vgg_small", size=12)[0], model)
    assert {p["path"] for p in patches} >= {"features.0.conv", "features.0.bn", "classifier.fc1"}
    path = tmp_path / "m.safetensors"
    save_compressed(path, CompressState(model, spec).finalized(), spec=spec)
    loaded, meta = load_compressed(path)
    x = torch.randn(2, 1, 12, 12)
    assert torch.equal(loaded(x), model(x))
    rebuilt = apply_patches(make_model("vgg_small", size=12)[0], meta["patches"])
    assert [type(m) for m in rebuilt.modules()] == [type(m) for m in model.modules()]


def test_unknown_module_types_are_refused(make_model):
    model, _ = make_model("cnn1", size=8)
    model.conv = torch.nn.Conv3d(1, 2, 1)
    with pytest.raises(ArchitectureError, match="cannot store a Conv3d"):
        architecture_patches(make_model("cnn1", size=8)[0], model)


def test_damaged_or_foreign_files_give_clear_errors(make_model, tmp_path):
    model, spec = make_model("cnn1", size=8)
    path = tmp_path / "m.safetensors"
    save_compressed(path, model, spec=spec)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="SHA-256"):
        load_compressed(path)
    with pytest.raises(StorageError, match="not found"):
        load_compressed(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"nonsense")
    with pytest.raises(StorageError, match="not a readable safetensors"):
        load_compressed(tmp_path / "junk.safetensors")
