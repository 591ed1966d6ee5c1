defmodule Hotpath.Metrics.Spec do
  @moduledoc false
  # The options of `Hotpath.Metrics` and the instance they build: definitions checked and
  # turned into the native registry's specs, the handlers to attach, the metadata kept for
  # snapshots and cluster views.

  alias Hotpath.Metrics.{Definition, ReporterOptions}
  alias Hotpath.Native

  # The longest timer `Process.send_after/3` accepts.
  @max_timer_ms 4_294_967_295
  # The core's cap on `max_series` (MAX_SERIES_CAP).
  @max_series 10_000_000

  @start_schema [
    name: [type: :name, required: true, doc: "The instance name"],
    metrics: [
      type: {:custom, __MODULE__, :definitions, "a list of metric definitions (a proper list)"},
      default: [],
      doc: "Definitions (`counter/2` and friends) or `Telemetry.Metrics` structs"
    ],
    max_series: [
      type: {:integer, 1, @max_series},
      default: 10_000,
      doc: "Series per metric before the overflow series"
    ],
    prune_every: [
      type: {:or, [{:value, nil}, {:integer, 1, @max_timer_ms}]},
      default: nil,
      doc: "Milliseconds between automatic `prune/1` calls (`nil`: none)"
    ],
    telemetry: [
      type: :boolean,
      default: true,
      doc: "Attach `:telemetry` handlers when `:telemetry` is loaded"
    ]
  ]

  @doc false
  def docs, do: Hotpath.Options.docs(@start_schema)

  @doc false
  def validate!(opts), do: Hotpath.Options.validate!(opts, @start_schema, "Hotpath.Metrics")

  @doc false
  # The `:metrics` option: every definition normalised (a type of the options schema).
  def definitions(list) when is_list(list) do
    if Definition.proper_list?(list),
      do: {:ok, Enum.map(list, &Definition.normalize!/1)},
      else: :error
  end

  def definitions(_other), do: :error

  @doc false
  # The state of a new owner (`Hotpath.Metrics.Owner`), its registry built.
  def build!(opts) do
    opts = validate!(opts)
    name = opts[:name]
    max_series = opts[:max_series]
    metrics = opts[:metrics]
    specs = Enum.map(metrics, &spec!(&1, max_series))
    registry = Native.metrics_new(specs)

    handlers =
      metrics
      |> Enum.with_index()
      |> Enum.group_by(fn {m, _} -> m.event_name end, &handler_metric/1)

    # The spec is kept for cluster views, which build a registry of the same definitions.
    meta =
      metrics
      |> Enum.zip(specs)
      |> Enum.map(fn {m, s} ->
        %{name: m.name, kind: m.kind, tags: m.tags, quantiles: s.quantiles, spec: s}
      end)

    %{
      name: name,
      registry: registry,
      meta: meta,
      handlers: handlers,
      prune_every: opts[:prune_every],
      attach?: opts[:telemetry]
    }
  end

  # What the handler needs of a metric: `{index, kind, measurement, keep, tag_values}`, plus
  # the exemplar source when the metric keeps exemplars (see `Hotpath.Metrics.Handler`).
  defp handler_metric({m, i}) do
    case exemplar_source(m) do
      nil -> {i, m.kind, m.measurement, m.keep, m.tag_values}
      source -> {i, m.kind, m.measurement, m.keep, m.tag_values, source}
    end
  end

  # `{:metadata, key}`, `:opentelemetry` (when its API is loaded: decided here, at start,
  # never at compile time) or nil.
  defp exemplar_source(m) do
    case ReporterOptions.fetch!(m, :exemplar, nil) do
      nil ->
        nil

      _ when m.kind in [:sum, :last_value] ->
        raise ArgumentError,
              "#{inspect(m.name)}: exemplars are kept for counters, summaries and distributions, " <>
                "not for a #{m.kind}"

      :opentelemetry ->
        if Code.ensure_loaded?(:otel_tracer) and Code.ensure_loaded?(:otel_span),
          do: :opentelemetry

      key ->
        {:metadata, key}
    end
  end

  defp spec!(%Definition{} = m, max_series) do
    if not Keyword.keyword?(m.reporter_options) do
      raise ArgumentError, "#{inspect(m.name)}: reporter_options must be a keyword list"
    end

    Definition.tags!(m.tags, m.name)

    buckets =
      if m.kind == :distribution,
        do: ReporterOptions.fetch!(m, :buckets, Definition.default_buckets(m.unit)),
        else: []

    window = if m.kind == :summary, do: ReporterOptions.fetch!(m, :window, nil), else: nil
    ReporterOptions.fetch!(m, :prometheus_name, nil)
    ReporterOptions.fetch!(m, :exemplar, nil)

    %{
      kind: m.kind,
      name: Definition.prometheus_name(m),
      help: m.description || "#{m.kind} of #{Enum.join(m.name, ".")}#{unit_text(m.unit)}",
      labels: Enum.map(m.tags, &Definition.label_name/1),
      tag_keys: m.tags,
      max_series: ReporterOptions.fetch!(m, :max_series, max_series),
      buckets: buckets,
      quantiles: ReporterOptions.fetch!(m, :quantiles, nil),
      relative_error: ReporterOptions.fetch!(m, :relative_error, nil),
      window: window,
      binary_name: Enum.join(m.name, "."),
      atom_name: m.name
    }
  end

  defp unit_text(:unit), do: ""
  defp unit_text(unit), do: " (#{unit})"
end
