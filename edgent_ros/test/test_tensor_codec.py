"""numpy <-> Tensor conversion: every dtype, layouts, and refusal of bad messages."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rclpy.serialization import deserialize_message, serialize_message

from edgent_ros import tensor_codec as tc
from edgent_ros_interfaces.msg import Tensor

ALL_DTYPES = ['int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64',
              'float16', 'float32', 'float64']


def wire(msg: Tensor) -> Tensor:
    """The message as a subscriber gets it: serialized to CDR and back."""
    return deserialize_message(serialize_message(msg), Tensor)


@pytest.mark.parametrize('dtype', ALL_DTYPES)
def test_round_trip_every_dtype(dtype: str) -> None:
    rng = np.random.default_rng(1)
    array = (rng.standard_normal((2, 3, 5)) * 100).astype(dtype)
    msg = wire(tc.to_msg(array, name='x'))
    out = tc.from_msg(msg)
    assert out.dtype == np.dtype(dtype)
    assert out.shape == (2, 3, 5)
    assert out.tobytes() == array.tobytes()
    assert msg.name == 'x'
    assert msg.data_type == tc.dtype_code(dtype)
    assert list(msg.strides) == [x for x in array.strides]


def test_isaac_ros_data_type_codes() -> None:
    # Codes 1-10 follow Isaac ROS Tensor; float16 (11) is our extension.
    assert [tc.dtype_code(d) for d in ALL_DTYPES] == [1, 2, 3, 4, 5, 6, 7, 8, 11, 9, 10]


def test_non_contiguous_input_is_packed_in_c_order() -> None:
    base = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    for view in (base.transpose(2, 0, 1), base[:, ::2, 1::3], base[::-1]):
        assert not view.flags.c_contiguous
        msg = wire(tc.to_msg(view))
        out = tc.from_msg(msg)
        np.testing.assert_array_equal(out, view)
        assert list(msg.strides) == list(np.ascontiguousarray(view).strides)


def test_big_endian_input_is_sent_little_endian() -> None:
    array = np.arange(10, dtype='>i4')
    msg = tc.to_msg(array)
    assert bytes(msg.data) == np.arange(10, dtype='<i4').tobytes()
    np.testing.assert_array_equal(tc.from_msg(wire(msg)), array)


@pytest.mark.parametrize('shape', [(0,), (3, 0, 2), (1, 64, 0, 8)])
def test_zero_size(shape: tuple[int, ...]) -> None:
    array = np.zeros(shape, dtype=np.float32)
    msg = wire(tc.to_msg(array))
    assert len(msg.data) == 0
    out = tc.from_msg(msg)
    assert out.shape == shape and out.dtype == np.float32


def test_scalar() -> None:
    out = tc.from_msg(wire(tc.to_msg(np.float64(2.5))))
    assert out.shape == () and out == 2.5


def test_unpack_is_a_read_only_view_unless_copied() -> None:
    msg = tc.to_msg(np.ones((4, 4), np.float32))
    view = tc.from_msg(msg)
    assert not view.flags.writeable
    with pytest.raises(ValueError):
        view[0, 0] = 2
    own = tc.from_msg(msg, copy=True)
    own[0, 0] = 2
    assert tc.from_msg(msg)[0, 0] == 1


def test_custom_strides_are_honoured() -> None:
    # A column-major 3x4 int16 matrix described by strides, not reordered.
    fortran = np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4))
    msg = Tensor(shape=[3, 4], data_type=tc.dtype_code('int16'), strides=[2, 6])
    msg.data = fortran.tobytes(order='F')
    np.testing.assert_array_equal(tc.from_msg(msg), fortran)


def test_quantization_round_trip() -> None:
    real = np.linspace(-1, 1, 50, dtype=np.float32)
    scale, zero = 2 / 255, 128
    q = np.clip(np.round(real / scale) + zero, 0, 255).astype(np.uint8)
    msg = wire(tc.to_msg(q, quantization=tc.Quantization(scale, zero)))
    assert msg.quantization_zero_point == zero
    np.testing.assert_allclose(tc.dequantize(msg), real, atol=scale / 2 + 1e-6)
    plain = tc.to_msg(real)
    assert plain.quantization_scale == 0.0
    np.testing.assert_array_equal(tc.dequantize(plain), real)


def good_msg() -> Tensor:
    return tc.to_msg(np.arange(24, dtype=np.float32).reshape(2, 3, 4))


def test_data_length_not_matching_shape_is_refused() -> None:
    msg = good_msg()
    msg.data = bytes(len(msg.data) - 4)
    with pytest.raises(tc.TensorCodecError, match=r'data holds 92 bytes but shape \[2, 3, 4\]'):
        tc.from_msg(msg)
    msg.data = bytes(len(msg.data) + 8)
    with pytest.raises(tc.TensorCodecError, match='needs 96'):
        tc.from_msg(msg)


def test_shape_not_matching_data_is_refused() -> None:
    msg = good_msg()
    msg.shape = [2, 3, 5]
    msg.strides = []
    with pytest.raises(tc.TensorCodecError, match='needs 120'):
        tc.from_msg(msg)


def test_unknown_data_type_is_refused() -> None:
    msg = good_msg()
    msg.data_type = 42
    with pytest.raises(tc.TensorCodecError, match='unknown Tensor data_type 42'):
        tc.from_msg(msg)


@pytest.mark.parametrize('dtype', ['complex64', 'bool', 'object', 'U3'])
def test_unsupported_numpy_dtype_is_refused(dtype: str) -> None:
    with pytest.raises(tc.TensorCodecError, match='not supported'):
        tc.to_msg(np.zeros(3, dtype=dtype))


def test_bad_strides_are_refused() -> None:
    msg = good_msg()
    msg.strides = [48, 16]
    with pytest.raises(tc.TensorCodecError, match='2 strides for a shape of rank 3'):
        tc.from_msg(msg)
    msg.strides = [48, 16, 3]
    with pytest.raises(tc.TensorCodecError, match='multiples'):
        tc.from_msg(msg)


def test_absurd_shape_is_refused_without_allocating() -> None:
    msg = good_msg()
    msg.shape = [1 << 20, 1 << 20, 1 << 20]
    msg.strides = []
    with pytest.raises(tc.TensorCodecError, match='over the maximum'):
        tc.from_msg(msg)
    msg.shape = [1] * (tc.MAX_RANK + 1)
    with pytest.raises(tc.TensorCodecError, match='rank 9 exceeds'):
        tc.from_msg(msg)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(
    dtype=st.sampled_from([np.dtype(d) for d in ALL_DTYPES]),
    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6)))
def test_round_trip_property(array: np.ndarray) -> None:
    out = tc.from_msg(wire(tc.to_msg(array)))
    assert out.shape == array.shape and out.dtype == array.dtype
    assert out.tobytes() == array.tobytes()
