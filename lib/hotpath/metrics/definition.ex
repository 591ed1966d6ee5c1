defmodule Hotpath.Metrics.Definition do
  @kinds [:counter, :sum, :last_value, :summary, :distribution]
  @struct_kinds %{
    Telemetry.Metrics.Counter => :counter,
    Telemetry.Metrics.Sum => :sum,
    Telemetry.Metrics.LastValue => :last_value,
    Telemetry.Metrics.Summary => :summary,
    Telemetry.Metrics.Distribution => :distribution
  }
  @time_units [:native, :second, :millisecond, :microsecond, :nanosecond]
  @max_atom_chars 255
  @max_tags 32
  @byte_units %{byte: 1, kilobyte: 1_000, megabyte: 1_000_000}

  @tags_type {:custom, __MODULE__, :tags_option, "a list of at most #{@max_tags} atoms"}
  @predicate_type {:or, [{:value, nil}, {:fun, 1}, {:fun, 2}]}
  @description_type {:or, [{:value, nil}, {:custom, __MODULE__, :text_option, "a UTF-8 string"}]}
  # The options of `new/3` (`Hotpath.Metrics.counter/2` and the other builders): the names and
  # meanings of `Telemetry.Metrics`.
  @schema [
    event_name: [
      type: {:custom, __MODULE__, :name_option, "a name, \"a.b.c\" or a non-empty list of atoms"},
      doc_default: "the name without its last segment",
      doc:
        "The `:telemetry` event the metric records (UTF-8, segments of at most " <>
          "#{@max_atom_chars} characters)"
    ],
    measurement: [
      type: :any,
      doc_default: "the name's last segment",
      doc:
        "A key of the measurements map, or a function of the measurements (arity 1) or of " <>
          "the measurements and the metadata (arity 2)"
    ],
    tags: [
      type: @tags_type,
      default: [],
      doc: "Metadata keys whose values label the series"
    ],
    tag_values: [
      type: {:fun, 1},
      default: &__MODULE__.identity/1,
      doc_default: "the metadata as it is",
      doc: "A function of the metadata returning the map the tags are read from"
    ],
    keep: [
      type: @predicate_type,
      default: nil,
      doc:
        "Record only the events for which this function of the metadata (arity 1) or of the " <>
          "metadata and the measurements (arity 2) returns `true`"
    ],
    drop: [
      type: @predicate_type,
      default: nil,
      doc:
        "The opposite of `:keep` (the events for which it returns `true` are skipped); only one of the two may be given"
    ],
    description: [
      type: @description_type,
      default: nil,
      doc: "The `# HELP` text of the exposition"
    ],
    unit: [
      type:
        {:custom, __MODULE__, :unit_option, "an atom or {from, to} of two time or two byte units"},
      default: :unit,
      doc:
        "The unit of the values; `{from, to}` converts each measurement (e.g. " <>
          "`{:native, :millisecond}`) and the metric keeps `to`. Time units: " <>
          "#{Enum.map_join(@time_units, ", ", &"`#{inspect(&1)}`")}; byte units: `:byte`, " <>
          "`:kilobyte`, `:megabyte`"
    ],
    reporter_options: [
      type: :keyword_list,
      default: [],
      doc: "Options for reporters; those Hotpath reads are listed below"
    ]
  ]

  @moduledoc """
  A metric definition: the plain equivalent of a `Telemetry.Metrics` struct.

  `Hotpath.Metrics` accepts these (built with `Hotpath.Metrics.counter/2`, `sum/2`,
  `last_value/2`, `summary/2` and `distribution/2`) and `Telemetry.Metrics` structs, recognised
  by their struct name, so `telemetry_metrics` is never a dependency. Both normalize to this
  struct with `normalize!/1`.

  Fields are those of `Telemetry.Metrics`: `kind`, `name` (list of atoms), `event_name`,
  `measurement` (a key or a function of the measurements, or of measurements and metadata),
  `tags` (metadata keys), `tag_values` (function of the metadata), `keep` (predicate on the
  metadata, or on metadata and measurements), `description`, `unit` and `reporter_options`.

  Options of `new/3` (and of `Hotpath.Metrics.counter/2`, `sum/2`, `last_value/2`,
  `summary/2`, `distribution/2`), validated there (`ArgumentError` naming the option and the
  value); the fields of a `Telemetry.Metrics` struct are checked the same way by
  `normalize!/1`:

  #{Hotpath.Options.docs(@schema)}

  Reporter options Hotpath reads (others are left alone, for other reporters):

  #{Hotpath.Metrics.ReporterOptions.docs()}
  """

  defstruct [
    :kind,
    :name,
    :event_name,
    :measurement,
    :description,
    :unit,
    tags: [],
    tag_values: &__MODULE__.identity/1,
    keep: nil,
    reporter_options: []
  ]

  @type kind :: :counter | :sum | :last_value | :summary | :distribution
  @type t :: %__MODULE__{
          kind: kind(),
          name: [atom()],
          event_name: [atom()],
          measurement: term() | (map() -> term()) | (map(), map() -> term()),
          tags: [term()],
          tag_values: (map() -> map()),
          keep: nil | (map() -> boolean()) | (map(), map() -> boolean()),
          description: String.t() | nil,
          unit: atom(),
          reporter_options: keyword()
        }

  @doc false
  def identity(metadata), do: metadata

  @doc """
  Builds a definition of `kind`. `name` is `"a.b.c"` or `[:a, :b, :c]`.

      iex> d = Hotpath.Metrics.Definition.new(:distribution, "phoenix.endpoint.stop.duration",
      ...>   unit: {:native, :millisecond}, tags: [:route])
      iex> {d.event_name, d.unit, d.tags}
      {[:phoenix, :endpoint, :stop], :millisecond, [:route]}
  """
  @spec new(kind(), String.t() | [atom()], keyword()) :: t()
  def new(kind, name, opts \\ []) when kind in @kinds do
    where = "Hotpath.Metrics.#{kind}/2 of #{Hotpath.Options.describe(name)}"
    opts = Hotpath.Options.validate!(opts, @schema, where)
    name = name!(name)
    {event_name, default_measurement} = split(name, opts)
    measurement = Keyword.get(opts, :measurement, default_measurement)
    {measurement, unit} = convert_unit(measurement, opts[:unit])

    %__MODULE__{
      kind: kind,
      name: name,
      event_name: event_name,
      measurement: measurement,
      tags: opts[:tags],
      tag_values: opts[:tag_values],
      keep: keep!(opts[:keep], opts[:drop], where),
      description: opts[:description],
      unit: unit,
      reporter_options: opts[:reporter_options]
    }
  end

  @doc false
  # The option list of `new/3`, for the docs of the builders.
  def docs, do: Hotpath.Options.docs(@schema)

  defp split(name, opts) do
    case Keyword.fetch(opts, :event_name) do
      {:ok, event} ->
        {event, List.last(name)}

      :error when length(name) < 2 ->
        raise ArgumentError,
              "metric name #{inspect(name)} needs at least two segments (event name and " <>
                "measurement), or an explicit :event_name"

      :error ->
        {Enum.drop(name, -1), List.last(name)}
    end
  end

  defp keep!(keep, nil, _where), do: keep
  defp keep!(nil, drop, _where) when is_function(drop, 1), do: &(not drop.(&1))
  defp keep!(nil, drop, _where) when is_function(drop, 2), do: &(not drop.(&1, &2))

  defp keep!(_keep, _drop, where),
    do: raise(ArgumentError, ":keep and :drop: only one may be given (#{where})")

  # ---- option types (`Hotpath.Options` `:custom` types) -------------------------------

  @doc false
  def name_option(name) do
    {:ok, name!(name)}
  rescue
    ArgumentError -> :error
  end

  @doc false
  def tags_option(tags) do
    if Hotpath.Options.proper_list?(tags) and length(tags) <= @max_tags and
         Enum.all?(tags, &is_atom/1),
       do: {:ok, tags},
       else: :error
  end

  @doc false
  def text_option(text) when is_binary(text),
    do: if(String.valid?(text), do: {:ok, text}, else: :error)

  def text_option(_other), do: :error

  @doc false
  # An atom, or a pair of units `ratio!/2` converts (it raises for a pair it cannot).
  def unit_option(unit) when is_atom(unit), do: {:ok, unit}

  def unit_option({from, to} = unit) do
    ratio!(from, to)
    {:ok, unit}
  end

  def unit_option(_other), do: :error

  @doc false
  def name!(name) when is_binary(name) do
    segments = String.split(name, ".")

    if name == "" or Enum.any?(segments, &(&1 == "")) or not String.valid?(name) do
      raise ArgumentError,
            "metric names are like \"a.b.c\" (UTF-8), got: #{inspect(name, printable_limit: 100)}"
    end

    Enum.map(segments, fn segment ->
      if String.length(segment) > @max_atom_chars do
        raise ArgumentError,
              "a metric name segment has at most #{@max_atom_chars} characters (it becomes " <>
                "an atom), got one of #{String.length(segment)}"
      end

      String.to_atom(segment)
    end)
  end

  def name!([_ | _] = name) do
    if atom_list?(name),
      do: name,
      else:
        raise(
          ArgumentError,
          "metric names are a string or a list of atoms, got: #{inspect(name, limit: 10)}"
        )
  end

  def name!(other),
    do:
      raise(
        ArgumentError,
        "metric names are a string or a list of atoms, got: #{inspect(other, limit: 10)}"
      )

  defp atom_list?([]), do: true
  defp atom_list?([a | rest]) when is_atom(a), do: atom_list?(rest)
  defp atom_list?(_), do: false

  @doc false
  # True for a proper list (`[a | b]` is not); false for anything else.
  def proper_list?([]), do: true
  def proper_list?([_ | rest]), do: proper_list?(rest)
  def proper_list?(_), do: false

  @doc false
  # Checks the tag keys of a metric: a proper list of at most 32 atoms (@max_tags).
  def tags!(tags, name),
    do: Hotpath.Options.check!(:tags, tags, @tags_type, "metric #{inspect(name, limit: 10)}")

  defp convert_unit(measurement, {from, to}) do
    ratio = ratio!(from, to)
    {scale(measurement, ratio), to}
  end

  defp convert_unit(measurement, unit) when is_atom(unit), do: {measurement, unit}

  defp ratio!(same, same), do: 1

  defp ratio!(from, to) when from in @time_units and to in @time_units do
    per_second(from) / per_second(to)
  end

  defp ratio!(from, to) when is_map_key(@byte_units, from) and is_map_key(@byte_units, to) do
    @byte_units[from] / @byte_units[to]
  end

  defp ratio!(from, to) do
    raise ArgumentError,
          ":unit cannot convert #{inspect(from)} to #{inspect(to)}: units are one of " <>
            "#{inspect(@time_units)} or #{inspect(Map.keys(@byte_units))}"
  end

  # Seconds per unit (per_second(:millisecond) = 0.001).
  defp per_second(:native), do: 1 / System.convert_time_unit(1, :second, :native)
  defp per_second(:second), do: 1
  defp per_second(:millisecond), do: 1.0e-3
  defp per_second(:microsecond), do: 1.0e-6
  defp per_second(:nanosecond), do: 1.0e-9

  defp scale(measurement, 1), do: measurement

  defp scale(fun, ratio) when is_function(fun, 1) do
    fn measurements -> mul(fun.(measurements), ratio) end
  end

  defp scale(fun, ratio) when is_function(fun, 2) do
    fn measurements, metadata -> mul(fun.(measurements, metadata), ratio) end
  end

  defp scale(key, ratio) do
    fn measurements -> mul(Map.get(measurements, key), ratio) end
  end

  defp mul(value, ratio) when is_number(value), do: value * ratio
  defp mul(value, _ratio), do: value

  @doc """
  Normalizes a definition or a `Telemetry.Metrics` struct (by struct name).

      iex> tm = %{__struct__: Telemetry.Metrics.Counter, name: [:a, :b], event_name: [:a],
      ...>   measurement: :b, tags: [], tag_values: & &1, keep: nil, description: nil,
      ...>   unit: :unit, reporter_options: []}
      iex> Hotpath.Metrics.Definition.normalize!(tm).kind
      :counter
  """
  @spec normalize!(t() | struct()) :: t()
  def normalize!(%__MODULE__{} = d), do: d

  def normalize!(%{__struct__: mod} = metric) when is_map_key(@struct_kinds, mod) do
    tags = Map.get(metric, :tags, [])

    if not is_list(tags) do
      raise ArgumentError,
            "#{inspect(metric.name)}: tags given as a function are not supported; list the tag keys"
    end

    tags!(tags, metric.name)
    where = "#{inspect(mod)} #{inspect(metric.name, limit: 10)}"
    field = fn key, value, type -> Hotpath.Options.check!(key, value, type, where) end

    %__MODULE__{
      kind: Map.fetch!(@struct_kinds, mod),
      name: name!(metric.name),
      event_name: name!(metric.event_name),
      measurement: metric.measurement,
      tags: tags,
      tag_values:
        field.(:tag_values, Map.get(metric, :tag_values) || (&__MODULE__.identity/1), {:fun, 1}),
      keep: field.(:keep, Map.get(metric, :keep), @predicate_type),
      description: field.(:description, Map.get(metric, :description), @description_type),
      unit: field.(:unit, Map.get(metric, :unit, :unit), :atom),
      reporter_options:
        field.(:reporter_options, Map.get(metric, :reporter_options) || [], :keyword_list)
    }
  end

  def normalize!(other) do
    raise ArgumentError,
          "expected a metric from Hotpath.Metrics.counter/sum/last_value/summary/distribution " <>
            "or a Telemetry.Metrics struct, got: #{inspect(other)}"
  end

  @prom_seconds [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

  @doc """
  Default distribution buckets: the Prometheus client defaults (5 ms to 10 s) in `unit`.

      iex> Hotpath.Metrics.Definition.default_buckets(:millisecond)
      [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]
  """
  @spec default_buckets(atom()) :: [number()]
  def default_buckets(:millisecond), do: [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]

  def default_buckets(:microsecond),
    do: Enum.map(default_buckets(:millisecond), &(&1 * 1000))

  def default_buckets(:nanosecond),
    do: Enum.map(default_buckets(:millisecond), &(&1 * 1_000_000))

  def default_buckets(_), do: @prom_seconds

  @doc """
  The exposition name: `reporter_options[:prometheus_name]` or the segments joined by `_`,
  with characters outside `[a-zA-Z0-9_:]` replaced by `_`; counters and sums end in `_total`.

      iex> d = Hotpath.Metrics.Definition.new(:counter, "phoenix.endpoint.stop.duration")
      iex> Hotpath.Metrics.Definition.prometheus_name(d)
      "phoenix_endpoint_stop_duration_total"
  """
  @spec prometheus_name(t()) :: String.t()
  def prometheus_name(%__MODULE__{} = d) do
    base =
      case Keyword.get(d.reporter_options, :prometheus_name) do
        nil -> Enum.map_join(d.name, "_", &Atom.to_string/1)
        name -> to_string(name)
      end
      |> sanitize(true)

    if d.kind in [:counter, :sum] and not String.ends_with?(base, "_total"),
      do: base <> "_total",
      else: base
  end

  @doc "A label name for a tag key: invalid characters become `_`."
  @spec label_name(term()) :: String.t()
  def label_name(tag) when is_atom(tag), do: tag |> Atom.to_string() |> sanitize(false)
  def label_name(tag) when is_binary(tag), do: sanitize(tag, false)

  def label_name(tag),
    do: raise(ArgumentError, "tags must be atoms or strings, got: #{inspect(tag)}")

  defp sanitize(text, colon?) do
    text =
      text
      |> String.to_charlist()
      |> Enum.map(fn c ->
        if c in ?a..?z or c in ?A..?Z or c in ?0..?9 or c == ?_ or (colon? and c == ?:),
          do: c,
          else: ?_
      end)
      |> List.to_string()

    case text do
      <<c, _::binary>> when c in ?0..?9 -> "_" <> text
      "" -> "_"
      _ -> text
    end
  end
end
