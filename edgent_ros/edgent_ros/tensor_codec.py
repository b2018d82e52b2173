"""numpy <-> ``edgent_ros/msg/Tensor`` conversion, without per-element Python work.

Packing copies the array's bytes once into the message (a C-contiguous,
little-endian copy is made first only when the input is not already so);
unpacking is a zero-copy ``np.frombuffer`` view over the message's buffer.
The data type codes are those of NVIDIA Isaac ROS Tensor (1-10), plus 11 for
float16. This module imports the generated message class but never rclpy.
"""

from __future__ import annotations

import array as array_module
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgent_ros.codec_names import CODECS, RAW
from edgent_ros_interfaces.msg import Tensor

if TYPE_CHECKING:
    from edgent_ros import payload_codec

# Upper bounds on what a message may describe; a shape beyond them is refused
# before any memory is touched (a hostile or corrupt message cannot make us
# allocate or index absurdly).
MAX_RANK = 8
MAX_BYTES = 1 << 30

_CODE_TO_DTYPE: dict[int, np.dtype] = {
    Tensor.DATA_TYPE_INT8: np.dtype('<i1'),
    Tensor.DATA_TYPE_UINT8: np.dtype('<u1'),
    Tensor.DATA_TYPE_INT16: np.dtype('<i2'),
    Tensor.DATA_TYPE_UINT16: np.dtype('<u2'),
    Tensor.DATA_TYPE_INT32: np.dtype('<i4'),
    Tensor.DATA_TYPE_UINT32: np.dtype('<u4'),
    Tensor.DATA_TYPE_INT64: np.dtype('<i8'),
    Tensor.DATA_TYPE_UINT64: np.dtype('<u8'),
    Tensor.DATA_TYPE_FLOAT32: np.dtype('<f4'),
    Tensor.DATA_TYPE_FLOAT64: np.dtype('<f8'),
    Tensor.DATA_TYPE_FLOAT16: np.dtype('<f2'),
}
_KIND_SIZE_TO_CODE: dict[tuple[str, int], int] = {
    (dt.kind, dt.itemsize): code for code, dt in _CODE_TO_DTYPE.items()
}

SUPPORTED_DTYPES: tuple[np.dtype, ...] = tuple(_CODE_TO_DTYPE.values())


class TensorCodecError(ValueError):
    """A Tensor message or array that cannot be converted; the text says why."""


@dataclass(frozen=True)
class Quantization:
    """Affine quantization parameters: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int = 0


def dtype_code(dtype: np.dtype | type | str) -> int:
    """Return the Tensor.data_type code of a numpy dtype."""
    dt = np.dtype(dtype)
    try:
        return _KIND_SIZE_TO_CODE[(dt.kind, dt.itemsize)]
    except KeyError:
        supported = ', '.join(str(d) for d in SUPPORTED_DTYPES)
        raise TensorCodecError(
            f'dtype {dt} is not supported by Tensor (supported: {supported})') from None


def code_dtype(code: int) -> np.dtype:
    """Return the little-endian numpy dtype of a Tensor.data_type code."""
    try:
        return _CODE_TO_DTYPE[code]
    except KeyError:
        raise TensorCodecError(
            f'unknown Tensor data_type {code} (known: {sorted(_CODE_TO_DTYPE)})') from None


def c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Byte strides of a C-contiguous array of this shape."""
    strides = []
    step = itemsize
    for dim in reversed(shape):
        strides.append(step)
        step *= max(dim, 1)
    return tuple(reversed(strides))


def to_msg(array: np.ndarray, msg: Tensor | None = None, *, name: str = '',
           quantization: Quantization | None = None) -> Tensor:
    """Fill the tensor fields of ``msg`` (a new Tensor if None) from ``array``.

    Only name, shape, data_type, strides, quantization and data are set; the
    header, frame and plan fields are the caller's. Non-contiguous or
    big-endian input is copied to C order, little endian, first.
    """
    array = np.asarray(array)
    code = dtype_code(array.dtype)
    if array.ndim > MAX_RANK:
        raise TensorCodecError(f'rank {array.ndim} exceeds the maximum of {MAX_RANK}')
    if array.nbytes > MAX_BYTES:
        raise TensorCodecError(f'{array.nbytes} bytes exceed the maximum of {MAX_BYTES}')
    little = array.dtype.newbyteorder('<')
    if array.dtype != little or not array.flags.c_contiguous:
        array = np.ascontiguousarray(array, dtype=little)
    if msg is None:
        # With field checks on, the data setter keeps the array.array it is
        # given; with them off it copies it once more.
        msg = Tensor(check_fields=True)
    msg.name = name
    msg.codec = ''
    msg.shape = [int(d) for d in array.shape]
    msg.data_type = code
    msg.strides = list(c_strides(array.shape, array.itemsize))
    if quantization is None:
        msg.quantization_scale = 0.0
        msg.quantization_zero_point = 0
    else:
        msg.quantization_scale = float(quantization.scale)
        msg.quantization_zero_point = int(quantization.zero_point)
    # One copy of the bytes, straight from the array's buffer (the way
    # sensor_msgs_py.point_cloud2 fills PointCloud2.data).
    data = array_module.array('B')
    data.frombytes(memoryview(array.reshape(-1).view(np.uint8)))
    msg.data = data
    return msg


def quantization_problem(msg: Tensor, dt: np.dtype) -> None:
    """Refuse quantization fields that cannot mean anything: a scale that is
    not 0 (not quantized) nor a positive finite number, or a scale on a
    floating-point tensor (only integer data are quantized)."""
    scale = float(msg.quantization_scale)
    if scale == 0.0:
        return
    if not (math.isfinite(scale) and scale > 0):
        raise TensorCodecError(f'quantization_scale must be 0 (not quantized) or a positive '
                               f'finite number, got {scale}')
    if dt.kind == 'f':
        raise TensorCodecError(f'quantization_scale {scale} on a {dt} tensor: only integer '
                               'tensors are quantized')


def from_msg(msg: Tensor, *, copy: bool = False) -> np.ndarray:
    """Return the array a Tensor message carries.

    By default the result is a read-only view over the message's buffer (no
    copy); ``copy=True`` returns a writable array of its own. Raises
    TensorCodecError, naming the problem, for an unknown data type, an absurd
    shape, bad strides, meaningless quantization fields, or a data length that
    does not match shape and strides.
    """
    dt = code_dtype(msg.data_type)
    shape = tuple(int(d) for d in msg.shape)
    if len(shape) > MAX_RANK:
        raise TensorCodecError(f'rank {len(shape)} exceeds the maximum of {MAX_RANK}')
    count = math.prod(shape)
    if count * dt.itemsize > MAX_BYTES:
        raise TensorCodecError(
            f'shape {list(shape)} of {dt} describes {count * dt.itemsize} bytes, '
            f'over the maximum of {MAX_BYTES}')
    contiguous = c_strides(shape, dt.itemsize)
    strides = tuple(int(s) for s in msg.strides) or contiguous
    if len(strides) != len(shape):
        raise TensorCodecError(
            f'{len(strides)} strides for a shape of rank {len(shape)}')
    # A stride of a size-1 dimension never moves, so the length check below
    # cannot catch it; numpy still takes it as a C long.
    if any(s > MAX_BYTES for s in strides):
        raise TensorCodecError(f'strides {list(strides)}: over the maximum of {MAX_BYTES} bytes')
    quantization_problem(msg, dt)
    if count == 0:
        needed = 0
    else:
        if any(s < 0 or s % dt.itemsize for s in strides):
            raise TensorCodecError(
                f'strides {list(strides)} are not non-negative multiples of the '
                f'{dt} item size {dt.itemsize}')
        needed = sum((d - 1) * s for d, s in zip(shape, strides, strict=True)) + dt.itemsize
    data = msg.data
    nbytes = len(data)
    if nbytes != needed:
        raise TensorCodecError(
            f'data holds {nbytes} bytes but shape {list(shape)} of {dt} with strides '
            f'{list(strides)} needs {needed}')
    if count == 0:
        array = np.empty(shape, dtype=dt)
        return array
    flat = np.frombuffer(data, dtype=np.uint8)
    if strides == contiguous:
        array = flat.view(dt).reshape(shape)
    else:
        array = np.lib.stride_tricks.as_strided(
            flat.view(dt), shape=shape, strides=strides, writeable=False)
    if copy:
        return np.array(array, order='C')
    array.flags.writeable = False
    return array


def dequantize(msg: Tensor, array: np.ndarray | None = None) -> np.ndarray:
    """Return the tensor as float32, undoing the message's quantization if any."""
    if array is None:
        array = from_msg(msg)
    scale = msg.quantization_scale
    if scale == 0.0:
        return array.astype(np.float32, copy=False)
    return (array.astype(np.float32) - np.float32(msg.quantization_zero_point)) * np.float32(scale)


# --- coded payloads (edgent_ros.payload_codec) ----------------------------------------------
# payload_codec (OpenCV) is imported where a coded payload is handled: the
# planner and the bandwidth monitor, which only pack and read raw tensors,
# stay without OpenCV.
_CODEC_DTYPE = {'float16': Tensor.DATA_TYPE_FLOAT16, 'int8': Tensor.DATA_TYPE_INT8,
                'int8_channel': Tensor.DATA_TYPE_INT8, 'pixels': Tensor.DATA_TYPE_UINT8}
MAX_CHANNELS = 1 << 16


def coded_to_msg(enc: payload_codec.Encoded, msg: Tensor | None = None, *,
                 name: str = '') -> Tensor:
    """Fill the tensor fields of ``msg`` from a coded payload (a ``raw`` one as
    ``to_msg`` would). The header, frame and plan fields are the caller's."""
    from edgent_ros import payload_codec

    if enc.codec == payload_codec.RAW:
        array = np.frombuffer(enc.data, dtype='<f4').reshape(enc.shape)
        return to_msg(array, msg, name=name)
    if msg is None:
        msg = Tensor(check_fields=True)
    msg.name = name
    msg.codec = enc.codec
    msg.shape = [int(d) for d in enc.shape]
    msg.data_type = _CODEC_DTYPE.get(enc.codec, Tensor.DATA_TYPE_UINT8)
    jpeg = payload_codec.jpeg_quality(enc.codec) is not None
    msg.strides = [] if jpeg else list(c_strides(enc.shape, code_dtype(msg.data_type).itemsize))
    msg.quantization_scale = enc.scales[0] if enc.codec == payload_codec.INT8 else 0.0
    msg.quantization_zero_point = enc.zero_points[0] if enc.codec == payload_codec.INT8 else 0
    per_channel = enc.codec == payload_codec.INT8_CHANNEL
    msg.channel_scales = array_module.array('f', enc.scales if per_channel else ())
    msg.channel_zero_points = array_module.array('i', enc.zero_points if per_channel else ())
    data = array_module.array('B')
    data.frombytes(enc.data)
    msg.data = data
    return msg


def msg_codec(msg: Tensor) -> str:
    """The message's codec name (empty means raw)."""
    return msg.codec or RAW


def coded_from_msg(msg: Tensor, expected_shape: tuple[int, ...], *,
                   allowed: tuple[str, ...] = CODECS) -> np.ndarray:
    """Decode a coded Tensor (codec not raw) to what the receiver expects,
    refusing (TensorCodecError) anything else: a codec not in ``allowed``, a
    data type that does not match the codec, quantisation fields on a codec
    that has none, or whatever ``payload_codec.decode`` refuses (sizes,
    scales, zero points, JPEG headers and bodies)."""
    from edgent_ros import payload_codec

    codec = msg_codec(msg)
    if codec == payload_codec.RAW:
        raise TensorCodecError('a raw tensor goes through from_msg')
    try:
        payload_codec.check_codec(codec, allowed)
    except payload_codec.CodecError as exc:
        raise TensorCodecError(str(exc)) from None
    want = _CODEC_DTYPE.get(codec, Tensor.DATA_TYPE_UINT8)
    if msg.data_type != want:
        raise TensorCodecError(f'codec {codec} carries data_type {want}, got {msg.data_type}')
    per_channel = codec == payload_codec.INT8_CHANNEL
    if len(msg.channel_scales) > MAX_CHANNELS or len(msg.channel_zero_points) > MAX_CHANNELS:
        raise TensorCodecError(f'more than {MAX_CHANNELS} channel scales or zero points')
    if not per_channel and (len(msg.channel_scales) or len(msg.channel_zero_points)):
        raise TensorCodecError(f'channel scales on codec {codec} (only int8_channel has them)')
    if codec != payload_codec.INT8 and (msg.quantization_scale != 0.0 or
                                        msg.quantization_zero_point != 0):
        raise TensorCodecError(f'quantization_scale/zero_point on codec {codec} (only int8 '
                               'has them)')
    if len(msg.shape) > MAX_RANK:
        raise TensorCodecError(f'rank {len(msg.shape)} exceeds the maximum of {MAX_RANK}')
    if codec == payload_codec.INT8:
        scales, zeros = (float(msg.quantization_scale),), (int(msg.quantization_zero_point),)
    elif per_channel:
        scales = tuple(float(s) for s in msg.channel_scales)
        zeros = tuple(int(z) for z in msg.channel_zero_points)
    else:
        scales, zeros = (), ()
    enc = payload_codec.Encoded(codec, memoryview(msg.data).tobytes() if len(msg.data) else b'',
                                tuple(int(d) for d in msg.shape), scales, zeros)
    try:
        return payload_codec.decode(enc, expected_shape, allowed=allowed)
    except payload_codec.CodecError as exc:
        raise TensorCodecError(str(exc)) from None
