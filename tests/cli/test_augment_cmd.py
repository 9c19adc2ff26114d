"""``cnnlab augment``: the preview grid, the listing and clear errors (in-process)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from cnnlab.cli.augment_cmd import preview_grid
from cnnlab.cli.main import main
from cnnlab.data.augment import AUGMENTATIONS

PNG = b"\x89PNG\r\n\x1a\n"


def test_show_writes_a_png(tmp_path, capsys):
    out = tmp_path / "grid.png"
    argv = ["augment", "--show", "--dataset", "synthetic", "--out", str(out), "--n", "3",
            "--versions", "2", "--pipeline", "random_crop, hflip, rotate"]  # fmt: skip
    assert main(argv) == 0
    assert out.read_bytes().startswith(PNG)
    assert "3 images x 2 versions" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.size[0] > 100 and im.size[1] > 100


def test_grid_rows_start_with_the_original_and_follow_the_seed():
    grid, ds, aug = preview_grid(
        "synthetic", None, "[{name: hflip, p: 1}]", n=4, versions=2, seed=7
    )
    assert grid.shape == (4, 3, 1, 28, 28) and grid.dtype == torch.uint8
    pick = torch.randperm(len(ds.train_labels), generator=torch.Generator().manual_seed(7))[:4]
    assert torch.equal(grid[:, 0], ds.train_images[pick])
    # A certain flip, undone by the normaliser round trip up to one grey level.
    diff = grid[:, 1].int() - torch.flip(ds.train_images[pick], [3]).int()
    assert diff.abs().max() <= 1
    again, _, _ = preview_grid("synthetic", None, "[{name: hflip, p: 1}]", n=4, versions=2, seed=7)
    assert torch.equal(grid, again) and "hflip(p=1.0)" in repr(aug)


def test_colour_pipeline_on_an_rgb_folder(tmp_path):
    for name, colour in (("red", (200, 20, 20)), ("blue", (20, 20, 200))):
        (tmp_path / "pics" / name).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (10, 10), tuple(c + 5 * i for c in colour)).save(
                tmp_path / "pics" / name / f"{i}.png"
            )
    out = tmp_path / "colour.png"
    argv = ["augment", "--show", "--dataset", "image_folder", "--data-dir", str(tmp_path / "pics"),
            "--out", str(out), "--n", "2", "--pipeline", "fancy_pca, color_jitter_hsv"]  # fmt: skip
    assert main(argv) == 0 and out.read_bytes().startswith(PNG)


def test_list_names_every_augmentation(capsys):
    assert main(["augment", "--list"]) == 0
    out = capsys.readouterr().out
    for name in AUGMENTATIONS.names():
        assert name in out
    assert "train_images" not in out and "norm_mean" not in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pipeline", "hflp"], "Did you mean 'hflip'"),
        (["--pipeline", "fancy_pca"], "needs RGB images"),
        (["--pipeline", "[{name: rotate, angle: 5}]"], "has no option 'angle'"),
        (["--n", "0"], "--n and --versions must be >= 1"),
        (["--out", "/nonexistent-dir/x.png"], "does not exist"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent-dir"], "does not exist"),
    ],
)
def test_errors_are_one_clear_line(extra, message, capsys):
    assert main(["augment", "--show", "--dataset", "synthetic", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_show_or_list_is_required(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["augment"])
    assert exc.value.code == 2
