defmodule Hotpath.Metrics.ReporterOptions do
  @moduledoc false
  # The `reporter_options` of a metric definition that Hotpath reads, checked when an
  # instance starts (`Hotpath.Metrics.Spec`); others, for other reporters, are left alone.

  # The core's cap on `max_series` (MAX_SERIES_CAP).
  @max_series 10_000_000
  @default_quantiles [0.5, 0.9, 0.99]

  @reporter_schema [
    buckets: [
      type:
        {:custom, Hotpath.Histogram, :buckets_option, "a strictly increasing list of numbers"},
      doc_default: "the Prometheus client defaults (0.005 s to 10 s) in the metric's time unit",
      doc: "Distributions: bucket upper bounds (inclusive)"
    ],
    quantiles: [
      type: {:custom, __MODULE__, :quantiles_option, "a non-empty list of numbers in 0..1"},
      default: @default_quantiles,
      doc: "Quantiles in snapshots and, for summaries, in the exposition"
    ],
    window: [
      type: {:custom, Hotpath.Histogram, :window_option, "nil or {span_ms, slots}"},
      default: {60_000, 6},
      doc: "Summaries: the window of the quantiles in the exposition (`nil`: cumulative)"
    ],
    relative_error: [
      type: {:custom, Hotpath.Histogram, :float_option, "a number"},
      default: 0.01,
      doc: "The histogram's relative error"
    ],
    max_series: [
      type: {:integer, 1, @max_series},
      doc_default: "the instance's `:max_series`",
      doc: "The series cap of the metric"
    ],
    exemplar: [
      type: {:or, [{:value, nil}, :atom]},
      default: nil,
      doc:
        "Counters, summaries and distributions: the metadata key whose value (a string or an " <>
          "integer) is kept as the `trace_id` of the last exemplar, or `:opentelemetry` for the " <>
          "current OpenTelemetry span (`trace_id` and `span_id`; see `Hotpath.Metrics` on " <>
          "exemplars)"
    ],
    prometheus_name: [
      type: {:or, [:string, :atom]},
      doc_default: "derived from the name (see `prometheus_name/1`)",
      doc: "The exposition name"
    ]
  ]

  @doc false
  def docs, do: Hotpath.Options.docs(@reporter_schema)

  @doc false
  # The `:quantiles` reporter option (a type of the schema), as floats.
  def quantiles_option([_ | _] = qs) do
    if Hotpath.Options.proper_list?(qs) and
         Enum.all?(qs, &(is_number(&1) and &1 >= 0 and &1 <= 1)),
       do: {:ok, Enum.map(qs, &(&1 / 1))},
       else: :error
  end

  def quantiles_option(_other), do: :error

  @doc false
  # A reporter option of the definition `m`: given or default, checked against its type.
  def fetch!(m, key, default) do
    spec = Keyword.fetch!(@reporter_schema, key)

    Hotpath.Options.check!(
      key,
      Keyword.get(m.reporter_options, key, Keyword.get(spec, :default, default)),
      spec[:type],
      "reporter_options of #{inspect(m.name)}"
    )
  end
end
