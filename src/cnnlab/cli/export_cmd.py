"""``cnnlab export RUN_DIR --format onnx``."""

from __future__ import annotations

from cnnlab.cli.common import print_json


def register(sub) -> None:
    p = sub.add_parser("export", help="export a trained run (ONNX), checked with onnxruntime")
    p.add_argument("run", help="run directory or checkpoint.safetensors")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--out", metavar="FILE", help="output file (default RUN_DIR/model.onnx)")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from cnnlab.export import export_onnx

    result = export_onnx(args.run, args.out, opset=args.opset)
    check = (
        f"verified with onnxruntime (max |diff| {result['max_abs_diff']:.1e})"
        if result.get("verified")
        else result.get("note", "not verified")
    )
    print(f"exported {result['path']}: {check}")
    if args.json:
        print_json(result)
    return 0
