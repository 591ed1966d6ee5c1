defmodule Hotpath.Metrics.ExemplarTest do
  use ExUnit.Case, async: true

  alias Hotpath.{FakeTelemetry, Metrics}
  alias Hotpath.Test.OpenMetricsParser

  defp start!(metrics) do
    name = :"exemplars_#{System.unique_integer([:positive])}"
    start_supervised!({Metrics, name: name, metrics: metrics})
    name
  end

  defp event(name, measurements, metadata),
    do: FakeTelemetry.execute(name, measurements, metadata)

  test "OpenMetrics carries the last exemplar per bucket and counter, and _created" do
    prefix = "ex#{System.unique_integer([:positive])}"

    name =
      start!([
        Metrics.distribution("#{prefix}.req.duration",
          tags: [:route],
          reporter_options: [buckets: [0.1, 1], exemplar: :trace_id]
        ),
        Metrics.counter("#{prefix}.req.count", reporter_options: [exemplar: :trace_id]),
        Metrics.summary("#{prefix}.req.size", reporter_options: [exemplar: :trace_id]),
        Metrics.sum("#{prefix}.req.bytes")
      ])

    ev = [String.to_atom(prefix), :req]
    before = System.os_time(:millisecond) / 1000

    for {v, id} <- [
          {0.05, "a"},
          {0.07, "b"},
          {0.5, nil},
          {5, 42},
          {0.02, "x" <> String.duplicate("y", 200)}
        ] do
      metadata = if id, do: %{route: "/", trace_id: id}, else: %{route: "/"}
      event(ev, %{duration: v, size: v, bytes: 1}, metadata)
    end

    text = IO.iodata_to_binary(Metrics.prometheus(name, format: :openmetrics))
    assert {:ok, samples} = OpenMetricsParser.parse(text)
    base = String.replace(prefix, ".", "_") <> "_req"

    # The too-long trace id recorded its value without an exemplar: "b" stays the last of
    # le=0.1, and every value counts.
    assert "histogram #{base}_duration_bucket [('le', '0.1'), ('route', '/')] 3 # [('trace_id', 'b')] 0.07" in samples
    assert "histogram #{base}_duration_bucket [('le', '1.0'), ('route', '/')] 4" in samples

    assert "histogram #{base}_duration_bucket [('le', '+Inf'), ('route', '/')] 5 # [('trace_id', '42')] 5.0" in samples

    assert "counter #{base}_count_total [] 5 # [('trace_id', '42')] 1.0" in samples
    refute text =~ "yyyy"
    # A summary's quantile samples carry no exemplars (OpenMetrics has none for them).
    refute Enum.any?(samples, &(&1 =~ ~r/#{base}_size.* # /))
    # A sum is `unknown`: no _created, no exemplar.
    refute Enum.any?(samples, &(&1 =~ ~r/#{base}_bytes_created/))

    created =
      for line <- samples, line =~ ~r/_created /, into: %{} do
        [_type, metric | rest] = String.split(line, " ")
        {metric, rest |> List.last() |> String.to_float()}
      end

    assert Map.keys(created) |> Enum.sort() ==
             Enum.sort([
               "#{base}_count_created",
               "#{base}_duration_created",
               "#{base}_size_created"
             ])

    for {_, t} <- created, do: assert(t >= before - 1 and t <= before + 60)

    # The Prometheus text format has neither exemplars nor _created, and passes promtool.
    plain = IO.iodata_to_binary(Metrics.prometheus(name))
    refute plain =~ " # {"
    refute plain =~ "_created"
    assert {_, 0} = Hotpath.Test.Promtool.check(plain)
  end

  test "records without an exemplar pay nothing: the handler config says which metrics keep them" do
    name =
      start!([
        Metrics.counter("ex.plain.count"),
        Metrics.counter("ex.traced.count", reporter_options: [exemplar: :trace_id])
      ])

    metrics =
      FakeTelemetry.list_handlers([])
      # Other tests (async) attach handlers of their own, some with no config map.
      |> Enum.filter(&match?(%{config: %{registry: ^name}}, &1))
      |> Enum.flat_map(& &1.config.metrics)

    assert [{0, :counter, _, _, _}, {1, :counter, _, _, _, {:metadata, :trace_id}}] =
             Enum.sort(metrics)
  end

  test "exemplar: :opentelemetry takes the current span's trace and span ids" do
    name =
      start!([
        Metrics.distribution("ex.otel.duration",
          reporter_options: [buckets: [1], exemplar: :opentelemetry]
        )
      ])

    event([:ex, :otel], %{duration: 0.5}, %{})
    Process.put(:hotpath_fake_span, {:span_ctx, 0, 0})
    event([:ex, :otel], %{duration: 0.6}, %{})
    Process.put(:hotpath_fake_span, {:span_ctx, 0xABC, 0x12})
    event([:ex, :otel], %{duration: 0.7}, %{})
    Process.delete(:hotpath_fake_span)

    text = IO.iodata_to_binary(Metrics.prometheus(name, format: :openmetrics))
    assert {:ok, samples} = OpenMetricsParser.parse(text)

    trace = String.pad_leading("abc", 32, "0")
    span = String.pad_leading("12", 16, "0")

    assert "histogram ex_otel_duration_bucket [('le', '1.0')] 3 # [('span_id', '#{span}'), ('trace_id', '#{trace}')] 0.7" in samples
  end

  test "bad exemplar options are refused at start" do
    Process.flag(:trap_exit, true)

    assert_raise ArgumentError,
                 ~r/exemplars are kept for counters, summaries and distributions/,
                 fn ->
                   Metrics.start_link(
                     name: :ex_bad,
                     metrics: [Metrics.sum("ex.bad.sum", reporter_options: [exemplar: :trace_id])]
                   )
                 end

    assert_raise ArgumentError, ~r/exemplar/, fn ->
      Metrics.start_link(
        name: :ex_bad,
        metrics: [Metrics.counter("ex.bad.count", reporter_options: [exemplar: "trace"])]
      )
    end
  end

  test "the NIF refuses labels that are not an exemplar's, recording nothing" do
    name = start!([Metrics.counter("ex.nif.count")])
    registry = Hotpath.Metrics.Instance.registry!(name)

    for labels <- [
          [],
          [{"trace_id", String.duplicate("x", 121)}],
          [{"1bad", "x"}],
          [{"a", "1"}, {"a", "2"}],
          [{"trace_id", <<255>>}],
          [{"trace_id", 1}],
          [{"trace_id", "x"} | :improper],
          for(i <- 1..9, do: {"l#{i}", "x"})
        ] do
      assert Hotpath.Native.metrics_record_exemplar(registry, 0, nil, %{}, labels) ==
               :bad_exemplar,
             inspect(labels)
    end

    assert Hotpath.Native.metrics_record_exemplar(registry, 0, nil, %{}, [{"trace_id", "ok"}]) ==
             :ok

    assert [%{series: [%{value: 1}]}] = Metrics.snapshot(name)
  end
end
