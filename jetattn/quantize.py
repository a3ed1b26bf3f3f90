"""Int8 and bfloat16 versions of a trained weaver model, and what they cost in accuracy.

    python -m jetattn.quantize CHECKPOINT --network networks/X.py --data-config Y.yaml \\
        [--network-option NAME VALUE ...] -o OUT.pt [--onnx OUT.onnx] [--eval FILES... --num-jets N] [--bf16]

- torch int8: ``torch.ao.quantization.quantize_dynamic`` replaces every ``nn.Linear`` (our attention's
  ``q_proj``, ``kv_proj`` and ``out_proj`` included) with an int8 Linear (weights quantized once, activations per
  call; CPU only). ``OUT.pt`` holds its state_dict and the recipe to rebuild it: :func:`load_int8`.
  weaver-core's own ParT cannot take this: its attention reads ``in_proj.weight`` as a tensor, which the
  quantized Linear no longer has, so it fails at the first call.
- ONNX int8: the float model exported as weaver exports it (``for_inference=True``, opset 17, the TorchScript
  exporter), then its MatMul/Gemm weights quantized by ``onnxruntime.quantization.quantize_dynamic`` (QInt8).
- ``--eval``: accuracy and AUC (first class against the second, or one-vs-rest macro) of float32, torch int8,
  ONNX float32 and ONNX int8 (and bfloat16 autocast with ``--bf16``) on jets read through weaver's dataset with
  the YAML, and their differences from float32 against the targets (accuracy within 0.002, AUC within 0.001).

Every model is built with ``for_inference=True`` (softmax outputs, fixed-shape pair embedding), as weaver does
for export; a checkpoint trained without it loads unchanged.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from jetattn.deps import ToolError, exit_if_missing
from jetattn.io import atomic_path, prepare_outputs, write_json
from jetattn.measure import autocast_inference
from jetattn.weaver import add_network_arguments, build_network, load_checkpoint, parse_options

INT8_FORMAT = "jetattn-int8-dynamic-v1"  # the key that marks a file written by save_int8
TARGETS = {"accuracy": 0.002, "auc": 0.001}  # largest |int8 - float32| accepted (issue 7)


def count_linears(model: nn.Module) -> int:
    return sum(type(m) is nn.Linear for m in model.modules())


def count_int8_linears(model: nn.Module) -> int:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    return sum(isinstance(m, DynamicInt8Linear) for m in model.modules())


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose every ``nn.Linear`` is a dynamically quantized int8 Linear (CPU inference)."""
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(model.cpu().eval(), {nn.Linear}, dtype=torch.qint8)


def serialized_bytes(model: nn.Module) -> int:
    """Size of ``torch.save(model.state_dict())``: what the weights take on disk."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def save_int8(path: Path, model: nn.Module, network: Path, data_config: Path, options: dict) -> None:
    """Write the int8 model's state_dict with what rebuilds it (:func:`load_int8`); atomically."""
    recipe = {
        "format": INT8_FORMAT,
        "network": str(Path(network).resolve()),
        "data_config": str(Path(data_config).resolve()),
        "network_options": options,
        "state_dict": model.state_dict(),
    }
    with atomic_path(path) as tmp:
        torch.save(recipe, tmp)


def load_int8(path: Path, network: Path | None = None, data_config: Path | None = None) -> nn.Module:
    """The int8 model saved by :func:`save_int8`, rebuilt from its network file and YAML (give others when the
    recorded paths moved) and loaded strictly. Nothing in the file is executed."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != INT8_FORMAT:
        raise ToolError(f"{path}: not an int8 model written by jetattn.quantize")
    model, _ = build_network(
        Path(network or saved["network"]), Path(data_config or saved["data_config"]), saved["network_options"]
    )
    int8 = quantize_int8(model)
    int8.load_state_dict(saved["state_dict"], strict=True)
    return int8


def trace_inputs(info: dict) -> tuple[torch.Tensor, ...]:
    """Inputs to trace with, as weaver's ``--export-onnx`` makes them: ones, with every dynamic axis of size 1
    made 2 so that the exporter does not bake it in."""
    inputs = []
    for name in info["input_names"]:
        shape = list(info["input_shapes"][name])
        for axis in info.get("dynamic_axes", {}).get(name, {}):
            shape[axis] = 2 if shape[axis] == 1 else shape[axis]
        inputs.append(torch.ones(shape))
    return tuple(inputs)


def export_onnx(model: nn.Module, info: dict, path: Path) -> None:
    """The float model to ONNX with weaver's settings (opset 17, TorchScript exporter, its names and axes)."""
    with atomic_path(path) as tmp:
        torch.onnx.export(
            model.cpu().eval(),
            trace_inputs(info),
            str(tmp),
            input_names=info["input_names"],
            output_names=info["output_names"],
            dynamic_axes=info["dynamic_axes"],
            opset_version=17,
            dynamo=False,
        )


def quantize_onnx(src: Path, dst: Path) -> dict[str, int]:
    """Quantize the weights of every MatMul/Gemm with a constant weight in ``src`` to int8 (activations per call);
    returns the count of each operator in the result."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with atomic_path(dst) as tmp:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    ops: dict[str, int] = {}
    for node in onnx.load(str(dst)).graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ops


def predict_torch(
    model: nn.Module, inputs: list[torch.Tensor], device: torch.device, bf16: bool = False, batch_size: int = 256
) -> np.ndarray:
    """Scores ``(jets, classes)`` of ``model`` on ``inputs`` (weaver's input order), in batches."""
    model = model.to(device).eval()
    context = autocast_inference(model, device) if bf16 else torch.inference_mode()
    scores = []
    with context:
        for start in range(0, len(inputs[0]), batch_size):
            scores.append(model(*(t[start : start + batch_size].to(device) for t in inputs)).float().cpu())
    return torch.cat(scores).numpy()


def predict_onnx(path: Path, names: list[str], inputs: list[torch.Tensor], batch_size: int = 256) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    scores = []
    for start in range(0, len(inputs[0]), batch_size):
        feed = {name: t[start : start + batch_size].numpy() for name, t in zip(names, inputs, strict=True)}
        scores.append(session.run(None, feed)[0])
    return np.concatenate(scores)


def compare(results: dict[str, dict], reference: str = "float32") -> dict[str, dict]:
    """Differences of each variant's accuracy and AUC from ``reference``, and whether the targets hold."""
    ref = results[reference]
    out = {}
    for name, result in results.items():
        if name == reference:
            continue
        delta = {f"delta_{k}": result[k] - ref[k] for k in TARGETS}
        delta["max_abs_score_diff"] = result["max_abs_score_diff"]
        delta["meets_target"] = all(abs(delta[f"delta_{k}"]) <= tol for k, tol in TARGETS.items())
        out[name] = delta
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jetattn.quantize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="float checkpoint (state_dict) of the network")
    add_network_arguments(parser)
    parser.add_argument("-o", "--output", type=Path, required=True, help="int8 model (.pt; see load_int8)")
    parser.add_argument("--onnx", type=Path, help="also write the int8 ONNX model here")
    parser.add_argument("--eval", nargs="+", type=Path, metavar="FILES", help="held-out ROOT files to evaluate on")
    parser.add_argument("--num-jets", type=int, default=10000, help="jets to evaluate (the first ones of FILES)")
    parser.add_argument("--bf16", action="store_true", help="also evaluate bfloat16 autocast inference")
    parser.add_argument("--device", default="cpu", help="device for float32 and bfloat16 (int8 runs on the CPU)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ToolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace) -> int:
    prepare_outputs({"-o": args.output, "--onnx": args.onnx, "--json": args.json})
    options = parse_options(args.network_option)
    if args.eval:
        missing = [f for f in args.eval if not f.is_file()]
        if missing:
            raise ToolError(f"{missing[0]}: no such file to evaluate on")
    model, info = build_network(args.network, args.data_config, options)
    load_checkpoint(model, args.checkpoint)
    int8 = quantize_int8(model)
    linears, converted = count_linears(model), count_int8_linears(int8)
    size_fp32, size_int8 = serialized_bytes(model), serialized_bytes(int8)
    print(
        f"int8: {converted} of {linears} nn.Linear layers quantized; weights {size_fp32 / 1e6:.3f} MB -> "
        f"{size_int8 / 1e6:.3f} MB ({size_int8 / size_fp32:.2f}x)"
    )
    save_int8(args.output, int8, args.network, args.data_config, options)
    print(f"int8 model: {args.output} (load with jetattn.quantize.load_int8)")
    result: dict = {
        "linear_layers": linears,
        "int8_linear_layers": converted,
        "bytes_float32": size_fp32,
        "bytes_int8": size_int8,
        "network": str(args.network),
        "data_config": str(args.data_config),
        "network_options": {k: repr(v) for k, v in options.items()},
    }

    with tempfile.TemporaryDirectory(prefix="jetattn-quantize-") as tmp:
        onnx_fp32, onnx_int8 = Path(tmp) / "fp32.onnx", args.onnx or Path(tmp) / "int8.onnx"
        if args.onnx or args.eval:
            export_onnx(model, info, onnx_fp32)
            ops = quantize_onnx(onnx_fp32, onnx_int8)
            result.update(
                onnx_bytes_float32=onnx_fp32.stat().st_size,
                onnx_bytes_int8=onnx_int8.stat().st_size,
                onnx_int8_ops={k: v for k, v in ops.items() if "Integer" in k or "Quantize" in k},
            )
            print(
                f"ONNX: {onnx_fp32.stat().st_size / 1e6:.3f} MB -> {onnx_int8.stat().st_size / 1e6:.3f} MB int8; "
                f"quantized operators {result['onnx_int8_ops']}"
            )
            if args.onnx:
                print(f"int8 ONNX model: {args.onnx}")
        if args.eval:
            result.update(evaluate(args, model, int8, info, onnx_fp32, onnx_int8))
    if args.json:
        write_json(args.json, result)
    return 0


def evaluate(
    args: argparse.Namespace, model: nn.Module, int8: nn.Module, info: dict, onnx_fp32: Path, onnx_int8: Path
) -> dict:
    """Scores of every variant on the ``--eval`` jets, their metrics, and the differences from float32."""
    from weaver.utils.data.config import DataConfig

    from jetattn.metrics import classifier_metrics
    from jetattn.weaver import load_jets

    classes = list(DataConfig.load(str(args.data_config), load_observers=False).label_value)
    batch, labels = load_jets(args.data_config, args.eval, args.num_jets)
    inputs = [batch[name].float() for name in info["input_names"]]
    device, cpu = torch.device(args.device), torch.device("cpu")
    variants = {
        "float32": lambda: predict_torch(model, inputs, device),
        "torch_int8": lambda: predict_torch(int8, inputs, cpu),
        "onnx_float32": lambda: predict_onnx(onnx_fp32, info["input_names"], inputs),
        "onnx_int8": lambda: predict_onnx(onnx_int8, info["input_names"], inputs),
    }
    if args.bf16:
        variants["bfloat16"] = lambda: predict_torch(model, inputs, device, bf16=True)
    results, reference = {}, None
    print(f"{len(labels)} jets from {len(args.eval)} file(s); float32 and bfloat16 on {device}, int8 on the CPU")
    print(f"{'variant':14s} {'accuracy':>9s} {'AUC':>8s} {'max|Δscore|':>12s} {'jets/s':>9s}")
    for name, predict in variants.items():
        start = time.perf_counter()
        scores = predict()
        rate = len(scores) / (time.perf_counter() - start)
        reference = scores if reference is None else reference
        metrics = classifier_metrics(scores, labels.numpy(), classes)
        results[name] = {**metrics, "max_abs_score_diff": float(np.abs(scores - reference).max()), "jets_per_s": rate}
        print(
            f"{name:14s} {metrics['accuracy']:9.4f} {metrics['auc']:8.4f} "
            f"{results[name]['max_abs_score_diff']:12.2e} {rate:9.0f}"
        )
    differences = compare(results)
    print(f"targets: |Δaccuracy| <= {TARGETS['accuracy']}, |ΔAUC| <= {TARGETS['auc']} against float32")
    if 1 / len(labels) > TARGETS["accuracy"]:
        print(f"  (with {len(labels)} jets one changed decision moves the accuracy by {1 / len(labels):.4f})")
    for name, delta in differences.items():
        verdict = "met" if delta["meets_target"] else "NOT met"
        print(f"  {name:14s} Δaccuracy {delta['delta_accuracy']:+.4f}  ΔAUC {delta['delta_auc']:+.4f}  {verdict}")
    return {
        "num_jets": len(labels),
        "auc_kind": results["float32"]["auc_kind"],
        "results": results,
        "differences": differences,
        "targets": TARGETS,
    }


if __name__ == "__main__":
    with exit_if_missing():  # the packages this imports on use
        sys.exit(main())
