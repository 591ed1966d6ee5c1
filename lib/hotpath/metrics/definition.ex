defmodule Hotpath.Metrics.Definition do
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

  Reporter options Hotpath reads (others are left alone, for other reporters):

  #{Hotpath.Metrics.ReporterOptions.docs()}
  """

  @kinds [:counter, :sum, :last_value, :summary, :distribution]
  @struct_kinds %{
    Telemetry.Metrics.Counter => :counter,
    Telemetry.Metrics.Sum => :sum,
    Telemetry.Metrics.LastValue => :last_value,
    Telemetry.Metrics.Summary => :summary,
    Telemetry.Metrics.Distribution => :distribution
  }
  # The options of a definition, each checked by its own function below (their messages
  # name the metric).
  @schema Enum.map(
            [:event_name, :measurement, :tags, :tag_values, :keep, :drop, :description, :unit] ++
              [:reporter_options],
            &{&1, []}
          )
  @time_units [:native, :second, :millisecond, :microsecond, :nanosecond]
  @max_atom_chars 255
  @max_tags 32
  @byte_units %{byte: 1, kilobyte: 1_000, megabyte: 1_000_000}

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
    Hotpath.Options.known!(opts, @schema, "Hotpath.Metrics.#{kind}/2")

    name = name!(name)
    {event_name, default_measurement} = split(name, opts)
    measurement = Keyword.get(opts, :measurement, default_measurement)
    {measurement, unit} = convert_unit(measurement, Keyword.get(opts, :unit, :unit))

    %__MODULE__{
      kind: kind,
      name: name,
      event_name: event_name,
      measurement: measurement,
      tags: tags!(Keyword.get(opts, :tags, []), name),
      tag_values: tag_values!(Keyword.get(opts, :tag_values, &__MODULE__.identity/1)),
      keep: keep(opts),
      description: description!(Keyword.get(opts, :description)),
      unit: unit,
      reporter_options: Keyword.get(opts, :reporter_options, [])
    }
  end

  defp split(name, opts) do
    case Keyword.fetch(opts, :event_name) do
      {:ok, event} ->
        {name!(event), List.last(name)}

      :error when length(name) < 2 ->
        raise ArgumentError,
              "metric name #{inspect(name)} needs at least two segments (event name and " <>
                "measurement), or an explicit :event_name"

      :error ->
        {Enum.drop(name, -1), List.last(name)}
    end
  end

  defp description!(nil), do: nil

  defp description!(text) when is_binary(text) do
    if String.valid?(text),
      do: text,
      else: raise(ArgumentError, "description must be UTF-8 text, got: #{inspect(text)}")
  end

  defp description!(other),
    do: raise(ArgumentError, "description must be a string, got: #{inspect(other, limit: 10)}")

  defp tag_values!(fun) when is_function(fun, 1), do: fun

  defp tag_values!(other) do
    raise ArgumentError,
          "tag_values must be a function of the metadata (arity 1), got: #{inspect(other)}"
  end

  defp keep(opts) do
    case {Keyword.get(opts, :keep), Keyword.get(opts, :drop)} do
      {nil, nil} ->
        nil

      {keep, nil} when is_function(keep, 1) or is_function(keep, 2) ->
        keep

      {nil, drop} when is_function(drop, 1) ->
        &(not drop.(&1))

      {nil, drop} when is_function(drop, 2) ->
        &(not drop.(&1, &2))

      {_, _} ->
        raise ArgumentError,
              ":keep and :drop are functions of arity 1 or 2, and only one may be given"
    end
  end

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
  def tags!(tags, name) do
    if not (proper_list?(tags) and length(tags) <= @max_tags and Enum.all?(tags, &is_atom/1)) do
      raise ArgumentError,
            "#{inspect(name)}: tags must be a list of at most #{@max_tags} atoms (metadata " <>
              "keys), got: #{inspect(tags, limit: 10)}"
    end

    tags
  end

  defp convert_unit(measurement, {from, to}) do
    ratio = ratio!(from, to)
    {scale(measurement, ratio), to}
  end

  defp convert_unit(measurement, unit) when is_atom(unit), do: {measurement, unit}

  defp convert_unit(_, unit),
    do: raise(ArgumentError, "unit must be an atom or {from, to}, got: #{inspect(unit)}")

  defp ratio!(same, same), do: 1

  defp ratio!(from, to) when from in @time_units and to in @time_units do
    per_second(from) / per_second(to)
  end

  defp ratio!(from, to) when is_map_key(@byte_units, from) and is_map_key(@byte_units, to) do
    @byte_units[from] / @byte_units[to]
  end

  defp ratio!(from, to) do
    raise ArgumentError,
          "cannot convert #{inspect(from)} to #{inspect(to)}: units are one of " <>
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

    %__MODULE__{
      kind: Map.fetch!(@struct_kinds, mod),
      name: name!(metric.name),
      event_name: name!(metric.event_name),
      measurement: metric.measurement,
      tags: tags,
      tag_values: Map.get(metric, :tag_values) || (&__MODULE__.identity/1),
      keep: Map.get(metric, :keep),
      description: Map.get(metric, :description),
      unit: Map.get(metric, :unit, :unit),
      reporter_options: Map.get(metric, :reporter_options) || []
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
