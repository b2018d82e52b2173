"""The branchy network: exits, splitting at every layer, metadata, training, files."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from rclpy.serialization import deserialize_message, serialize_message

from edgent_ros import datasets, tensor_codec
from edgent_ros import model as m
from edgent_ros.training import TrainConfig, joint_loss, seed_everything, train_steps
from edgent_ros_interfaces.msg import Tensor


@pytest.fixture(scope='module')
def trained() -> tuple[m.BranchyNetwork, m.ModelCard]:
    return m.load(m.resolve_model_path(m.DEFAULT_MODEL))


@pytest.fixture(scope='module')
def digits() -> datasets.Split:
    return datasets.load_digits_split(seed=0, train_copies=1)


def test_exits_have_the_papers_layer_counts() -> None:
    net = m.BranchyAlexNet()
    assert [net.num_layers(e) for e in range(1, 6)] == [12, 16, 19, 20, 22]
    for e in range(1, 6):
        kinds = {s.kind for s in net.stages(e)}
        assert kinds <= {'conv', 'relu', 'pool', 'lrn', 'dropout', 'linear', 'flatten'}, kinds


def test_pooling_reproduces_chainer_cover_all_shapes() -> None:
    net = m.BranchyAlexNet()
    pools = [i for i in m.layer_infos(net, 5) if i.type == 'pool']
    assert [p.out_shape[1:] for p in pools] == [[16, 16], [8, 8], [4, 4]]


def test_split_anywhere_through_a_tensor_message_equals_unsplit(
        trained: tuple[m.BranchyNetwork, m.ModelCard], digits: datasets.Split) -> None:
    net, _ = trained
    x = datasets.to_model_input(digits.test_images[:2])
    with torch.no_grad():
        for e in range(1, net.num_exits + 1):
            full = net.run(e, x)
            for p in range(net.num_layers(e) + 1):
                head = net.run(e, x, 0, p)
                msg = tensor_codec.to_msg(head.numpy())
                wire = deserialize_message(serialize_message(msg), Tensor)
                received = torch.from_numpy(tensor_codec.from_msg(wire, copy=True))
                out = net.run(e, received, p)
                torch.testing.assert_close(out, full, rtol=1e-5, atol=1e-6,
                                           msg=f'exit {e} split at {p}')


def test_metadata_sizes_equal_real_activation_sizes(
        trained: tuple[m.BranchyNetwork, m.ModelCard]) -> None:
    net, card = trained
    for e in range(1, net.num_exits + 1):
        infos = card.exit(e).layers
        assert len(infos) == net.num_layers(e)
        x = torch.rand(1, *card.input_shape)
        assert infos[0].in_bytes == x.numel() * x.element_size() == card.input_bytes
        with torch.no_grad():
            for info, stage in zip(infos, net.stages(e), strict=True):
                y = stage(x)
                assert info.type == ('fc' if stage.kind == 'linear' else stage.kind)
                assert info.in_bytes == x.numel() * x.element_size()
                assert info.out_bytes == y.numel() * y.element_size()
                assert info.out_shape == list(y.shape[1:])
                x = y
        assert infos[-1].out_shape == [card.num_classes]


def test_metadata_has_table_one_variables(trained: tuple[m.BranchyNetwork, m.ModelCard]) -> None:
    _, card = trained
    conv1 = card.exit(5).layers[0]
    assert (conv1.type, conv1.in_channels, conv1.filter_size, conv1.stride,
            conv1.num_filters) == ('conv', 3, 5, 1, 32)
    fc = next(li for li in card.exit(5).layers if li.type == 'fc')
    assert (fc.in_features, fc.out_features) == (1024, 256)


def test_exits_trade_accuracy_for_size(trained: tuple[m.BranchyNetwork, m.ModelCard]) -> None:
    _, card = trained
    acc = card.accuracies
    assert acc[-1] >= acc[0] + 0.03, acc
    assert all(0.1 < a <= 1 for a in acc)


def test_card_accuracy_matches_the_weights(trained: tuple[m.BranchyNetwork, m.ModelCard],
                                           digits: datasets.Split) -> None:
    from edgent_ros.training import evaluate
    net, card = trained
    assert card.dataset == 'digits'
    split = datasets.load_digits_split(seed=card.seed)
    measured = evaluate(net, split.test_images, split.test_labels)
    assert measured == pytest.approx(card.accuracies, abs=1e-9)


def test_a_few_training_steps_lower_the_loss(digits: datasets.Split) -> None:
    seed_everything(3)
    net = m.BranchyAlexNet()
    images, labels = digits.train_images[:64], digits.train_labels[:64]
    x = datasets.to_model_input(images)
    y = torch.from_numpy(labels)
    weights = TrainConfig().exit_weights
    with torch.no_grad():
        before = joint_loss(net(x), y, weights).item()
    train_steps(net, images, labels, TrainConfig(epochs=40, batch_size=16, lr=3e-3, seed=3),
                max_steps=80, progress=False)
    net.eval()
    with torch.no_grad():
        after = joint_loss(net(x), y, weights).item()
    assert after < 0.95 * before, (before, after)


def test_training_is_deterministic_for_a_seed(digits: datasets.Split) -> None:
    states = []
    for _ in range(2):
        seed_everything(5)
        net = m.BranchyAlexNet()
        train_steps(net, digits.train_images[:64], digits.train_labels[:64],
                    TrainConfig(epochs=1, batch_size=16, seed=5), max_steps=3, progress=False)
        states.append(net.state_dict())
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key


def copy_model(tmp_path: Path) -> Path:
    card = m.resolve_model_path(m.DEFAULT_MODEL)
    for suffix in ('.yaml', '.pt'):
        shutil.copy(card.with_suffix(suffix), tmp_path / card.with_suffix(suffix).name)
    return tmp_path / card.name


def test_truncated_weights_are_refused(tmp_path: Path) -> None:
    card = copy_model(tmp_path)
    weights = card.with_suffix('.pt')
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(m.ModelError, match=rf'{weights.name}: 1000 bytes, but .*truncated'):
        m.load(card)


def test_corrupt_weights_with_matching_card_are_refused(tmp_path: Path) -> None:
    card = copy_model(tmp_path)
    weights = card.with_suffix('.pt')
    weights.write_bytes(weights.read_bytes()[:1000])
    raw = yaml.safe_load(card.read_text())
    raw['weights_bytes'] = 1000
    raw['weights_sha256'] = m.sha256_file(weights)
    card.write_text(yaml.safe_dump(raw))
    with pytest.raises(m.ModelError, match='cannot be read as a state_dict'):
        m.load(card)


def test_pickled_code_in_weights_is_refused(tmp_path: Path) -> None:
    card = copy_model(tmp_path)
    weights = card.with_suffix('.pt')
    torch.save({'payload': Path('/etc/passwd')}, weights)  # a non-tensor object
    raw = yaml.safe_load(card.read_text())
    raw['weights_bytes'] = weights.stat().st_size
    raw['weights_sha256'] = m.sha256_file(weights)
    card.write_text(yaml.safe_dump(raw))
    with pytest.raises(m.ModelError, match='cannot be read as a state_dict'):
        m.load(card)


def test_mismatched_and_missing_files_are_refused(tmp_path: Path) -> None:
    card = copy_model(tmp_path)
    raw = yaml.safe_load(card.read_text())
    raw['num_classes'] = 7
    card.write_text(yaml.safe_dump(raw))
    with pytest.raises(m.ModelError, match='does not fit branchy_alexnet'):
        m.load(card)
    card.with_suffix('.pt').unlink()
    with pytest.raises(m.ModelError, match='weights file not found'):
        m.load(card)
    with pytest.raises(m.ModelError, match='no such model'):
        m.resolve_model_path(tmp_path / 'nonexistent')
    card.write_text('exits: [1, 2')
    with pytest.raises(m.ModelError, match='not valid YAML'):
        m.load(card)


def test_cifar10_needs_a_local_directory(tmp_path: Path) -> None:
    with pytest.raises(datasets.DatasetError, match='--data-dir'):
        datasets.load_split('cifar10')
    with pytest.raises(datasets.DatasetError, match='missing: data_batch_1'):
        datasets.load_split('cifar10', data_dir=tmp_path)


def test_cifar10_batches_are_read_without_running_code(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    names = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
    for name in names:
        batch = {b'data': rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                 b'labels': list(rng.integers(0, 10, 4))}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    split = datasets.load_split('cifar10', data_dir=tmp_path)
    assert split.train_images.shape == (20, 32, 32, 3)
    assert split.test_images.shape == (4, 32, 32, 3)
    # A batch that would call a function when unpickled is refused.
    (tmp_path / 'test_batch').write_bytes(pickle.dumps({b'data': shutil.rmtree}))
    with pytest.raises(datasets.DatasetError, match='refusing to load shutil'):
        datasets.load_split('cifar10', data_dir=tmp_path)
