"""The rqt perspective (config/edgent.perspective): qt_gui's format, our topics, real fields.

``rqt --perspective-file`` reads the file as qt_gui exports one: JSON, each
level ``{"keys": {...}, "groups": {...}}``, each value ``{"type": "repr",
"repr": "<Python literal>"}``; the plugin manager's ``running-plugins`` names
the plugin instances and each has a group ``plugin__<package>__<class>__<n>``
holding the plugin's own settings (``plugin``) and its dock widget's
(``dock_widget__<widget object name>``). rqt_plot plots a path
``/<topic>/<field>[/<field>...]`` only if the topic exists and the field is
a scalar (a number or a bool), and drops any other path silently, so every
path is checked here against the topics our nodes create (read from their
sources and the node table, the namespaces and remappings the launch files
and edgent-bringup use) and the fields of their message classes.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
from fnmatch import fnmatch
from functools import cache
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticArray

from edgent_ros.node_table import NODES
from edgent_ros_interfaces.msg import BandwidthEstimate, InferenceResult, Plan, Tensor

PACKAGE = Path(__file__).resolve().parents[1]
PERSPECTIVE = PACKAGE / 'config' / 'edgent.perspective'

# The object name each plugin's widget ends up with (the dock widget group is
# named after it): rqt_plot's PlotWidget takes its .ui file's DataPlotWidget.
WIDGET_NAMES = {'rqt_plot/Plot': 'DataPlotWidget',
                'rqt_robot_monitor/RobotMonitor': 'Robot Monitor'}
PLOT_KEYS = {'autoscroll', 'plot_type', 'topics', 'x_limits', 'y_limits'}
# rosidl's basic types (rqt_plot plots these; strings, sequences and arrays it does not).
SCALAR_TYPES = {'boolean', 'octet', 'char', 'float', 'double', 'long double', 'int8', 'uint8',
                'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64'}


def load() -> dict:
    return json.loads(PERSPECTIVE.read_text())


# How qt_gui writes a QByteArray (a window or splitter state, in a perspective that rqt
# itself exported): hex digits in a bytes literal, and the printable characters.
QBYTEARRAY = re.compile(r"QtCore\.QByteArray\(b'[0-9a-f]*'\)")


def values(group: dict) -> dict[str, object]:
    """A group's plain keys, each value as qt_gui restores it (the repr, evaluated)."""
    return {key: ast.literal_eval(value['repr']) for key, value in group['keys'].items()
            if value['type'] == 'repr'}


def plugin_manager() -> dict:
    return load()['groups']['pluginmanager']


def plot_settings() -> dict[str, dict[str, object]]:
    """Each rqt_plot instance's plugin settings, by instance group."""
    groups = plugin_manager()['groups']
    return {name: values(group['groups']['plugin']) for name, group in groups.items()
            if name.startswith('plugin__rqt_plot__Plot__')}


def plotted_paths() -> list[str]:
    return [path for settings in plot_settings().values() for path in settings['topics']]


# --- our topics: from the nodes' sources and the node table -------------------------------

def _message_class(module_tree: ast.Module, name: str) -> type:
    """The class a node module imported as ``name`` (from ... import name)."""
    for node in ast.walk(module_tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return getattr(importlib.import_module(node.module), alias.name)
    raise LookupError(f'{name} is not imported by name')


def _resolve(topic: str, namespace: str, remappings: dict[str, str]) -> str:
    topic = remappings.get(topic, topic)
    return topic if topic.startswith('/') else f'{namespace.rstrip("/")}/{topic}'


@cache
def our_topics() -> dict[str, dict[str, set[type]]]:
    """'publishers' and 'subscriptions': fully qualified topic -> message classes, for
    every node of the node table, as it runs with its namespace and fixed remappings."""
    found: dict[str, dict[str, set[type]]] = {'publishers': {}, 'subscriptions': {}}
    kinds = {'create_publisher': 'publishers', 'create_subscription': 'subscriptions'}
    for specs in NODES.values():
        for spec in specs:
            tree = ast.parse(Path(importlib.util.find_spec(spec.module).origin).read_text())
            for call in ast.walk(tree):
                if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr in kinds and len(call.args) >= 2
                        and isinstance(call.args[0], ast.Name)
                        and isinstance(call.args[1], ast.Constant)):
                    continue
                topic = _resolve(call.args[1].value, spec.namespace, dict(spec.remappings))
                table = found[kinds[call.func.attr]]
                table.setdefault(topic, set()).add(_message_class(tree, call.args[0].id))
    return found


def field_type(message_class: type, fields: list[str]) -> str:
    """The rosidl type of a (nested) field; KeyError names a field the message lacks."""
    for i, name in enumerate(fields):
        types = message_class.get_fields_and_field_types()
        if name not in types:
            raise KeyError(f'{message_class.__name__} has no field {name!r} '
                           f'(it has {", ".join(types)})')
        if i < len(fields) - 1:
            package, _, type_name = types[name].partition('/')
            if not type_name or '<' in types[name] or '[' in types[name]:
                raise KeyError(f'{message_class.__name__}.{name} is {types[name]}, '
                               f'it has no field {fields[i + 1]!r}')
            message_class = getattr(importlib.import_module(f'{package}.msg'), type_name)
    return types[name]


def path_problem(path: str) -> str | None:
    """Why rqt_plot would not plot ``path`` from our nodes (None: it would)."""
    publishers = our_topics()['publishers']
    every = publishers.keys() | our_topics()['subscriptions'].keys()
    # rqt_plot takes the first topic of the graph that is a prefix of the path.
    prefixes = [t for t in every if path.split('/')[:len(t.split('/'))] == t.split('/')]
    if len(prefixes) != 1:
        return (f'{path}: names {len(prefixes)} of our topics ({", ".join(sorted(prefixes))}), '
                f'not one (ours: {", ".join(sorted(every))})')
    topic = prefixes[0]
    if topic not in publishers:
        return f'{path}: none of our nodes publishes {topic}'
    fields = [f for f in path[len(topic):].split('/') if f]
    if not fields:
        return f'{path}: no field of {topic}'
    for message_class in publishers[topic]:
        try:
            kind = field_type(message_class, fields)
        except KeyError as exc:
            return f'{path}: {exc.args[0]}'
        if kind not in SCALAR_TYPES:
            return f'{path}: {"/".join(fields)} is {kind}, not a number or a bool'
    return None


# --- the tests ------------------------------------------------------------------------------

def test_the_file_is_in_the_format_qt_gui_exports() -> None:
    data = load()

    def check(group: dict, where: str) -> None:
        assert set(group) == {'keys', 'groups'}, where
        for key, value in group['keys'].items():
            if value['type'] == 'repr(QByteArray.hex)':
                assert QBYTEARRAY.fullmatch(value['repr(QByteArray.hex)']), f'{where}/{key}'
                continue
            assert value['type'] == 'repr' and set(value) == {'type', 'repr'}, f'{where}/{key}'
            ast.literal_eval(value['repr'])  # what qt_gui evals on import: a plain literal
        for name, sub in group['groups'].items():
            check(sub, f'{where}/{name}')

    check(data, '')
    assert set(data['groups']) <= {'pluginmanager', 'mainwindow'}


def test_the_plugin_groups_match_the_running_plugins() -> None:
    manager = plugin_manager()
    running = values(manager)['running-plugins']
    assert set(running) == set(WIDGET_NAMES), running
    expected = {f'plugin__{plugin.replace("/", "__")}__{n}'
                for plugin, serials in running.items() for n in serials}
    assert set(manager['groups']) == expected
    for plugin, serials in running.items():
        assert serials == list(range(1, len(serials) + 1)), plugin
        for n in serials:
            group = manager['groups'][f'plugin__{plugin.replace("/", "__")}__{n}']
            assert set(group['groups']) == {'plugin', f'dock_widget__{WIDGET_NAMES[plugin]}'}
            dock = values(group['groups'][f'dock_widget__{WIDGET_NAMES[plugin]}'])
            assert isinstance(dock['dock_widget_title'], str) and dock['dockable'] is True


def test_each_plot_has_rqt_plots_settings() -> None:
    plots = plot_settings()
    assert len(plots) >= 4
    for name, settings in plots.items():
        assert set(settings) == PLOT_KEYS, name
        assert settings['autoscroll'] is True
        assert settings['plot_type'] in (0, 1, 2)  # PyQtGraph, MatPlot, QwtPlot
        # A list of two or more: rqt_plot reads a lone string as one topic.
        assert isinstance(settings['topics'], list) and len(settings['topics']) >= 2, name
        for limits in (settings['x_limits'], settings['y_limits']):
            assert len(limits) == 2 and all(isinstance(x, float) for x in limits)
            assert limits[0] < limits[1]
    assert len(plotted_paths()) == len(set(plotted_paths()))


@pytest.mark.parametrize('path', plotted_paths())
def test_every_plotted_path_is_a_scalar_field_of_one_of_our_topics(path: str) -> None:
    assert path_problem(path) is None, path_problem(path)


@pytest.mark.parametrize('path, reason', [
    ('/device/result/latency_msec', "no field 'latency_msec'"),  # misspelt
    ('/device/results/latency_ms', 'not one'),  # no such topic
    ('/device/result/top_k_scores', 'sequence<float>, not a number'),
    ('/device/result/source_id', 'string, not a number'),
    ('/device/result/header', 'std_msgs/Header, not a number'),
    ('/device/result', 'no field'),
    ('/device/plan/latency_ms', "no field 'latency_ms'"),  # InferenceResult's, not Plan's
    ('/device/result/latency_ms/x', 'it has no field'),
    ('/device/result/top_k_scores/x', 'it has no field'),
    ('/device/result/header/stamp/sec', None),  # nested: a number (rqt_plot takes it)
])
def test_the_path_check_refuses_what_rqt_plot_would_not_plot(path: str,
                                                             reason: str | None) -> None:
    problem = path_problem(path)
    if reason is None:
        assert problem is None, problem
    else:
        assert problem is not None and reason in problem, problem


def test_the_topics_are_the_ones_the_nodes_run_with() -> None:
    publishers = our_topics()['publishers']
    assert publishers['/device/result'] == {InferenceResult}
    assert publishers['/edge/tensor'] == {Tensor}  # the device's, remapped to the edge's
    assert publishers['/device/plan'] == {Plan}
    assert publishers['/device/bandwidth'] == {BandwidthEstimate}
    # The robot monitor shows /diagnostics_agg, which an aggregator makes from these.
    assert publishers['/diagnostics'] == {DiagnosticArray}


def test_the_perspective_is_installed_with_the_package() -> None:
    """setup.py installs it to share/edgent_ros/config, where the README opens it."""
    tree = ast.parse((PACKAGE / 'setup.py').read_text())
    patterns = [
        call.args[0].value
        for entry in ast.walk(tree)
        if isinstance(entry, ast.Tuple) and len(entry.elts) == 2
        and ast.unparse(entry.elts[0]).rstrip('\'"').endswith('/config')
        for call in ast.walk(entry.elts[1])
        if isinstance(call, ast.Call) and getattr(call.func, 'id', '') == 'glob'
    ]
    assert patterns, 'no data_files entry for share/edgent_ros/config in setup.py'
    name = str(PERSPECTIVE.relative_to(PACKAGE))
    assert any(fnmatch(name, p) for p in patterns), f'setup.py installs {patterns}, not {name}'
