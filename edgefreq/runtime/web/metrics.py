"""/metrics: the line in Prometheus' text format, built at scrape time from the snapshot.

A custom prometheus-client collector: nothing is counted on the line's thread for Prometheus
beyond LineState's own counters and buckets, and every scrape reads one consistent snapshot.

    edgefreq_frames_total{verdict}             decisions by verdict (OK, NOK)
    edgefreq_not_inspected_total               NOK decisions made without a score (fail-safe)
    edgefreq_frames_captured_total / _dropped_total / _lost_total   the capture's counters
    edgefreq_sink_sent_total{sink} / _failed_total / _dropped_total / _retries_total, edgefreq_sink_queued{sink}
    edgefreq_latency_seconds{stage}            histogram per stage (capture, preprocess, infer, decide, total)
    edgefreq_score_normalized                  histogram of the score over the calibrated range (1 = threshold)
    edgefreq_threshold, edgefreq_ready, edgefreq_last_decision_age_seconds, edgefreq_engine_info{engine,device,threshold_source}
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from edgefreq.runtime.web.status import LineStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class LineCollector:
    def __init__(self, line: LineStatus) -> None:
        self.line = line

    def collect(self):
        line = self.line
        snap = line.state.snapshot()
        sinks = line.sink_stats()
        frames = CounterMetricFamily("edgefreq_frames", "Decisions by verdict", labels=["verdict"])
        frames.add_metric(["OK"], snap.ok)
        frames.add_metric(["NOK"], snap.nok)
        yield frames
        yield CounterMetricFamily("edgefreq_not_inspected", "NOK decisions made without a score (fail-safe)", value=snap.not_inspected)
        capture = line.capture.stats() if line.capture is not None else None
        for name, what in (("captured", "Frames captured"), ("dropped", "Frames dropped by the capture ring (no decision)"),
                           ("lost", "Frames the source lost before capture")):
            yield CounterMetricFamily(f"edgefreq_frames_{name}", what, value=getattr(capture, name) if capture else 0)
        for key, what in (("sent", "Decisions a sink delivered"), ("failed", "Decisions a sink gave up on"),
                          ("dropped", "Decisions a sink dropped (queue full)"), ("retries", "Extra delivery attempts")):
            family = CounterMetricFamily(f"edgefreq_sink_{key}", what, labels=["sink"])
            for name, s in sinks.items():
                family.add_metric([name], s[key])
            yield family
        queued = GaugeMetricFamily("edgefreq_sink_queued", "Decisions waiting in a sink's queue", labels=["sink"])
        for name, s in sinks.items():
            queued.add_metric([name], s["queued"])
        yield queued
        latency = HistogramMetricFamily("edgefreq_latency_seconds", "Latency per stage", labels=["stage"])
        for stage, (buckets, total) in snap.latency_buckets.items():
            latency.add_metric([stage], buckets, total)
        yield latency
        score = HistogramMetricFamily("edgefreq_score_normalized", "Score over the calibrated normal range (1 = calibrated threshold)")
        buckets, total = snap.score_buckets
        score.add_metric([], buckets, total)
        yield score
        if line.inspector is not None:
            yield GaugeMetricFamily("edgefreq_threshold", "Raw-score threshold in use", value=line.inspector.threshold)
            info = GaugeMetricFamily("edgefreq_engine_info", "The engine in use", labels=["engine", "device", "threshold_source"])
            info.add_metric([line.inspector.engine, str(line.inspector.device), line.inspector.threshold_source], 1)
            yield info
        yield GaugeMetricFamily("edgefreq_ready", "1 when /readyz says ready", value=0 if line.readiness(snap, sinks) else 1)
        if snap.last_decision_age_s is not None:
            yield GaugeMetricFamily("edgefreq_last_decision_age_seconds", "Seconds since the last decision", value=snap.last_decision_age_s)


def registry(line: LineStatus) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(LineCollector(line))
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
