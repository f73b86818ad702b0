"""The ONNX reader takes model files as untrusted input: a file of a few dozen bytes costs a few dozen bytes.

Each file here is written by hand in protobuf's wire format (onnx.proto's field numbers), as a damaged or
hostile file would be; a well-formed one is built the same way, so each case differs from it in one thing.
"""

import tracemalloc

import pytest
import torch

from triposr_blender.core import onnx_graph
from triposr_blender.core.onnx_graph import DamagedModelFile, UnsupportedGraph, read_onnx

VARINT, LEN = 0, 2


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # a negative int64 as protobuf writes it: two's complement, ten bytes
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, value: bytes | int, wire: int = LEN) -> bytes:
    if wire == VARINT:
        return varint(number << 3 | VARINT) + varint(value)
    return varint(number << 3 | LEN) + varint(len(value)) + value


def tensor(name=b"w", dims=(2,), raw=b"\x00" * 8, data_type=1) -> bytes:
    return (
        b"".join(field(1, size, VARINT) for size in dims)
        + field(2, data_type, VARINT)
        + field(8, name)
        + field(9, raw)
    )


def node(op=b"Relu", inputs=(b"x",), outputs=(b"y",)) -> bytes:
    return (
        b"".join(field(1, name) for name in inputs)
        + b"".join(field(2, name) for name in outputs)
        + field(4, op)
    )


def model(initializers=None, nodes=None, inputs=(b"x",), outputs=(b"y",)) -> bytes:
    """A graph y = Relu(x) with one weight, or these parts instead."""
    initializers = (tensor(),) if initializers is None else initializers
    nodes = (node(),) if nodes is None else nodes
    graph = (
        b"".join(field(1, item) for item in nodes)
        + b"".join(field(5, item) for item in initializers)
        + b"".join(field(11, field(1, name)) for name in inputs)
        + b"".join(field(12, field(1, name)) for name in outputs)
    )
    return field(7, graph)


def write(tmp_path, data: bytes):
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    return path


def test_a_well_formed_file_runs(tmp_path):
    graph = read_onnx(write(tmp_path, model()))
    assert graph.inputs == ["x"] and graph.outputs == ["y"]
    assert graph.run(torch.tensor([-1.0, 2.0]))[0].tolist() == [0.0, 2.0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # The initializer's name given as a varint of 572 million: once read as that many zero bytes.
        (model(initializers=(field(8, 572_000_000, VARINT) + field(9, b"\0" * 8),)), "wire type 0"),
        # Raw data given as a varint of 10¹²: once a MemoryError, reported as the mesh's out of memory.
        (model(initializers=(field(8, b"w") + field(9, 10**12, VARINT),)), "wire type 0"),
        (model(initializers=(tensor(dims=(2, 10**15)),)), "holds 8 bytes where its shape needs"),
        (model(initializers=(tensor(dims=(-2,)),)), r"the shape \[-2\]"),
        (model(outputs=(b"nowhere",)), "the output 'nowhere' is made by no node"),
        (model(nodes=(node(inputs=(b"missing",)),)), "reads 'missing', which nothing before it makes"),
        (field(7, b"") [:-1] + varint(7 << 3 | LEN) + varint(1_000_000), "runs past the end"),
        (model()[:-3], "runs past the end"),
    ],
    ids=["name as a varint", "raw data as a varint", "more values than data", "negative dimension",
         "output of no node", "input of no node", "length past the end", "truncated"],
)  # fmt: skip
def test_a_damaged_file_is_refused_for_what_it_is_at_the_cost_of_its_size(tmp_path, data, message):
    path = write(tmp_path, data)
    tracemalloc.start()
    with pytest.raises(DamagedModelFile, match=message):
        read_onnx(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000


def test_an_operator_it_does_not_know_is_unsupported_not_damaged(tmp_path):
    with pytest.raises(UnsupportedGraph, match="operators this reader cannot run: Softmax") as refused:
        read_onnx(write(tmp_path, model(nodes=(node(op=b"Softmax"),))))
    assert not isinstance(refused.value, DamagedModelFile)


def test_running_out_of_memory_while_reading_is_said_as_that_and_not_as_damage(tmp_path, monkeypatch):
    def no_memory(_message):
        raise MemoryError

    monkeypatch.setattr(onnx_graph, "_tensor", no_memory)
    with pytest.raises(UnsupportedGraph, match="needs more memory to read than is free") as refused:
        read_onnx(write(tmp_path, model()))
    assert not isinstance(refused.value, DamagedModelFile)
