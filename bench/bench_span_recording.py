"""What recording one span costs: botfactory's tracer provider vs the OpenTelemetry SDK's, in the same run.

Each provider records the spans of a model call as the agent engine does — a current span with the GenAI
attributes, two attributes set after the call, a nested span — and hands each finished span to one span
processor that keeps nothing (as the span router does when no sink is registered). The figure is CPU time per
span (``process_time``, best of ``--repeat``); the baseline is the SDK's provider measured alternately in the same
run, so the ratio holds on a noisy machine where the absolute times drift.

    .venv/bin/python bench/bench_span_recording.py [--spans N] [--repeat R]
"""

from __future__ import annotations

import argparse
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from botfactory.observability.recorder import FastTracerProvider

ATTRIBUTES = {
    "gen_ai.conversation.id": "T1:C1:1700000000.000100",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "small",
    "botfactory.bot": "support",
    "botfactory.user": "slack:T1:U2",
}


class _Discard(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        """Keep nothing."""


def _record(tracer: trace.Tracer, pairs: int) -> None:
    for _ in range(pairs):
        with tracer.start_as_current_span("invoke_agent support", attributes=ATTRIBUTES) as agent:
            agent.set_attribute("gen_ai.usage.input_tokens", 812)
            agent.set_attribute("gen_ai.response.finish_reasons", ["stop"])
            with tracer.start_as_current_span("chat small", kind=trace.SpanKind.CLIENT, attributes=ATTRIBUTES):
                pass


def _us_per_span(provider: TracerProvider | FastTracerProvider, spans: int) -> float:
    provider.add_span_processor(_Discard())
    tracer = provider.get_tracer("botfactory.bench")
    _record(tracer, 200)  # warm up
    started = time.process_time()
    _record(tracer, spans // 2)
    return (time.process_time() - started) / spans * 1e6


def main(spans: int, repeat: int) -> None:
    resource = Resource.create({"service.name": "bench"})
    best = {"sdk": float("inf"), "botfactory": float("inf")}
    for _ in range(repeat):
        best["sdk"] = min(best["sdk"], _us_per_span(TracerProvider(resource=resource), spans))
        best["botfactory"] = min(best["botfactory"], _us_per_span(FastTracerProvider(resource), spans))
    print(f"spans: {spans} per run, best of {repeat} runs per provider (CPU time)")
    print(f"{'tracer provider':<32} {'µs/span':>8} {'vs SDK':>7}")
    for name, label in (("sdk", "OpenTelemetry SDK (baseline)"), ("botfactory", "botfactory (recorder.py)")):
        print(f"{label:<32} {best[name]:>8.2f} {best[name] / best['sdk']:>7.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    main(args.spans, args.repeat)
