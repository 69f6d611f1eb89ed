"""ONNX export and ONNX Runtime sessions, shared by the image encoder and the server's scoring.

Both export a torch module whose first dimension is the batch, with the TorchScript exporter
(no onnxscript needed), and run it on the CPU without busy-waiting between calls.
"""

from __future__ import annotations

import io
import warnings

import torch


def export_onnx(module: torch.nn.Module, example: torch.Tensor, input_name: str, output_name: str):
    """The bytes of ``module`` exported to ONNX (opset 17) from ``example``, batch size dynamic."""
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter also writes to a file object
            dynamo=False,  # the TorchScript exporter needs no onnxscript
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            opset_version=17,
        )
    return buffer.getvalue()


def onnx_session(model: bytes | str, threads: int):
    """An ONNX Runtime CPU session of ``model`` (bytes or a path) on ``threads`` threads that do
    not spin between runs (the cores are shared with the rest of the process)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
