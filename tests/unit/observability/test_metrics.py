"""The Prometheus series a platform exposes: what a finished turn, a model call and a tool call add up to."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from botfactory.observability import Metrics
from botfactory.observability.metrics import OTHER_LABEL


async def scrape(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    body, content_type = await metrics.exposition()
    assert content_type.startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_a_finished_turn_counts_its_status_latency_first_token_tokens_and_cost() -> None:
    metrics = Metrics()
    metrics.first_response(bot="support", seconds=0.8)
    metrics.model_call(
        bot="support", model="large", user_id="slack:T1:U1", input_tokens=120, output_tokens=30, cost=0.02
    )
    metrics.model_call(bot="support", model="small", user_id="slack:T1:U1", input_tokens=50, output_tokens=10, cost=0.0)
    metrics.turn_finished(bot="support", status="completed", latency_s=2.2)
    metrics.turn_finished(bot="support", status="failed", latency_s=40.0)

    samples = await scrape(metrics)

    assert value(samples, "botfactory_turns_total", bot="support", status="completed") == 1
    assert value(samples, "botfactory_turns_total", bot="support", status="failed") == 1
    assert value(samples, "botfactory_turn_latency_seconds_count", bot="support") == 2
    assert value(samples, "botfactory_turn_latency_seconds_sum", bot="support") == 42.2
    assert value(samples, "botfactory_turn_latency_seconds_bucket", bot="support", le="2.5") == 1
    assert value(samples, "botfactory_time_to_first_token_seconds_count", bot="support") == 1
    assert value(samples, "botfactory_time_to_first_token_seconds_bucket", bot="support", le="1.0") == 1
    assert value(samples, "botfactory_time_to_first_token_seconds_bucket", bot="support", le="0.5") == 0
    user = {"bot": "support", "user": "slack:T1:U1"}
    assert value(samples, "botfactory_model_tokens_total", model="large", direction="in", **user) == 120
    assert value(samples, "botfactory_model_tokens_total", model="large", direction="out", **user) == 30
    assert value(samples, "botfactory_model_cost_total", model="large", **user) == 0.02
    # a local model is free, but its tokens count
    assert value(samples, "botfactory_model_tokens_total", model="small", direction="in", **user) == 50
    assert value(samples, "botfactory_model_cost_total", model="small", **user) == 0.0


async def test_tool_calls_count_outcomes_errors_and_policy_denials() -> None:
    metrics = Metrics()
    metrics.tool_call(tool="read_ticket", outcome="ok", decision="allow")
    metrics.tool_call(tool="read_ticket", outcome="timeout", decision="allow")
    metrics.tool_call(tool="read_ticket", outcome="error", decision="allow")
    metrics.tool_call(tool="restart_service", outcome="denied", decision="deny")
    metrics.tool_call(tool="restart_service", outcome="rejected", decision="invalid")

    samples = await scrape(metrics)

    assert value(samples, "botfactory_tool_calls_total", tool="read_ticket", outcome="ok") == 1
    assert value(samples, "botfactory_tool_calls_total", tool="read_ticket", outcome="timeout") == 1
    assert value(samples, "botfactory_tool_errors_total", tool="read_ticket") == 2
    assert value(samples, "botfactory_policy_denials_total", tool="restart_service") == 1
    assert value(samples, "botfactory_tool_errors_total", tool="restart_service") is None  # refusals are not errors
    assert value(samples, "botfactory_policy_denials_total", tool="read_ticket") is None


async def test_without_per_user_labels_tokens_and_cost_have_no_user_label() -> None:
    metrics = Metrics(per_user=False)
    metrics.model_call(bot="itsm", model="large", user_id="u1", input_tokens=5, output_tokens=1, cost=0.5)
    metrics.model_call(bot="itsm", model="large", user_id="u2", input_tokens=5, output_tokens=1, cost=0.5)

    samples = await scrape(metrics)

    assert value(samples, "botfactory_model_tokens_total", bot="itsm", model="large", direction="in") == 10
    assert value(samples, "botfactory_model_cost_total", bot="itsm", model="large") == 1.0
    assert not any(("user", "u1") in labels for _, labels in samples)


async def test_label_values_past_the_limit_are_counted_as_other() -> None:
    metrics = Metrics(max_label_values=2)
    for name in ("a", "b", "made_up_1", "made_up_2"):
        metrics.tool_call(tool=name, outcome="denied", decision="deny")
    metrics.model_call(bot="b", model="m", user_id=None, input_tokens=1, output_tokens=0, cost=0.0)

    samples = await scrape(metrics)

    assert value(samples, "botfactory_tool_calls_total", tool="a", outcome="denied") == 1
    assert value(samples, "botfactory_tool_calls_total", tool=OTHER_LABEL, outcome="denied") == 2
    tokens = value(samples, "botfactory_model_tokens_total", bot="b", model="m", user="anonymous", direction="in")
    assert tokens == 1


async def test_each_metrics_object_counts_on_its_own() -> None:
    first, second = Metrics(), Metrics()
    first.turn_finished(bot="support", status="completed", latency_s=1.0)

    assert value(await scrape(first), "botfactory_turns_total", bot="support", status="completed") == 1
    assert value(await scrape(second), "botfactory_turns_total", bot="support", status="completed") is None
