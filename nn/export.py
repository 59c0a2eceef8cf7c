"""ONNX export: an xpnet MLP as a plain ONNX graph that any ONNX runtime can run.

    uv run --extra onnx python -m nn.export model.safetensors model.onnx

The input is any model ``load_model`` takes (``.npz``, ``.safetensors``, a
Hub-style folder, ``hf://owner/name``). The graph, built with the ``onnx``
package's helper API, is the inference forward pass op for op:

    pixels (batch, 784) float32
      -> [MatMul W_i, Add b_i, Relu | LeakyRelu(0.01) | Sigmoid | Tanh] per hidden layer
      -> MatMul W, Add b -> Softmax(axis=-1)   (nothing for a linear output)
      -> probabilities (batch, classes)        (``outputs`` for a linear output)

Dropout is an identity at inference, so it does not appear.
"""

import sys
from pathlib import Path

import numpy as np

from backends import XpnetError

from .activations import LEAKY_SLOPE
from .files import atomic_write_bytes

# Opset 17 and IR version 8 are read by every onnxruntime since 1.12.
OPSET, IR_VERSION = 17, 8
INSTALL = "ONNX export needs the onnx package: uv sync --extra onnx (or pip install onnx)"
# activation name -> (ONNX op, attributes); None: nothing to do.
ONNX_OPS = {
    "relu": ("Relu", {}),
    "leaky_relu": ("LeakyRelu", {"alpha": LEAKY_SLOPE}),
    "sigmoid": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "linear": None,
    "softmax": ("Softmax", {"axis": -1}),
}


def require_onnx():
    try:
        import onnx
    except ImportError:
        raise XpnetError(INSTALL) from None
    return onnx


def check_extension(path, flag="output"):
    if Path(path).suffix.lower() != ".onnx":
        raise XpnetError(f"{flag} {path}: an ONNX file name must end in .onnx")


def to_onnx(model, params):
    """The ``onnx.ModelProto`` that computes ``model.predict(params, pixels)``."""
    onnx = require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    nodes, weights = [], []
    current = "pixels"
    last = len(params) - 1
    for i, layer in enumerate(params):
        for name in ("w", "b"):
            weights.append(numpy_helper.from_array(np.asarray(layer[name], np.float32), f"layers.{i}.{name}"))
        nodes.append(helper.make_node("MatMul", [current, f"layers.{i}.w"], [f"matmul_{i}"], name=f"dense_{i}_matmul"))
        nodes.append(helper.make_node("Add", [f"matmul_{i}", f"layers.{i}.b"], [f"z_{i}"], name=f"dense_{i}_add"))
        current = f"z_{i}"
        activation = model.output if i == last else model.activations[i]
        if activation not in ONNX_OPS:
            raise XpnetError(f"activation {activation!r} has no ONNX export yet")
        if ONNX_OPS[activation] is not None:
            op, attributes = ONNX_OPS[activation]
            nodes.append(helper.make_node(op, [current], [f"a_{i}"], name=f"{activation}_{i}", **attributes))
            current = f"a_{i}"
    output = "probabilities" if model.output == "softmax" else "outputs"
    nodes.append(helper.make_node("Identity", [current], [output], name="output"))
    graph = helper.make_graph(
        nodes,
        "xpnet_mlp",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", model.sizes[0]])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", model.sizes[-1]])],
        initializer=weights,
    )
    proto = helper.make_model(
        graph, producer_name="xpnet", opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string=f"xpnet MLP {'-'.join(map(str, model.sizes))}",
    )
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto)
    return proto


def export_onnx(path, model, params):
    """Write the ONNX graph of ``model`` to ``path`` atomically."""
    check_extension(path)
    atomic_write_bytes(path, to_onnx(model, params).SerializeToString())


def main(argv=None):
    from cli.flags import Parser  # the front doors' parser: only this entry point needs it

    from .serialize import load_model

    parser = Parser(prog="python -m nn.export", description="Export an xpnet model as an ONNX graph.")
    parser.add_argument("model", help="a .npz or .safetensors model, a Hub-style folder or hf://owner/name")
    parser.add_argument("output", help="the .onnx file to write")
    args = parser.parse_args(argv)
    try:
        check_extension(args.output)
        require_onnx()
        model, params = load_model(args.model)
        export_onnx(args.output, model, params)
    except XpnetError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: MLP {'-'.join(map(str, model.sizes))}, input pixels (batch, {model.sizes[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
