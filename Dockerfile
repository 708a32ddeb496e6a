# The CPU runtime: `edgefreq run` on ONNX Runtime with the line's sinks and the operator view.
#   docker build -t edgefreq .
#   docker run --rm -e EDGEFREQ_HTTP_TOKEN=$(openssl rand -hex 16) -p 127.0.0.1:8080:8080 edgefreq   # the demo line, page on :8080
#   docker run --rm --device /dev/video0 -v /srv/line:/data -e EDGEFREQ_HTTP_TOKEN=... -p 127.0.0.1:8080:8080 \
#       edgefreq run --engine /data/bottle.onnx --camera 0 --sink /data/decisions.jsonl \
#       --http 0.0.0.0:8080 --http-public --feedback /data/feedback
# Inside the container the server binds 0.0.0.0 (the port mapping decides who reaches it), which
# needs --http-public and the token; publish the port on 127.0.0.1 or behind a TLS proxy.
FROM python:3.11-slim-bookworm

RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/edgefreq
COPY pyproject.toml README.md ./
COPY edgefreq ./edgefreq
COPY kernels ./kernels
COPY export ./export
COPY calibration ./calibration
# torch first (the runtime imports it for the frame path), then the runtime extras only. The Linux
# torch wheel on PyPI brings CUDA libraries (GBs): pass your CPU-only wheel index, e.g.
#   docker build --build-arg TORCH_PIP_ARGS="--index-url URL_OF_A_CPU_WHEEL_INDEX" -t edgefreq .
ARG TORCH_PIP_ARGS=""
RUN pip install --no-cache-dir torch==2.13.0 $TORCH_PIP_ARGS \
    && pip install --no-cache-dir ".[onnx,line,web]"

RUN useradd --system --home /data --shell /usr/sbin/nologin edgefreq && mkdir -p /data && chown edgefreq /data
USER edgefreq
WORKDIR /data
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
ENTRYPOINT ["edgefreq"]
CMD ["run", "--rate", "30", "--max-frames", "0", "--http", "0.0.0.0:8080", "--http-public"]
