"""Run an ONNX model's graph with torch, on any torch device: how rembg's U²-Net models run on the GPU.

rembg runs its ONNX files with onnxruntime on the CPU. Its GPU builds are separate wheels for each CUDA
version, and there are none for Apple's MPS in the same form, while torch is already on the model's device
for every GPU we support. So the same ``u2net.onnx`` that rembg downloads is read here (protobuf's wire
format, read directly: the ``onnx`` package is not a dependency) and evaluated node by node with torch's
functional operators. Only the operators rembg's U²-Net graphs use are known; any other raises
``UnsupportedGraph`` when the file is read, so the caller can fall back to onnxruntime before any image
is touched.

The file is untrusted input like a checkpoint: nothing in it is executed or imported, only tensors and
operator names are read. Every field's wire type is checked before its value is used, every length against
the bytes left, every tensor's data against its shape, and every name a node reads against the values made
before it; so reading costs at most about the file's own size, and a damaged file raises
``DamagedModelFile`` (an ``UnsupportedGraph``) instead of a deep error or an allocation the file never holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# ONNX TensorProto data types and their numpy and torch types.
_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64}
_TORCH_DTYPES = {1: torch.float32, 6: torch.int32, 7: torch.int64, 9: torch.bool, 11: torch.float64}
# Protobuf's wire types: what follows a field's key.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
# Field numbers of the protobuf messages read here (onnx.proto).
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 1, 5, 11, 12
_NODE_INPUT, _NODE_OUTPUT, _NODE_OP, _NODE_ATTRIBUTE = 1, 2, 4, 5
_ATTR_NAME, _ATTR_FLOAT, _ATTR_INT, _ATTR_STRING, _ATTR_TENSOR, _ATTR_INTS = 1, 2, 3, 4, 5, 8
_TENSOR_DIMS, _TENSOR_TYPE, _TENSOR_FLOATS, _TENSOR_INT64S, _TENSOR_NAME, _TENSOR_RAW = 1, 2, 4, 7, 8, 9
_VALUE_INFO_NAME = 1


class UnsupportedGraph(ValueError):
    """The file is no ONNX model this reader can run: damaged, or using an operator it does not know."""


class DamagedModelFile(UnsupportedGraph):
    """The file breaks ONNX's format (truncated or damaged): no reader can run it, onnxruntime neither."""


@dataclass
class Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict = field(default_factory=dict)


@dataclass
class OnnxGraph:
    """The nodes in the file's (topological) order, the weights, and the graph's input and output names."""

    nodes: list[Node]
    weights: dict[str, torch.Tensor]
    inputs: list[str]
    outputs: list[str]

    def to(self, device: torch.device | str) -> OnnxGraph:
        """The weights moved to ``device``; int64 shape constants stay on the CPU, where shapes are worked."""
        weights = {
            name: value if value.dtype == torch.int64 else value.to(device)
            for name, value in self.weights.items()
        }
        return OnnxGraph(self.nodes, weights, self.inputs, self.outputs)

    def run(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """The graph's outputs for ``inputs`` (in the graph's input order, weights excluded)."""
        values = dict(self.weights)
        values.update(zip(self.inputs, inputs, strict=True))
        for node in self.nodes:
            arguments = [values[name] if name else None for name in node.inputs]
            results = _OPERATORS[node.op](node.attributes, *arguments)
            values.update(
                zip(node.outputs, results if isinstance(results, tuple) else (results,), strict=True)
            )
        return [values[name] for name in self.outputs]


def read_onnx(path: str | Path) -> OnnxGraph:
    """The graph of an ONNX file, weights on the CPU. Raises UnsupportedGraph for anything else, and its
    DamagedModelFile for a file that breaks the format."""
    try:
        model = memoryview(Path(path).read_bytes())
        graph = _only(model, _MODEL_GRAPH)
        weights = {}
        for tensor in _all(graph, _GRAPH_INITIALIZER):
            name, value = _tensor(tensor)
            weights[name] = value
        nodes = [_node(node) for node in _all(graph, _GRAPH_NODE)]
        names = [_text(_only(info, _VALUE_INFO_NAME)) for info in _all(graph, _GRAPH_INPUT)]
        outputs = [_text(_only(info, _VALUE_INFO_NAME)) for info in _all(graph, _GRAPH_OUTPUT)]
        _check_names(nodes, set(weights) | set(names), outputs)
    except UnsupportedGraph as error:
        raise type(error)(f"{path}: {error}") from error
    except MemoryError as error:  # the file's own size bounds what it costs: this is the machine's memory
        raise UnsupportedGraph(f"{path} needs more memory to read than is free") from error
    except (IndexError, KeyError, ValueError, UnicodeDecodeError) as error:
        raise DamagedModelFile(f"{path} is damaged: not an ONNX model as written ({error})") from error
    unknown = sorted({node.op for node in nodes} - set(_OPERATORS))
    if unknown:
        raise UnsupportedGraph(f"{path} uses operators this reader cannot run: {', '.join(unknown)}")
    inputs = [name for name in names if name not in weights]
    return OnnxGraph(nodes, weights, inputs, outputs)


def _check_names(nodes: list[Node], given: set[str], outputs: list[str]) -> None:
    """Every name a node reads, and every output, is a weight, an input or made by an earlier node (ONNX
    lists nodes in an order that runs)."""
    known = set(given)
    for node in nodes:
        missing = [name for name in node.inputs if name and name not in known]
        if missing:
            raise ValueError(f"a {node.op} node reads {missing[0]!r}, which nothing before it makes")
        known.update(node.outputs)
    missing = [name for name in outputs if name not in known]
    if missing:
        raise ValueError(f"the output {missing[0]!r} is made by no node")


# --- protobuf's wire format ---------------------------------------------------------------------------


def _fields(message: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value): an int for varints, the bytes for everything else."""
    position = 0
    while position < len(message):
        key, position = _varint(message, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, position = _varint(message, position)
        elif wire_type in (_I64, _I32, _LEN):
            size = 8 if wire_type == _I64 else 4
            if wire_type == _LEN:
                size, position = _varint(message, position)
            if size > len(message) - position:
                raise ValueError(f"field {number} runs past the end of its message")
            value, position = message[position : position + size], position + size
        else:
            raise ValueError(f"unknown wire type {wire_type}")
        yield number, wire_type, value


def _varint(message: memoryview, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = message[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, position
        if shift > 63:
            raise ValueError("a varint longer than 64 bits")


def _all(message: memoryview, number: int) -> list:
    """Every field ``number`` of ``message``: each length-delimited (a message, a text or packed values)."""
    return [value for _number, value in _typed_fields(message, {number: (_LEN,)})]


def _only(message: memoryview, number: int):
    values = _all(message, number)
    if len(values) != 1:
        raise ValueError(f"expected one field {number}, found {len(values)}")
    return values[0]


def _typed_fields(
    message: memoryview, wire_types: dict[int, tuple[int, ...]]
) -> Iterator[tuple[int, object]]:
    """(field number, value) of the fields ``wire_types`` names, each checked to come in a wire type it
    allows: a length where a number belongs would otherwise be read as a length, and the other way round."""
    for number, wire_type, value in _fields(message):
        if number in wire_types:
            if wire_type not in wire_types[number]:
                raise ValueError(f"field {number} has wire type {wire_type}, not {wire_types[number]}")
            yield number, value


def _text(value: memoryview) -> str:
    return bytes(value).decode("utf-8")


def _signed(value: int) -> int:
    """Varints hold negative int64 values in two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _ints(values: list) -> list[int]:
    """Repeated int64 fields come one varint each, or packed into one length-delimited field."""
    result = []
    for value in values:
        if isinstance(value, int):
            result.append(_signed(value))
        else:
            position = 0
            while position < len(value):
                number, position = _varint(value, position)
                result.append(_signed(number))
    return result


# The wire types each field read here may come in; repeated numbers come one by one or packed (_LEN).
_TENSOR_FIELDS = {
    _TENSOR_DIMS: (_VARINT, _LEN), _TENSOR_TYPE: (_VARINT,), _TENSOR_FLOATS: (_I32, _LEN),
    _TENSOR_INT64S: (_VARINT, _LEN), _TENSOR_NAME: (_LEN,), _TENSOR_RAW: (_LEN,),
}  # fmt: skip
_NODE_FIELDS = {_NODE_INPUT: (_LEN,), _NODE_OUTPUT: (_LEN,), _NODE_OP: (_LEN,), _NODE_ATTRIBUTE: (_LEN,)}
_ATTRIBUTE_FIELDS = {
    _ATTR_NAME: (_LEN,), _ATTR_FLOAT: (_I32,), _ATTR_INT: (_VARINT,), _ATTR_STRING: (_LEN,),
    _ATTR_TENSOR: (_LEN,), _ATTR_INTS: (_VARINT, _LEN),
}  # fmt: skip


def _tensor(message: memoryview) -> tuple[str, torch.Tensor]:
    parts: dict[int, list] = {}
    for number, value in _typed_fields(message, _TENSOR_FIELDS):
        parts.setdefault(number, []).append(value)
    name = _text(parts[_TENSOR_NAME][0]) if _TENSOR_NAME in parts else ""
    data_type = parts.get(_TENSOR_TYPE, [1])[0]
    if data_type not in _DTYPES:
        raise UnsupportedGraph(
            f"tensor {name!r} holds ONNX data type {data_type}, which this reader cannot run"
        )
    dtype = np.dtype(_DTYPES[data_type])
    shape = _ints(parts.get(_TENSOR_DIMS, []))
    if any(size < 0 for size in shape):
        raise ValueError(f"tensor {name!r} has the shape {shape}")
    count = math.prod(shape)
    if _TENSOR_RAW in parts:
        data = parts[_TENSOR_RAW][0]
        _check_count(name, len(data), count * dtype.itemsize, "bytes")
        array = np.frombuffer(bytes(data), dtype=dtype.newbyteorder("<"))
    elif _TENSOR_FLOATS in parts:
        data = b"".join(bytes(value) for value in parts[_TENSOR_FLOATS])
        _check_count(name, len(data), count * 4, "bytes of floats")
        array = np.frombuffer(data, "<f4")
    else:
        values = _ints(parts.get(_TENSOR_INT64S, []))
        _check_count(name, len(values), count, "integers")
        array = np.array(values, dtype=np.int64)
    return name, torch.from_numpy(array.astype(dtype).reshape(shape))


def _check_count(name: str, present: int, needed: int, what: str) -> None:
    if present != needed:
        raise ValueError(f"tensor {name!r} holds {present} {what} where its shape needs {needed}")


def _node(message: memoryview) -> Node:
    node = Node(op="", inputs=[], outputs=[])
    for number, value in _typed_fields(message, _NODE_FIELDS):
        if number == _NODE_INPUT:
            node.inputs.append(_text(value))
        elif number == _NODE_OUTPUT:
            node.outputs.append(_text(value))
        elif number == _NODE_OP:
            node.op = _text(value)
        else:
            name, attribute = _attribute(value)
            node.attributes[name] = attribute
    return node


def _attribute(message: memoryview):
    name, value, ints = "", None, []
    for number, field_value in _typed_fields(message, _ATTRIBUTE_FIELDS):
        if number == _ATTR_NAME:
            name = _text(field_value)
        elif number == _ATTR_FLOAT:
            value = float(np.frombuffer(bytes(field_value), "<f4")[0])
        elif number == _ATTR_INT:
            value = _signed(field_value)
        elif number == _ATTR_STRING:
            value = _text(field_value)
        elif number == _ATTR_TENSOR:
            value = _tensor(field_value)[1]
        else:
            ints.append(field_value)
    return name, _ints(ints) if ints else value


# --- the operators ---------------------------------------------------------------------------------------


def _symmetric_padding(pads: list[int]) -> list[int]:
    """ONNX pads are (begin…, end…); torch pads both ends alike, which is all these graphs use."""
    half = len(pads) // 2
    if pads[:half] != pads[half:]:
        raise UnsupportedGraph(f"asymmetric padding {pads}")
    return pads[:half]


def _conv(attributes, x, weight, bias=None):
    return F.conv2d(
        x,
        weight,
        bias,
        stride=attributes.get("strides", 1),
        padding=_symmetric_padding(attributes.get("pads", [0, 0, 0, 0])),
        dilation=attributes.get("dilations", 1),
        groups=attributes.get("group", 1),
    )


def _max_pool(attributes, x):
    return F.max_pool2d(
        x,
        attributes["kernel_shape"],
        stride=attributes.get("strides", attributes["kernel_shape"]),
        padding=_symmetric_padding(attributes.get("pads", [0, 0, 0, 0])),
        ceil_mode=bool(attributes.get("ceil_mode", 0)),
    )


def _resize(attributes, x, roi=None, scales=None, sizes=None):
    """Opset 11's Resize as PyTorch exported it: bilinear with half-pixel centres, to the given sizes."""
    if attributes.get("mode") != "linear" or attributes.get("coordinate_transformation_mode") not in (
        "pytorch_half_pixel",
        "half_pixel",
    ):
        raise UnsupportedGraph(f"Resize {attributes}")
    if sizes is not None and sizes.numel():
        size = [int(value) for value in sizes.tolist()[2:]]
    else:
        size = [
            int(np.floor(extent * scale))
            for extent, scale in zip(x.shape[2:], scales.tolist()[2:], strict=True)
        ]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _slice(attributes, data, starts, ends, axes=None, steps=None):
    index = [slice(None)] * data.dim()
    axes = axes.tolist() if axes is not None else range(len(starts))
    steps = steps.tolist() if steps is not None else [1] * len(starts)
    for axis, start, end, step in zip(axes, starts.tolist(), ends.tolist(), steps, strict=True):
        index[axis] = slice(start, end, step)
    return data[tuple(index)]


def _gather(attributes, data, index):
    axis = attributes.get("axis", 0)
    picked = torch.index_select(data, axis, index.reshape(-1))
    return picked.reshape((*data.shape[:axis], *index.shape, *data.shape[axis + 1 :]))


_OPERATORS = {
    "Add": lambda attributes, a, b: a + b,
    "Cast": lambda attributes, x: x.to(_TORCH_DTYPES[attributes["to"]]),
    "Concat": lambda attributes, *parts: torch.cat(parts, dim=attributes["axis"]),
    "Constant": lambda attributes: attributes["value"],
    "Conv": _conv,
    "Gather": _gather,
    "MaxPool": _max_pool,
    "Relu": lambda attributes, x: torch.relu(x),
    "Resize": _resize,
    "Shape": lambda attributes, x: torch.tensor(x.shape, dtype=torch.int64),
    "Sigmoid": lambda attributes, x: torch.sigmoid(x),
    "Slice": _slice,
    "Unsqueeze": lambda attributes, x: x.reshape(_unsqueezed_shape(x.shape, attributes["axes"])),
}


def _unsqueezed_shape(shape: torch.Size, axes: list[int]) -> list[int]:
    result = list(shape)
    for axis in sorted(axis % (len(shape) + len(axes)) for axis in axes):
        result.insert(axis, 1)
    return result
