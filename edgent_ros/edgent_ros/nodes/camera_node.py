"""camera_node: publishes camera frames as sensor_msgs/Image at a set rate.

``source``: ``digits`` or ``cifar10`` (the data set's held-out split,
replayed in order with its labels on ``labels``; set ``next_index`` at run
time to replay from a given frame, e.g. 0 to show a benchmark's every
condition the same frames), ``folder:<dir>`` (every
image file), ``video:<file>`` or ``camera:<index>`` (OpenCV VideoCapture).
Images go out on ``image`` with sensor-data QoS, in ``encoding`` (rgb8,
bgr8 or mono8). Data-set frames (32x32) are published at ``image_width`` x
``image_height`` when those are set (the launch files set 640x480 for a
model that takes more than 32x32 pixels), as a camera would give them;
folder, video and camera sources keep their own size.
"""

from __future__ import annotations

from sensor_msgs.msg import Image

from edgent_ros import image_codec
from edgent_ros.datasets import resize_rgb
from edgent_ros.frames import (
    FirstFrameGate,
    SourceError,
    capture_frames,
    dataset_frames,
    folder_frames,
)
from edgent_ros.nodes.params import ParamSchema, ParamSpec, Value
from edgent_ros.nodes.runner import GuardedNode, run_node
from edgent_ros.qos import IMAGE_QOS
from edgent_ros_interfaces.msg import FrameLabel

ENCODINGS = ('rgb8', 'bgr8', 'mono8')


PARAMS = ParamSchema(
    ParamSpec('source', 'digits',
              'digits | cifar10 | folder:<dir> | video:<file> | camera:<index>', read_only=True),
    ParamSpec('data_dir', '', 'CIFAR-10 batches directory (cifar10).', read_only=True),
    ParamSpec('seed', 0, 'Data-set split seed (as in training).', 0, 2**31 - 1, read_only=True),
    ParamSpec('rate_hz', 10.0, 'Frames per second.', 0.01, 1000.0, read_only=True),
    ParamSpec('count', 0, 'Frames to publish, then stop; 0 = all (forever with loop).', 0,
              10**9, read_only=True),
    ParamSpec('loop', True, 'Start again at the end of the source.', read_only=True),
    ParamSpec('image_width', 0, 'Width of data-set frames, px (0: the data set\'s own); '
              'folder, video and camera sources keep their size.', 0, 7680, read_only=True),
    ParamSpec('image_height', 0, 'Height of data-set frames, px (0: the data set\'s own).',
              0, 4320, read_only=True),
    ParamSpec('encoding', 'rgb8', 'Image encoding.', read_only=True, choices=ENCODINGS),
    ParamSpec('frame_id', 'camera', 'header.frame_id of images.', read_only=True),
    ParamSpec('wait_for_subscribers', False,
              'Hold the first frame until an image subscriber has matched, and 0.5 s more '
              'for it to match this camera in turn (for replays that must reach every frame '
              'to a consumer).', read_only=True),
    ParamSpec('next_index', 0, 'Index of the next frame of a data-set or folder source (set '
              'at run time to replay from there).', 0, 10**9),
)


class CameraNode(GuardedNode):

    def __init__(self, **kwargs: object) -> None:
        super().__init__('camera', **kwargs)
        p = PARAMS.attach(self, {'next_index': lambda i: setattr(self, 'index', int(i))},
                          check=self.check_changes)
        source, data_dir, seed, rate = p['source'], p['data_dir'], p['seed'], p['rate_hz']
        self.count, self.loop, self.encoding = p['count'], p['loop'], p['encoding']
        self.frame_id, self.wait_for_subscribers = p['frame_id'], p['wait_for_subscribers']
        self.index = p['next_index']
        self.size = (p['image_width'], p['image_height'])
        if (self.size[0] == 0) != (self.size[1] == 0):
            raise ValueError(f'image_width and image_height must be both 0 or both set, got '
                             f'{self.size[0]}x{self.size[1]}')
        self.class_names: tuple[str, ...] = ()
        self.frames = None
        self.stream = None
        self.target = ''
        self.finished = False
        self.resize = False
        if source in ('digits', 'cifar10'):
            self.frames, self.class_names = dataset_frames(source, seed, data_dir)
            self.resize = bool(self.size[0])  # each frame as it goes (360 VGA frames: 330 MB)
        elif source.startswith('folder:'):
            self.frames = folder_frames(source.split(':', 1)[1])
        elif source.startswith(('video:', 'camera:')):
            self.target = source.split(':', 1)[1]
            self.stream = capture_frames(self.target)
        else:
            raise SourceError(f'unknown source {source!r}: use digits, cifar10, '
                              'folder:<dir>, video:<file> or camera:<index>')
        self.sent = 0
        self.gate = FirstFrameGate()
        self.image_pub = self.create_publisher(Image, 'image', IMAGE_QOS)
        self.label_pub = self.create_publisher(FrameLabel, 'labels', 10)
        self.timer = self.create_timer(1.0 / rate, self.on_timer)
        size = f' at {self.size[0]}x{self.size[1]}' if self.resize else ''
        self.get_logger().info(f'publishing {source}{size} at {rate:g} Hz as {self.encoding}')

    def check_changes(self, changes: dict[str, Value]) -> str | None:
        if 'next_index' not in changes:
            return None
        if self.frames is None:
            return 'next_index applies to data-set and folder sources only'
        if not 0 <= int(changes['next_index']) < len(self.frames):
            return (f'next_index must be an integer in 0..{len(self.frames) - 1}, '
                    f'got {changes["next_index"]!r}')
        return None

    def next_frame(self) -> tuple | None:
        if self.frames is not None:
            if self.index >= len(self.frames):
                if not self.loop:
                    return None
                self.index = 0
            frame = self.frames[self.index]
            self.index += 1
            return frame
        frame = next(self.stream, None)
        if frame is None and self.loop and self.target and not self.target.isdigit():
            self.stream = capture_frames(self.target)
            frame = next(self.stream, None)
        return frame

    def on_timer(self) -> None:
        if self.wait_for_subscribers and self.sent == 0 and not self.gate.update(
                self.image_pub.get_subscription_count() > 0):
            return
        frame = None if self.done else self.next_frame()
        if frame is None:
            self.timer.cancel()
            self.finished = True
            return
        rgb, label = frame
        if self.resize:
            rgb = resize_rgb(rgb, (self.size[1], self.size[0]))
        msg = image_codec.from_rgb(rgb, self.encoding)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.frame_id
        # The frame's number and label go first, so they are there when the image is.
        name = self.class_names[label] if 0 <= label < len(self.class_names) else ''
        self.label_pub.publish(FrameLabel(header=msg.header, seq=self.sent + 1,
                                          label=max(label, -1), class_name=name))
        self.image_pub.publish(msg)
        self.sent += 1

    @property
    def done(self) -> bool:
        return self.finished or 0 < self.count <= self.sent


def main(args: list[str] | None = None) -> int:
    return run_node(CameraNode, args, refused=(SourceError, ValueError), until_done=True)


if __name__ == '__main__':
    raise SystemExit(main())
