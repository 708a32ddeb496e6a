"""Engines and their sidecars: ONNX export, TensorRT plans, AOTInductor packages.

    sidecar.py     NAME.yaml next to every engine, and the checks that refuse a wrong engine
    onnx.py        export_onnx: bands -> (score, amap), dynamic batch, fp32 or fp16, checked on ONNX Runtime
    tensorrt.py    build_plan: TensorRT 10.x / 11.x strongly typed plans from the ONNX
    inductor.py    build_pt2: AOTInductor packages from the torch model
    cli_export.py  `edgefreq export RUN --out NAME.onnx [--fp16] [--int8]`
    cli_build.py   `edgefreq build NAME.onnx --format plan|pt2`

INT8 (explicit Q/DQ) lives in edgefreq.export.int8; the backends that run these engines in
edgefreq.runtime.backends.
"""
