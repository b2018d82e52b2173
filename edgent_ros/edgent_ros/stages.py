"""Any PyTorch network as a chain of stages, cut only where one tensor crosses.

A network is traced with torch.fx on an example input; a cut after a node of
the traced graph is valid only where exactly one tensor computed before it
is used after it (DADS, Hu et al. 2019, on why a DAG can be split only
there): the layers inside a residual block, a concatenation or any other
branch stay together in one stage. Parameters and buffers (``get_attr``) do
not count: each stage keeps its own reference to them.

``split(model, example)`` returns the stages in order, each a callable
``torch.fx.GraphModule`` from the tensor that enters it to the tensor that
leaves it, with what the profiler and the planner need to know of it, read
off the traced graph: its kind, input and output shape and bytes, FLOPs and
parameters. Elementwise stages (batch norm, activations, dropout) are merged
into the stage before them by default: deployed, they run fused with it.

Pure: imports torch but neither rclpy nor torchvision.
"""

from __future__ import annotations

import contextlib
import io
import math
import operator
from dataclasses import dataclass, field

import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

# Module types that touch each element once, as the op type of a stage.
ELEMENTWISE_MODULES: dict[type[nn.Module], str] = {
    nn.ReLU: 'relu', nn.ReLU6: 'relu', nn.Hardswish: 'hardswish', nn.Hardsigmoid: 'hardsigmoid',
    nn.SiLU: 'silu', nn.Sigmoid: 'sigmoid', nn.GELU: 'gelu', nn.Tanh: 'tanh',
    nn.LeakyReLU: 'relu', nn.BatchNorm1d: 'batchnorm', nn.BatchNorm2d: 'batchnorm',
    nn.Dropout: 'dropout', nn.Identity: 'identity', nn.LocalResponseNorm: 'lrn',
}
ELEMENTWISE_FUNCTIONS = {
    torch.relu: 'relu', torch.nn.functional.relu: 'relu', torch.sigmoid: 'sigmoid',
    torch.nn.functional.hardswish: 'hardswish', torch.nn.functional.silu: 'silu',
    torch.nn.functional.dropout: 'dropout', torch.nn.functional.hardsigmoid: 'hardsigmoid',
}
ELEMENTWISE_KINDS = frozenset(ELEMENTWISE_MODULES.values()) | frozenset(
    ELEMENTWISE_FUNCTIONS.values())
BYTES_PER_ELEMENT = 4  # float32 activations


class StageError(ValueError):
    """A network that cannot be split into stages; the text says why."""


@dataclass
class Stage:
    """One stage: a callable from the tensor entering it to the one leaving it."""

    index: int
    name: str  # the traced nodes it runs, first..last
    kind: str  # its dominant op: conv, conv_dw, linear, pool, block, add, ...
    module: torch.fx.GraphModule
    in_shape: list[int]
    out_shape: list[int]
    flops: int
    params: int
    ops: list[str] = field(default_factory=list)  # every op's kind, in order

    @property
    def in_bytes(self) -> int:
        return math.prod(self.in_shape) * BYTES_PER_ELEMENT

    @property
    def out_bytes(self) -> int:
        return math.prod(self.out_shape) * BYTES_PER_ELEMENT

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def split(model: nn.Module, example: torch.Tensor, *,
          merge_elementwise: bool = True) -> list[Stage]:
    """The stages of ``model`` (traced with torch.fx on ``example``, batch 1),
    cut wherever exactly one tensor crosses. StageError if it does not trace
    or takes or returns anything but one tensor."""
    tracer = _PathTracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # torch.fx raises many kinds on untraceable code
        where = type(model).__name__
        if tracer.failed_in:
            path = tracer.failed_in
            where += f", in its module '{path}' ({type(model.get_submodule(path)).__name__})"
        raise StageError(f'{where} does not trace with torch.fx: {exc}') from exc
    gm = torch.fx.GraphModule(tracer.root, graph, type(model).__name__)
    nodes = list(gm.graph.nodes)
    inputs = [n for n in nodes if n.op == 'placeholder']
    outputs = [n for n in nodes if n.op == 'output']
    if len(inputs) != 1:
        raise StageError(f'{type(model).__name__} takes {len(inputs)} inputs; one tensor needed')
    if len(outputs) != 1 or not isinstance(outputs[0].args[0], torch.fx.Node):
        raise StageError(f'{type(model).__name__} must return one tensor')
    modes = [(mod, mod.training) for mod in model.modules()]
    model.eval()
    try:
        # ShapeProp prints the failing node's traceback itself; the error says enough.
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(example)
    except RuntimeError as exc:  # ShapeProp wraps the error of the node that failed
        raise RuntimeError(str(exc.__cause__ or exc).split('\n')[0]) from exc
    finally:  # each module's own mode back (train() would set them all alike)
        for mod, training in modes:
            mod.training = training
    body = [n for n in nodes if n.op not in ('placeholder', 'output', 'get_attr')]
    for n in body:
        meta = n.meta.get('tensor_meta')
        if meta is None or not hasattr(meta, 'shape'):
            raise StageError(f'node {n.name} ({n.op} {n.target}) does not give one tensor: a '
                             'stage boundary needs tensors')
    cuts = valid_cuts(gm.graph)
    bounds = [(start, end) for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True)
              if end > start]
    if merge_elementwise:
        bounds = _merge_elementwise(gm, body, bounds)
    return [_stage(gm, body[a:b], i) for i, (a, b) in enumerate(bounds)]


class _PathTracer(torch.fx.Tracer):
    """torch.fx's tracer, remembering the innermost module it was in when
    tracing failed (so the error can name it)."""

    def __init__(self) -> None:
        super().__init__()
        self.path: list[str] = []
        self.failed_in = ''

    def call_module(self, m: nn.Module, forward: object, args: tuple, kwargs: dict) -> object:
        name = self.path_of_module(m)
        self.path.append(name)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if not self.failed_in:
                self.failed_in = name
            raise
        finally:
            self.path.pop()


def valid_cuts(graph: torch.fx.Graph) -> list[int]:
    """Positions k (1 .. len(body) - 1) in the graph's computing nodes (``body``:
    no placeholder, output or get_attr) where a cut between body[k-1] and
    body[k] leaves exactly one tensor crossing, body[k-1]'s: nothing computed
    before it, and not the input, is read at or after k."""
    nodes = list(graph.nodes)
    body = [n for n in nodes if n.op not in ('placeholder', 'output', 'get_attr')]
    position = {n: i for i, n in enumerate(body)}
    end = len(body)

    def last_read(n: torch.fx.Node) -> int:
        return max((end if u.op == 'output' else position.get(u, -1) for u in n.users),
                   default=-1)

    last = [last_read(n) for n in body]
    input_last = max((last_read(n) for n in nodes if n.op == 'placeholder'), default=-1)
    cuts = []
    furthest = input_last  # the furthest read of anything computed before body[k-1]
    for k in range(1, end):
        if furthest < k and last[k - 1] >= k:
            cuts.append(k)
        furthest = max(furthest, last[k - 1])
    return cuts


def _stage(gm: torch.fx.GraphModule, part: list[torch.fx.Node], index: int) -> Stage:
    """A GraphModule running ``part`` (consecutive nodes of gm) from the one
    tensor entering it."""
    inside = set(part)
    entering = [a for n in part for a in n.all_input_nodes
                if a not in inside and a.op != 'get_attr']
    if len(set(entering)) != 1:
        raise StageError(f'stage {index} would take {len(set(entering))} tensors')
    source = entering[0]
    graph = torch.fx.Graph()
    env: dict[torch.fx.Node, torch.fx.Node] = {source: graph.placeholder('x')}
    for n in part:
        for a in n.all_input_nodes:
            if a.op == 'get_attr' and a not in env:
                env[a] = graph.node_copy(a, lambda v: env[v])
        env[n] = graph.node_copy(n, lambda v: env[v])
    graph.output(env[part[-1]])
    module = torch.fx.GraphModule(gm, graph, class_name=f'Stage{index}')
    ops = [_kind(gm, n) for n in part]
    return Stage(
        index=index, name=part[0].name if len(part) == 1 else f'{part[0].name}..{part[-1].name}',
        kind=_dominant(ops, part, gm), module=module,
        in_shape=list(source.meta['tensor_meta'].shape),
        out_shape=list(part[-1].meta['tensor_meta'].shape),
        flops=sum(_flops(gm, n) for n in part), params=_params(gm, part), ops=ops)


def _merge_elementwise(gm: torch.fx.GraphModule, body: list[torch.fx.Node],
                       bounds: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The stage bounds with each stage made only of elementwise ops folded
    into the stage before it."""
    merged: list[tuple[int, int]] = []
    for a, b in bounds:
        if merged and all(_kind(gm, n) in ELEMENTWISE_KINDS for n in body[a:b]):
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def _module(gm: torch.fx.GraphModule, n: torch.fx.Node) -> nn.Module | None:
    return gm.get_submodule(n.target) if n.op == 'call_module' else None


def _kind(gm: torch.fx.GraphModule, n: torch.fx.Node) -> str:
    """One node's op type, as the latency models group them."""
    m = _module(gm, n)
    if m is not None:
        if isinstance(m, nn.Conv2d):
            return 'conv_dw' if m.groups > 1 and m.groups == m.in_channels else \
                ('conv_grouped' if m.groups > 1 else 'conv')
        if isinstance(m, nn.Linear):
            return 'linear'
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            return 'pool'
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            return 'adaptive_pool'
        if isinstance(m, nn.Flatten):
            return 'flatten'
        for cls, kind in ELEMENTWISE_MODULES.items():
            if isinstance(m, cls):
                return kind
        return type(m).__name__.lower()
    if n.op == 'call_function':
        if n.target in ELEMENTWISE_FUNCTIONS:
            return ELEMENTWISE_FUNCTIONS[n.target]
        if n.target in (operator.add, torch.add, operator.iadd):
            return 'add'
        if n.target in (operator.mul, torch.mul, operator.imul):
            return 'mul'
        if n.target in (torch.cat, torch.concat):
            return 'concat'
        if n.target in (torch.flatten,):
            return 'flatten'
        if n.target is torch.nn.functional.adaptive_avg_pool2d:
            return 'adaptive_pool'
        return getattr(n.target, '__name__', str(n.target))
    if n.op == 'call_method':
        return {'flatten': 'flatten', 'view': 'flatten', 'reshape': 'flatten',
                'relu': 'relu', 'sigmoid': 'sigmoid', 'mean': 'adaptive_pool'}.get(
                    str(n.target), str(n.target))
    return n.op


def _dominant(ops: list[str], part: list[torch.fx.Node], gm: torch.fx.GraphModule) -> str:
    """A stage's kind: 'block' if it joins branches (add, mul or concat of two
    computed tensors: a residual or squeeze-excitation block, an inception
    module), else the op with the most FLOPs."""
    inside = set(part)
    for n, op in zip(part, ops, strict=True):
        if op in ('add', 'mul', 'concat'):
            computed = [a for a in n.all_input_nodes if a.op != 'get_attr']
            if len(computed) >= 2 and sum(a in inside for a in computed) >= 1:
                return 'block'
    heaviest = max(range(len(part)), key=lambda i: _flops(gm, part[i]))
    return ops[heaviest]


def _numel(n: torch.fx.Node) -> int:
    meta = n.meta.get('tensor_meta')
    return math.prod(meta.shape) if meta is not None and hasattr(meta, 'shape') else 0


def _flops(gm: torch.fx.GraphModule, n: torch.fx.Node) -> int:
    """Floating-point operations of one node (a multiply-add counts 2)."""
    out = _numel(n)
    m = _module(gm, n)
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        return 2 * out * (m.in_channels // m.groups) * kh * kw
    if isinstance(m, nn.Linear):
        return 2 * out * m.in_features
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k = m.kernel_size
        return out * (k * k if isinstance(k, int) else math.prod(k))
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return sum(_numel(a) for a in n.all_input_nodes)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return 2 * out
    return out  # elementwise, joins, reshapes: one op per element at most


def _params(gm: torch.fx.GraphModule, part: list[torch.fx.Node]) -> int:
    seen: set[int] = set()
    total = 0
    for n in part:
        tensors: list[torch.Tensor] = []
        m = _module(gm, n)
        if m is not None:
            tensors = list(m.parameters())
        for a in n.all_input_nodes:
            if a.op == 'get_attr':
                value = gm
                for attr in str(a.target).split('.'):
                    value = getattr(value, attr)
                if isinstance(value, torch.Tensor):
                    tensors.append(value)
        for t in tensors:
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel()
    return total
