"""Engines and their sidecars: ONNX export, TensorRT plans, AOTInductor packages.

    sidecar.py     NAME.yaml next to every engine, and the checks that refuse a wrong engine
    onnx.py        export_onnx: bands -> (score, amap), dynamic batch, fp32 or fp16, checked on ONNX Runtime
    tensorrt.py    build_plan: TensorRT 10.x / 11.x strongly typed plans from the ONNX
    inductor.py    build_pt2: AOTInductor packages from the torch model
    variants.py    NAME.onnx / NAME.fp16.onnx / NAME.int8.onnx side by side, and the run an export came from
    calibration_images.py  the run's calibration images as band batches (export checks, INT8 ranges)

INT8 (explicit Q/DQ) lives in edgefreq.export.int8; the backends that run these engines in
edgefreq.runtime.backends; the `export` and `build` verbs are edgefreq/cli/export.py and build.py.
"""
