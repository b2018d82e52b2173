"""edgent-train on any backbone (issue 16): ResNet-18 and MobileNetV3-Small with
exits, a frozen pretrained backbone, local backbone weights, image folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgent_ros import datasets, inference
from edgent_ros import model as m
from edgent_ros.training import TrainConfig, main, model_input, seed_everything, train_steps


@pytest.fixture(scope='module')
def digits() -> datasets.Split:
    return datasets.load_digits_split(seed=0, train_copies=1)


@pytest.mark.parametrize('arch', ['resnet18', 'mobilenet_v3_small'])
def test_a_few_steps_lower_the_loss_of_a_backbone_with_exits(
        arch: str, digits: datasets.Split) -> None:
    seed_everything(1)
    net = m.BranchyNetwork(arch, 10, (3, 32, 32))
    assert net.num_exits == 4
    images, labels = digits.train_images[:32], digits.train_labels[:32]
    # One batch, seen again at every step: its loss falls steadily.
    history = train_steps(net, images, labels,
                          TrainConfig(epochs=10, batch_size=32, lr=1e-3, seed=1),
                          max_steps=10, progress=False)
    assert len(history) == 10
    assert history[-1] < 0.7 * history[0], history


def state_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_a_frozen_backbone_stays_as_loaded_and_the_heads_learn(
        tmp_path: Path, digits: datasets.Split) -> None:
    seed_everything(2)
    pretrained = m.BranchyNetwork('resnet18', 10, (3, 32, 32))
    path = tmp_path / 'backbone.pt'
    torch.save(pretrained.trunk.state_dict(), path)
    seed_everything(3)
    net = m.BranchyNetwork('resnet18', 10, (3, 32, 32))
    assert m.load_backbone_weights(net, path) == []
    trunk, heads = state_of(net.trunk), [state_of(b) for b in net.branches[:-1]]
    train_steps(net, digits.train_images[:32], digits.train_labels[:32],
                TrainConfig(epochs=1, batch_size=16, seed=3, freeze_backbone=True),
                max_steps=2, progress=False)
    after = net.trunk.state_dict()
    for key, tensor in trunk.items():  # parameters and batch norm statistics
        assert torch.equal(tensor, after[key]), key
    for e, (before, branch) in enumerate(zip(heads, net.branches[:-1], strict=True), start=1):
        changed = [k for k, v in branch.state_dict().items() if not torch.equal(v, before[k])]
        assert changed, f'exit {e} head did not learn'
    assert not any(p.requires_grad for p in net.trunk.parameters())


def test_a_frozen_backbone_trains_its_reinitialised_classifier(
        tmp_path: Path, digits: datasets.Split) -> None:
    seed_everything(4)
    imagenet = m.BranchyNetwork('resnet18', 1000, (3, 32, 32))
    path = tmp_path / 'resnet18_imagenet.pt'
    torch.save({'state_dict': imagenet.trunk.state_dict()}, path)  # a checkpoint
    net = m.BranchyNetwork('resnet18', 10, (3, 32, 32))
    assert m.load_backbone_weights(net, path) == ['fc.weight', 'fc.bias']
    for key, tensor in imagenet.trunk.state_dict().items():
        if not key.startswith('fc.'):
            assert torch.equal(net.trunk.state_dict()[key], tensor), key
    assert net.trunk.fc.weight.shape == (10, 512)
    trunk = state_of(net.trunk)
    train_steps(net, digits.train_images[:32], digits.train_labels[:32],
                TrainConfig(epochs=1, batch_size=16, seed=4, freeze_backbone=True,
                            train_in_backbone=('fc.weight', 'fc.bias')),
                max_steps=2, progress=False)
    after = net.trunk.state_dict()
    changed = {k for k, v in trunk.items() if not torch.equal(v, after[k])}
    assert changed == {'fc.weight', 'fc.bias'}


def test_a_backbone_of_another_architecture_is_refused(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / 'mobilenet.pt'
    torch.save(m.BranchyNetwork('mobilenet_v3_small', 10, (3, 32, 32)).trunk.state_dict(), path)
    net = m.BranchyNetwork('resnet18', 10, (3, 32, 32))
    with pytest.raises(m.ModelError, match=r"has no tensor 'conv1.weight'"):
        m.load_backbone_weights(net, path)
    # A ResNet-18 with a wrong-shaped tensor is refused by that tensor's name.
    state = net.trunk.state_dict()
    state['layer2.0.conv1.weight'] = torch.zeros(128, 64, 1, 1)
    torch.save(state, path)
    with pytest.raises(m.ModelError, match=r"'layer2.0.conv1.weight' has shape \[128, 64, 1, 1\]"):
        m.load_backbone_weights(net, path)
    # And the command line says so before it reads any data.
    assert main(['--arch', 'resnet18', '--input-size', '32', '--backbone-weights', str(path),
                 '--out-dir', str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('edgent-train: error: ') and 'layer2.0.conv1.weight' in err
    assert not (tmp_path / 'out').exists()


# --- image folders -------------------------------------------------------------------

def write_folder(root: Path, per_class: dict[str, int], seed: int = 0) -> None:
    """Class subdirectories of small random images of mixed sizes and formats."""
    rng = np.random.default_rng(seed)
    for k, (name, count) in enumerate(per_class.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            h, w = int(rng.integers(20, 50)), int(rng.integers(20, 50))
            image = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
            image[..., k % 3] += 150  # each class its own colour (BGR on disk)
            suffix = ('.png', '.jpg', '.bmp', '.jpeg')[i % 4]
            assert cv2.imwrite(str(root / name / f'{i:02d}{suffix}'), image)


def test_an_image_folder_is_read_resized_and_split_by_class(tmp_path: Path) -> None:
    write_folder(tmp_path, {'cat': 5, 'dog': 10})
    (tmp_path / 'dog' / 'notes.txt').write_text('not an image')
    split = datasets.load_image_folder(tmp_path, 24, seed=0)
    assert split.name == 'folder' and split.class_names == ('cat', 'dog')
    assert split.train_images.shape[1:] == (24, 24, 3) and split.train_images.dtype == np.uint8
    assert split.test_images.shape[1:] == (24, 24, 3)
    assert sorted(split.test_labels.tolist()) == [0, 1, 1]  # 20% of each class
    assert sorted(split.train_labels.tolist()) == [0] * 4 + [1] * 8
    # Read as RGB: the cats were written blue-heavy in BGR, so red-light in RGB.
    cats = split.train_images[split.train_labels == 0]
    assert cats[..., 2].mean() > cats[..., 0].mean() + 100
    again = datasets.load_image_folder(tmp_path, (24, 24), seed=0)
    assert np.array_equal(again.test_images, split.test_images)
    other = datasets.load_image_folder(tmp_path, 24, seed=1)
    assert not np.array_equal(other.test_images, split.test_images)


def test_train_and_val_subdirectories_are_the_split(tmp_path: Path) -> None:
    write_folder(tmp_path / 'train', {'a': 3, 'b': 3, 'c': 2})
    write_folder(tmp_path / 'val', {'a': 1, 'c': 2}, seed=1)
    split = datasets.load_split('folder', data_dir=tmp_path, size=16)
    assert split.class_names == ('a', 'b', 'c')
    assert split.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert split.test_labels.tolist() == [0, 2, 2]
    write_folder(tmp_path / 'val', {'z': 1}, seed=2)
    with pytest.raises(datasets.DatasetError, match=r"classes \['z'\] are not in"):
        datasets.load_split('folder', data_dir=tmp_path, size=16)


def test_bad_image_folders_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(datasets.DatasetError, match='not a directory'):
        datasets.load_image_folder(tmp_path / 'missing', 16)
    (tmp_path / 'readme.txt').write_text('no classes here')
    with pytest.raises(datasets.DatasetError, match='no class subdirectories'):
        datasets.load_image_folder(tmp_path, 16)
    write_folder(tmp_path, {'cat': 3, 'dog': 3})
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'x.txt').write_text('')
    with pytest.raises(datasets.DatasetError, match="class 'empty' holds no images"):
        datasets.load_image_folder(tmp_path, 16)
    (tmp_path / 'empty' / 'x.txt').unlink()
    (tmp_path / 'empty').rmdir()
    broken = tmp_path / 'dog' / 'broken.png'
    broken.write_bytes(b'\x89PNG not really')
    with pytest.raises(datasets.DatasetError, match=rf'{broken}: cannot be read as an image'):
        datasets.load_image_folder(tmp_path, 16)
    broken.write_bytes(b'')
    with pytest.raises(datasets.DatasetError, match=rf'{broken}: cannot be read as an image'):
        datasets.load_image_folder(tmp_path, 16)
    with pytest.raises(datasets.DatasetError, match='needs --data-dir'):
        datasets.load_split('folder', size=16)


def test_every_data_set_is_resized_to_the_input_size() -> None:
    split = datasets.load_split('digits', size=48)
    assert split.train_images.shape[1:] == (48, 48, 3)
    assert split.test_images.shape[1:] == (48, 48, 3)


# --- the command line ------------------------------------------------------------------

def test_the_command_line_trains_a_backbone_on_a_folder_end_to_end(tmp_path: Path) -> None:
    write_folder(tmp_path / 'data', {'cat': 6, 'dog': 6})
    out = tmp_path / 'models'
    assert main(['--arch', 'resnet18', '--input-size', '32', '--dataset', 'folder',
                 '--data-dir', str(tmp_path / 'data'), '--epochs', '1', '--batch-size', '4',
                 '--threads', '2', '--no-progress', '--out-dir', str(out)]) == 0
    net, card = m.load(out / 'resnet18_folder32.yaml')
    assert card.architecture == 'resnet18' and card.input_shape == [3, 32, 32]
    assert card.class_names == ['cat', 'dog'] and card.num_classes == 2
    assert card.mean == pytest.approx(m.IMAGENET_MEAN) and card.std == pytest.approx(m.IMAGENET_STD)
    assert len(card.accuracies) == net.num_exits == 4
    assert card.training['held_out_images'] == 2 and card.training['freeze_backbone'] is False
    # The link codecs were measured into the card on the same held-out images.
    assert card.codecs_measured_on['images'] == 2
    assert {c.codec for c in card.codecs} == {'pixels', 'jpeg90', 'jpeg75', 'jpeg50',
                                              'float16', 'int8', 'int8_channel'}
    # Training prepared images as the device node prepares a frame.
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    torch.testing.assert_close(model_input(net, frame[None], card.mean, card.std),
                               inference.preprocess(frame, card), rtol=0, atol=0)


def test_the_command_line_refuses_bad_settings(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(['--arch', 'resnet18', '--freeze-backbone'])
    assert exc.value.code == 2
    assert '--freeze-backbone needs --backbone-weights' in capsys.readouterr().err
    cases = [
        (['--arch', 'resnet18', '--input-size', '32', '--exits', '3,no_such_node'],
         "no stage ends at node 'no_such_node'"),
        (['--arch', 'resnet18', '--input-size', '32', '--exits', '6,3'], 'must increase'),
        (['--arch', 'resnet18', '--input-size', '32', '--exits', '3,,6'], 'comma-separated'),
        (['--arch', 'resnet18', '--input-size', '32', '--exit-weights', '1', '1'],
         '2 weights, resnet18 here has 4 exits'),
        (['--input-size', '64'], 'branchy_alexnet cannot take input [3, 64, 64]'),
        (['--dataset', 'folder', '--data-dir', str(tmp_path / 'nowhere')], 'not a directory'),
    ]
    for argv, message in cases:
        assert main([*argv, '--out-dir', str(tmp_path / 'out')]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith('edgent-train: error: ') and message in err, (argv, err)
    assert not (tmp_path / 'out').exists()


def test_exits_by_node_name_give_those_cuts(tmp_path: Path) -> None:
    net = m.BranchyNetwork('resnet18', 10, (3, 32, 32), exits=['layer1_1_relu_1', 8])
    assert net.branch_points == (4, 8, 13)
