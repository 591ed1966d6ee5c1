defmodule Hotpath.Metrics do
  @moduledoc """
  A named, supervised registry of metric series in native memory: a `Telemetry.Metrics`
  reporter with bounded-error quantiles, windows and Prometheus export.

  Add an instance to your supervision tree:

      children = [
        {Hotpath.Metrics,
         name: MyApp.Metrics,
         metrics: [
           Hotpath.Metrics.distribution("phoenix.endpoint.stop.duration",
             unit: {:native, :millisecond},
             tags: [:route]
           ),
           Hotpath.Metrics.summary("my_app.repo.query.total_time", unit: {:native, :millisecond}),
           Hotpath.Metrics.counter("phoenix.endpoint.stop.duration")
         ]}
      ]

  `metrics:` also accepts `Telemetry.Metrics` structs (`Telemetry.Metrics.distribution/2` and
  friends) when the host application has `telemetry_metrics`; they are recognised by struct
  name, so Hotpath does not depend on the package.

  When `:telemetry` is loaded, the instance attaches **one handler per event**
  (`&Hotpath.Metrics.Handler.handle_event/4`) and detaches it when it stops. The handler
  never raises: events it cannot record are counted as dropped (see `Hotpath.Metrics.Handler`).
  Without `:telemetry`, record values yourself with `record/4`.

  ## Kinds

    * `counter` - counts events; the measurement is ignored
    * `sum` - sums the measurement (compensated float sum)
    * `last_value` - keeps the last measurement
    * `summary` - a histogram exported as quantiles over a sliding window (`reporter_options:
      [quantiles: [...], window: {span_ms, slots} | nil]`)
    * `distribution` - a histogram exported with classic buckets (`reporter_options:
      [buckets: [...]]`, inclusive upper bounds)

  See `Hotpath.Metrics.Definition` for every reporter option.

  ## Series and cardinality

  Each set of tag values is a series. Each metric holds at most `:max_series` series (default
  10 000); values for new tag sets beyond the cap go to one overflow series whose labels are
  all `"_overflow_"`. `prune/1` (or the `:prune_every` option) removes the series not recorded
  since the previous prune.

  ## Hot path

  `record/4` is one NIF call (no message to a process): it finds the instance by name in a
  per-thread copy of the native table of running instances, resolves the metric name, reads
  the tags out of the map and records into the series (found through a per-thread cache),
  without allocating once the series exists. Tag values that are binaries, atoms or numbers
  are read natively; others are converted with `inspect/1`. For a loop that records into the
  same series, `handle/3` resolves it once and `record_handle/2` costs about as much as
  `Hotpath.Histogram.record/2`.

  Summaries read the monotonic clock on each record (for their window); the other kinds do not.
  A value recorded into a series while `prune/1` removes it may be lost.

  ## Owner crashes

  The registry lives in native memory, not in the owner process. When the owner crashes (even
  with `:kill`) the instance stays published: `record/4`, the telemetry handlers (left
  attached), `snapshot/1` and `prometheus/1` keep working on the same series, and the
  restarted owner takes the registry over (series, counts, sums and windows) when its
  definitions are the same; with other definitions it starts a new registry. Only a clean
  stop (`:normal`, `:shutdown`, `{:shutdown, _}`) removes the instance and its series.

  ## Limits

  A metric has at most 32 tags; a label value (a tag value as text) is at most 4096 bytes,
  otherwise `record/4` and `handle/3` raise `ArgumentError` and the handler counts the event as
  dropped. Tag values that are not strings, atoms or numbers are converted with `inspect/1`
  and its default limits (so two large terms that differ only beyond those limits share a
  series). A name segment is at most 255 characters (it becomes an atom). `:prune_every` and
  the cluster `:timeout` are at most `4_294_967_295` ms; `:max_series` at most `10_000_000`.
  """

  alias Hotpath.Metrics.{Cluster, Definition}
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
  # The longest label value, in bytes (the core's MAX_LABEL_BYTES).
  @max_label_bytes 4096
  @max_label_int Integer.pow(10, @max_label_bytes)
  @default_quantiles [0.5, 0.9, 0.99]
  @cluster_schema Cluster.options()
  @prometheus_schema [
                       cluster: [
                         type: :boolean,
                         default: false,
                         doc: "Render the cluster view of `cluster_snapshot/2`"
                       ]
                     ] ++ @cluster_schema

  @typedoc "The name of an instance (the `:name` given at start)."
  @type instance :: atom()

  # ---- definitions --------------------------------------------------------------------

  @doc """
  A counter: counts events. Options are those of `Telemetry.Metrics` (`:event_name`,
  `:measurement`, `:tags`, `:tag_values`, `:keep`, `:drop`, `:description`, `:unit`,
  `:reporter_options`).
  """
  @spec counter(String.t() | [atom()], keyword()) :: Definition.t()
  def counter(name, opts \\ []), do: Definition.new(:counter, name, opts)

  @doc "A sum of the measurement. Options as `counter/2`."
  @spec sum(String.t() | [atom()], keyword()) :: Definition.t()
  def sum(name, opts \\ []), do: Definition.new(:sum, name, opts)

  @doc "The last value of the measurement. Options as `counter/2`."
  @spec last_value(String.t() | [atom()], keyword()) :: Definition.t()
  def last_value(name, opts \\ []), do: Definition.new(:last_value, name, opts)

  @doc "A histogram exported as quantiles. Options as `counter/2`."
  @spec summary(String.t() | [atom()], keyword()) :: Definition.t()
  def summary(name, opts \\ []), do: Definition.new(:summary, name, opts)

  @doc """
  A histogram exported with buckets. Options as `counter/2`.

      iex> d = Hotpath.Metrics.distribution("phoenix.endpoint.stop.duration",
      ...>   unit: {:native, :millisecond}, tags: [:route], reporter_options: [buckets: [10, 100]])
      iex> {d.kind, d.name, d.unit}
      {:distribution, [:phoenix, :endpoint, :stop, :duration], :millisecond}
  """
  @spec distribution(String.t() | [atom()], keyword()) :: Definition.t()
  def distribution(name, opts \\ []), do: Definition.new(:distribution, name, opts)

  # ---- process ------------------------------------------------------------------------

  @doc """
  A child specification: `{Hotpath.Metrics, opts}` in a supervisor. The child id is
  `{Hotpath.Metrics, name}`. Options, validated here (`ArgumentError`):

  #{Hotpath.Options.docs(@start_schema)}
  """
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts) do
    opts = validate!(opts)

    %{
      id: {__MODULE__, opts[:name]},
      start: {__MODULE__, :start_link, [opts]},
      type: :worker,
      shutdown: 5_000
    }
  end

  @doc """
  Starts an instance (see `child_spec/1` for the options). Invalid options and definitions
  raise `ArgumentError` here, in the caller.
  """
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts) do
    opts |> build!() |> Hotpath.Metrics.Owner.start_link()
  end

  defp validate!(opts), do: Hotpath.Options.validate!(opts, @start_schema, "Hotpath.Metrics")

  @doc false
  # The `:metrics` option: every definition normalised (a type of the options schema).
  def definitions(list) when is_list(list) do
    if Definition.proper_list?(list),
      do: {:ok, Enum.map(list, &Definition.normalize!/1)},
      else: :error
  end

  def definitions(_other), do: :error

  @doc false
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
      |> Enum.group_by(fn {m, _} -> m.event_name end, fn {m, i} ->
        {i, m.kind, m.measurement, m.keep, m.tag_values}
      end)

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

  defp spec!(%Definition{} = m, max_series) do
    ro = m.reporter_options

    unless Keyword.keyword?(ro) do
      raise ArgumentError, "#{inspect(m.name)}: reporter_options must be a keyword list"
    end

    Definition.tags!(m.tags, m.name)

    buckets =
      if m.kind == :distribution do
        buckets = Keyword.get(ro, :buckets, Definition.default_buckets(m.unit))

        unless is_list(buckets) and Definition.proper_list?(buckets) do
          raise ArgumentError,
                "#{inspect(m.name)}: buckets must be a list of numbers, got: #{inspect(buckets)}"
        end

        Hotpath.Histogram.buckets!(buckets)
      else
        []
      end

    window =
      if m.kind == :summary,
        do: Hotpath.Histogram.window!(Keyword.get(ro, :window, {60_000, 6})),
        else: nil

    quantiles =
      case Keyword.get(ro, :quantiles, @default_quantiles) do
        qs when is_list(qs) and qs != [] ->
          unless Definition.proper_list?(qs) do
            raise ArgumentError,
                  "#{inspect(m.name)}: quantiles must be a proper list, got: #{inspect(qs)}"
          end

          Enum.map(qs, fn
            q when is_number(q) and q >= 0 and q <= 1 ->
              q / 1

            q ->
              raise ArgumentError,
                    "#{inspect(m.name)}: quantiles must be numbers in 0..1, got: #{inspect(q)}"
          end)

        other ->
          raise ArgumentError,
                "#{inspect(m.name)}: quantiles must be a non-empty list, got: #{inspect(other)}"
      end

    relative_error =
      case Keyword.get(ro, :relative_error, 0.01) do
        r when is_number(r) ->
          r / 1

        other ->
          raise ArgumentError,
                "#{inspect(m.name)}: relative_error must be a number, got: #{inspect(other)}"
      end

    %{
      kind: m.kind,
      name: Definition.prometheus_name(m),
      help: m.description || "#{m.kind} of #{Enum.join(m.name, ".")}#{unit_text(m.unit)}",
      labels: Enum.map(m.tags, &Definition.label_name/1),
      tag_keys: m.tags,
      max_series:
        Hotpath.Options.check!(
          :max_series,
          Keyword.get(ro, :max_series, max_series),
          {:integer, 1, @max_series},
          "reporter_options of #{inspect(m.name)}"
        ),
      buckets: buckets,
      quantiles: quantiles,
      relative_error: relative_error,
      window: window,
      binary_name: Enum.join(m.name, "."),
      atom_name: m.name
    }
  end

  defp unit_text(:unit), do: ""
  defp unit_text(unit), do: " (#{unit})"

  # ---- hot path -----------------------------------------------------------------------

  @doc """
  Records `value` with `tags` (a map holding every tag of the metric) into every metric named
  `name` (`"a.b.c"` or `[:a, :b, :c]`) of `instance`. Counters ignore `value`. Returns `:ok`.

  Raises `Hotpath.NotRunningError` when no instance of that name runs, and `ArgumentError`
  when the metric does not exist, the value is not a number, or a tag is missing. Tag values
  that are not strings, atoms or numbers are converted with `inspect/1`.
  """
  @spec record(instance(), String.t() | [atom()], number() | nil, map()) :: :ok
  def record(instance, name, value, tags \\ %{}) do
    case Native.metrics_record_named(instance, name, value, tags) do
      :ok -> :ok
      refused -> retry(refused, registry!(instance), instance, name, value, tags)
    end
  end

  defp retry(:convert_tags, registry, instance, name, value, tags) do
    case Native.metrics_record(registry, name, value, stringify_tags(tags)) do
      :ok -> :ok
      refused -> retry(refused, registry, instance, name, value, tags)
    end
  end

  defp retry(:bad_value, _registry, instance, name, value, tags) when is_integer(value) do
    # Integers beyond 64 bits: record them as floats.
    record(instance, name, to_float!(value), tags)
  end

  defp retry(refused, _registry, instance, name, value, tags),
    do: refuse!(refused, instance, name, value, tags)

  defp to_float!(int) do
    :erlang.float(int)
  rescue
    ArgumentError -> reraise ArgumentError, "value #{int} is too large to record", __STACKTRACE__
  end

  defp refuse!(:unknown_instance, instance, _name, _value, _tags), do: not_running!(instance)

  defp refuse!(:bad_value, _instance, name, value, _tags),
    do: raise(ArgumentError, "#{inspect(name)}: value must be a number, got: #{inspect(value)}")

  defp refuse!(:label_too_long, _instance, name, _value, _tags) do
    raise ArgumentError,
          "#{inspect(name, limit: 10)}: a tag value is longer than #{@max_label_bytes} bytes " <>
            "(label values are at most #{@max_label_bytes} bytes of text)"
  end

  defp refuse!(:convert_tags, _instance, _name, _value, tags),
    do: raise(ArgumentError, "tag values could not be converted: #{inspect(tags)}")

  defp refuse!(:missing_tag, instance, name, _value, tags) do
    needed =
      for m <- meta!(instance),
          m.name == Definition.name!(name),
          tag <- m.tags,
          uniq: true,
          do: tag

    raise ArgumentError,
          "#{inspect(name)} needs the tags #{inspect(needed)}, got: #{inspect(tags)}"
  end

  defp refuse!(:unknown_metric, instance, name, _value, _tags) do
    known = instance |> meta!() |> Enum.map(&Enum.join(&1.name, ".")) |> Enum.uniq()

    raise ArgumentError,
          "no metric named #{inspect(name)} in #{inspect(instance)}; known metrics: #{inspect(known)}"
  end

  @typedoc "A pre-resolved series, from `handle/3`."
  @opaque handle :: reference()

  @doc """
  Resolves `name` and `tags` once, for hot loops that record into the same series many times:
  `record_handle/2` then skips the name and series lookups (about the cost of
  `Hotpath.Histogram.record/2`). The series it points to are never pruned while the handle is
  alive. Raises like `record/4`.
  """
  @spec handle(instance(), String.t() | [atom()], map()) :: handle()
  def handle(instance, name, tags \\ %{}) do
    case Native.metrics_handle(instance, name, tags) do
      {:ok, handle} ->
        handle

      :convert_tags ->
        case Native.metrics_handle(instance, name, stringify_tags(tags)) do
          {:ok, handle} -> handle
          refused -> refuse!(refused, instance, name, nil, tags)
        end

      refused ->
        refuse!(refused, instance, name, nil, tags)
    end
  end

  @doc """
  Records `value` into the series of a handle from `handle/3`.

      iex> {:ok, _} = Hotpath.Metrics.start_link(name: :doc_metrics,
      ...>   metrics: [Hotpath.Metrics.sum("doc.jobs.duration", tags: [:queue])])
      iex> h = Hotpath.Metrics.handle(:doc_metrics, "doc.jobs.duration", %{queue: "mail"})
      iex> Hotpath.Metrics.record_handle(h, 2.5)
      :ok
      iex> [%{series: [%{tags: %{queue: "mail"}, value: 2.5}]}] = Hotpath.Metrics.snapshot(:doc_metrics)
  """
  @spec record_handle(handle(), number() | nil) :: :ok
  def record_handle(handle, value) do
    case Native.metrics_record_handle(handle, value) do
      :ok ->
        :ok

      :bad_value when is_integer(value) ->
        record_handle(handle, to_float!(value))

      :bad_value ->
        raise ArgumentError, "value must be a number, got: #{inspect(value)}"
    end
  end

  @doc false
  # The tags with every value as label text (the NIF's slow path asked for it). Raises
  # ArgumentError for a value whose text is longer than the label limit; nothing long is
  # converted (a long binary is refused by its size, a large term by `inspect/1`'s limits).
  def stringify_tags(tags) when is_map(tags) do
    Map.new(tags, fn {k, v} -> {k, label_text(v)} end)
  end

  def stringify_tags(tags), do: raise(ArgumentError, "tags must be a map, got: #{inspect(tags)}")

  defp label_text(v) when is_binary(v) and byte_size(v) > @max_label_bytes, do: too_long!()
  defp label_text(v) when is_binary(v), do: if(String.valid?(v), do: v, else: checked(inspect(v)))
  defp label_text(v) when is_atom(v), do: Atom.to_string(v)
  # Integers beyond 64 bits: longer than the limit when they have more digits than it allows
  # (compared before any conversion, which costs time in the number's size).
  defp label_text(v) when is_integer(v) and abs(v) >= @max_label_int, do: too_long!()
  defp label_text(v) when is_integer(v), do: checked(Integer.to_string(v))
  defp label_text(v), do: checked(inspect(v))

  defp checked(text) when byte_size(text) > @max_label_bytes, do: too_long!()
  defp checked(text), do: text

  defp too_long!,
    do: raise(ArgumentError, "a tag value is longer than #{@max_label_bytes} bytes as text")

  defp not_running!(instance) when is_atom(instance),
    do: raise(Hotpath.NotRunningError, module: __MODULE__, name: instance)

  defp not_running!(other) do
    raise ArgumentError,
          "a Hotpath.Metrics instance is named by an atom, got: #{inspect(other, limit: 10)}"
  end

  @doc false
  def registry!(instance) do
    case :persistent_term.get({__MODULE__, instance}, nil) do
      nil ->
        not_running!(instance)

      registry ->
        registry
    end
  end

  @doc false
  def meta!(instance) do
    case :persistent_term.get({__MODULE__, instance, :meta}, nil) do
      nil ->
        not_running!(instance)

      meta ->
        meta
    end
  end

  # ---- reads --------------------------------------------------------------------------

  @typedoc "One metric in a snapshot."
  @type metric_snapshot :: %{
          name: [atom()],
          kind: Definition.kind(),
          dropped: non_neg_integer(),
          series: [%{required(:tags) => map(), optional(atom()) => term()}]
        }

  @doc """
  Every metric and series. Counters, sums and last values have `:value`; summaries and
  distributions have the fields of `Hotpath.Histogram.snapshot/2` (`count`, `sum`, `min`,
  `max`, `mean`, `quantiles`, `buckets`, ...) and `:window` (the same over the window, or
  `nil`). Runs on a dirty scheduler.
  """
  @spec snapshot(instance()) :: [metric_snapshot()]
  def snapshot(instance), do: snapshot_of(registry!(instance), meta!(instance))

  @doc false
  def snapshot_of(registry, meta) do
    registry
    |> Native.metrics_snapshot()
    |> Enum.zip(meta)
    |> Enum.map(fn {{dropped, series}, m} ->
      %{
        name: m.name,
        kind: m.kind,
        dropped: dropped,
        series: Enum.map(series, &series_snapshot(&1, m))
      }
    end)
  end

  defp series_snapshot({labels, read}, m) do
    tags = m.tags |> Enum.zip(labels) |> Map.new()

    case read do
      {:counter, n} -> %{tags: tags, value: n}
      {:sum, s} -> %{tags: tags, value: s}
      {:last_value, v} -> %{tags: tags, value: v}
      {:histogram, c, w} -> Map.merge(stats(c, m), %{tags: tags, window: w && stats(w, m)})
    end
  end

  defp stats(s, m) do
    buckets =
      s.buckets &&
        Enum.map(s.buckets, fn
          {nil, c} -> {:infinity, c}
          bucket -> bucket
        end)

    %{s | quantiles: m.quantiles |> Enum.zip(s.quantiles) |> Map.new(), buckets: buckets}
  end

  @doc """
  The registry in the Prometheus text format 0.0.4 (serve it with `content_type/0`). Renders
  on a dirty scheduler.

  With `cluster: true` it renders the cluster view of `cluster_snapshot/2` instead (same
  `:timeout` and `:nodes` options): every series merged across the nodes, so one scrape gives
  cluster-wide counts and quantiles (a merged histogram is one histogram of every node's
  values, within the same relative error), followed by a `hotpath_metrics_cluster_up` gauge
  with one sample per node, `1` when its series are in the view and `0` when it did not
  answer.
  """
  @spec prometheus(instance(), keyword()) :: iodata()
  def prometheus(instance, opts \\ [])

  def prometheus(instance, []), do: instance |> registry!() |> Native.metrics_prometheus()

  def prometheus(instance, opts) do
    opts = Hotpath.Options.validate!(opts, @prometheus_schema, "Hotpath.Metrics.prometheus/2")

    case opts[:cluster] do
      false ->
        prometheus(instance, [])

      true ->
        view = Cluster.collect(instance, Keyword.delete(opts, :cluster))

        up =
          Enum.map(view.requested, fn node ->
            {Atom.to_string(node), node in view.nodes}
          end)

        Native.metrics_prometheus_cluster(view.registry, up)
    end
  end

  @typedoc """
  Why a node's series are missing from a cluster view: it did not answer within the timeout,
  is not connected, does not run an instance of that name, holds metrics of the same name but
  another definition (`{:incompatible, message}`), sent what is not a registry export
  (`{:malformed, message}`), or the call failed otherwise (`{:exception, reason}`).
  """
  @type cluster_failure ::
          :timeout
          | :noconnection
          | :not_running
          | {:incompatible | :malformed, String.t()}
          | {:exception, term()}

  @doc """
  The instance's metrics merged across the cluster: the registry of the same name is read on
  every node (with `:erpc.multicall/5`) and merged into one view, shaped like `snapshot/1`.

    * counters, sums and dropped counts add up;
    * summaries and distributions merge bucket by bucket (through the binary format of
      `Hotpath.Histogram.to_binary/1`), so their quantiles are those of one histogram that
      recorded every node's values, within the same relative error; a summary's window is
      the union of the nodes' windows;
    * last values cannot be combined: each node's value stays its own series, with a `:node`
      tag (the node name as a string) added unless the metric already has a `:node` tag.

  Nodes that do not answer are reported, never raised: the result is
  `%{metrics: [...], nodes: merged_nodes, failed: [{node, t:cluster_failure/0}]}`. Metrics are
  matched by name, with this node's definitions; the series cap of the view is
  `:max_series` times the number of nodes.

  Options:

  #{Hotpath.Options.docs(@cluster_schema)}

  Raises `Hotpath.NotRunningError` when no instance of that name runs on this node.

      iex> {:ok, _} = Hotpath.Metrics.start_link(name: :doc_cluster,
      ...>   metrics: [Hotpath.Metrics.counter("doc.cluster.jobs")])
      iex> Hotpath.Metrics.record(:doc_cluster, "doc.cluster.jobs", nil)
      iex> %{metrics: [%{series: [%{value: 1}]}], failed: []} =
      ...>   Hotpath.Metrics.cluster_snapshot(:doc_cluster)
  """
  @spec cluster_snapshot(instance(), keyword()) :: %{
          metrics: [metric_snapshot()],
          nodes: [node()],
          failed: [{node(), cluster_failure()}]
        }
  def cluster_snapshot(instance, opts \\ []) do
    opts = Hotpath.Options.validate!(opts, @cluster_schema, "Hotpath.Metrics.cluster_snapshot/2")
    view = Cluster.collect(instance, opts)
    %{metrics: snapshot_of(view.registry, view.meta), nodes: view.nodes, failed: view.failed}
  end

  @doc false
  # What `cluster_snapshot/2` reads on each node (called there through :erpc).
  @spec cluster_export(instance()) :: {:ok, list()} | {:error, :not_running}
  def cluster_export(instance) do
    case :persistent_term.get({__MODULE__, instance}, nil) do
      nil -> {:error, :not_running}
      registry -> {:ok, Native.metrics_export(registry)}
    end
  end

  @doc "The `Content-Type` of `prometheus/1`."
  @spec content_type() :: String.t()
  def content_type, do: "text/plain; version=0.0.4; charset=utf-8"

  @doc "Removes every series not recorded since the previous prune; returns how many."
  @spec prune(instance()) :: non_neg_integer()
  def prune(instance), do: instance |> registry!() |> Native.metrics_prune()

  @doc """
  Number of series and approximate native memory in bytes (`:memory_bytes`). Raises
  `Hotpath.NotRunningError` when no instance of that name runs.
  """
  @spec info(instance()) :: %{series: non_neg_integer(), memory_bytes: non_neg_integer()}
  def info(instance) do
    %{series: series, memory: bytes} = instance |> registry!() |> Native.metrics_info()
    %{series: series, memory_bytes: bytes}
  end
end
