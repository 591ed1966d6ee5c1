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

  `record/4` is one NIF call (no message to a process): it finds the instance by name in the
  native table of running instances, resolves the metric name, reads
  the tags out of the map and records into the series (found through a per-thread cache),
  without allocating once the series exists. Tag values that are binaries, atoms or integers
  are read natively; others (floats included: `1.0` is the label `"1.0"`, never `"1"`) are
  converted with `inspect/1`. For a loop that records into the
  same series, `handle/3` resolves it once and `record_handle/2` costs about as much as
  `Hotpath.Histogram.record/2`.

  Summaries read the monotonic clock on each record (for their window); the other kinds do not.
  A value recorded into a series while `prune/1` removes it may be lost.

  ## Memory

  A summary or distribution series is a native histogram with one single-writer shard (owned
  by the first scheduler thread that records into it) and one shared shard that every other
  thread updates atomically, so its memory does not grow with the number of schedulers. Its
  log buckets are allocated as values arrive: the first 8 distinct buckets in the shard itself
  (16 bytes each), then 64 more slots, then 64-counter blocks. A 10-bucket distribution series
  that sees a few distinct values costs about 0.8 KB, a summary about 0.9 KB plus about 0.4 KB
  per window slot in use (about 3.2 KB with all 6 slots of the default window); `info/1`
  reports the total (`:memory_bytes`).

  ## Native histograms

  In the protobuf format (`prometheus/2` with `format: :protobuf`, which a Prometheus server
  started with `--enable-feature=native-histograms` asks for) a summary or distribution is a
  Prometheus native histogram: exponential buckets of schema `min(m + 2, 8)` for a histogram
  of `2^m` buckets per octave (schema 8 for the default 1 % relative error), a zero bucket
  holding exactly what the histogram counts as zero (magnitudes below the floor), and sparse
  spans. Each Hotpath bucket is counted in the native bucket that holds its estimate, so
  `histogram_quantile/2` on the server answers within `2^(2^-schema) - 1` (0.27 % at
  schema 8) of `Hotpath.Histogram.quantile/2` on the same data, and counts and sums are
  exact. (When `q * count` is a whole number the two may pick neighbouring values: Hotpath
  takes the nearest rank, Prometheus 2.46+ counts ranks from the top for `q >= 0.5`.) A summary exported this way is queried with `histogram_quantile/2`,
  `histogram_count/1` and `histogram_sum/1` instead of its `quantile` samples (which the text
  formats keep).

  ## Exemplars

  With `reporter_options: [exemplar: :trace_id]` a counter, summary or distribution keeps the
  last exemplar of each of its series (a counter), classic buckets (a distribution) or the
  series (a summary): the value of the event's `:trace_id` metadata (a string or an integer) as
  the label `trace_id`, the value recorded and the time (wall clock). With
  `exemplar: :opentelemetry` it takes the current OpenTelemetry span instead (`trace_id` and
  `span_id`, lowercase hex) when `opentelemetry_api` is loaded as the instance starts (its
  modules are looked up then, never at compile time). Events without one record as usual and
  pay nothing for it; the exemplar's labels are at most 128 characters (a longer trace id
  records the value without its exemplar). OpenMetrics and protobuf scrapes carry them (the
  Prometheus text format cannot); Prometheus stores them with `--enable-feature=exemplar-storage`.
  Cluster views carry no exemplars and no `_created`.

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
  dropped. Numbers become their Elixir text (`1` is `"1"`, `1.0` is `"1.0"`); other tag values
  that are not strings or atoms are converted with `inspect/1` and its default limits (so two large terms that differ only beyond those limits share a
  series). A name segment is at most 255 characters (it becomes an atom). `:prune_every` and
  the cluster `:timeout` are at most `4_294_967_295` ms; `:max_series` at most `10_000_000`.
  """

  alias Hotpath.Metrics.{Cluster, Definition, Instance, Recording, Snapshot, Spec}
  alias Hotpath.Native

  @cluster_schema Cluster.options()
  @prometheus_schema [
                       format: [
                         type: {:in, [:prometheus, :openmetrics, :protobuf]},
                         default: :prometheus,
                         doc:
                           "`:prometheus` for the text format 0.0.4, `:openmetrics` for OpenMetrics 1.0 text, " <>
                             "`:protobuf` for the Prometheus protobuf format with native histograms (see `content_type/1`)"
                       ],
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
  A counter: counts events. Options are those of `Telemetry.Metrics`, validated here
  (`ArgumentError`):

  #{Definition.docs()}

  `Hotpath.Metrics.Definition` lists the reporter options Hotpath reads.
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

  #{Spec.docs()}
  """
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts) do
    opts = Spec.validate!(opts)

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
    opts |> Spec.build!() |> Hotpath.Metrics.Owner.start_link()
  end

  # ---- hot path -----------------------------------------------------------------------

  @doc """
  Records `value` with `tags` (a map holding every tag of the metric) into every metric named
  `name` (`"a.b.c"` or `[:a, :b, :c]`) of `instance`. Counters ignore `value`. Returns `:ok`.

  Raises `Hotpath.NotRunningError` when no instance of that name runs, and `ArgumentError`
  when the metric does not exist, the value is not a number, or a tag is missing. Tag values
  that are not strings or atoms are converted to text (`1` is `"1"`, `1.0` is `"1.0"`, other
  terms through `inspect/1`).
  """
  @spec record(instance(), String.t() | [atom()], number() | nil, map()) :: :ok
  def record(instance, name, value, tags \\ %{}) do
    case Native.metrics_record_named(instance, name, value, tags) do
      :ok -> :ok
      refused -> Recording.retry(refused, instance, name, value, tags)
    end
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
        case Native.metrics_handle(instance, name, Recording.stringify_tags(tags)) do
          {:ok, handle} -> handle
          refused -> Recording.refuse!(refused, instance, name, nil, tags)
        end

      refused ->
        Recording.refuse!(refused, instance, name, nil, tags)
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
        record_handle(handle, Recording.to_float!(value))

      :bad_value ->
        raise ArgumentError, "value must be a number, got: #{inspect(value)}"
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
  def snapshot(instance), do: Snapshot.of(Instance.registry!(instance), Instance.meta!(instance))

  @doc """
  The registry in the Prometheus text format 0.0.4, or with `format: :openmetrics` in
  OpenMetrics 1.0 text, or with `format: :protobuf` in the Prometheus protobuf format (serve
  each with `content_type/1`; `Hotpath.Metrics.HTTP` picks one from the scraper's `accept`
  header). Renders on a dirty scheduler.

  OpenMetrics names a counter family without its `_total` suffix (the samples keep it),
  escapes `"` in `# HELP`, adds a `_created` sample (the series' creation, Unix seconds) to
  counters, summaries and distributions, carries exemplars (see "Exemplars" above) and ends
  with `# EOF`; the other samples are the same. A `sum` is typed `unknown` there (an
  OpenMetrics counter cannot go down).

  The protobuf format exports summaries and distributions as **native histograms** (see
  "Native histograms" above); a distribution keeps its classic buckets alongside, for servers
  that do not read native histograms. Counters, sums, last values and the dropped-events
  counter are as in the text format.

  With `cluster: true` it renders the cluster view of `cluster_snapshot/2` instead (same
  `:timeout` and `:nodes` options): every series merged across the nodes, so one scrape gives
  cluster-wide counts and quantiles (a merged histogram is one histogram of every node's
  values, within the same relative error), followed by a `hotpath_metrics_cluster_up` gauge
  with one sample per node, `1` when its series are in the view and `0` when it did not
  answer.
  """
  @spec prometheus(instance(), keyword()) :: iodata()
  def prometheus(instance, opts \\ [])

  def prometheus(instance, []),
    do: instance |> Instance.registry!() |> Native.metrics_prometheus(:prometheus)

  def prometheus(instance, opts) do
    opts = Hotpath.Options.validate!(opts, @prometheus_schema, "Hotpath.Metrics.prometheus/2")

    case opts[:cluster] do
      false ->
        instance |> Instance.registry!() |> Native.metrics_prometheus(opts[:format])

      true ->
        view = Cluster.collect(instance, Keyword.drop(opts, [:cluster, :format]))

        up =
          Enum.map(view.requested, fn node ->
            {Atom.to_string(node), node in view.nodes}
          end)

        Native.metrics_prometheus_cluster(view.registry, up, opts[:format])
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
    %{metrics: Snapshot.of(view.registry, view.meta), nodes: view.nodes, failed: view.failed}
  end

  @doc """
  The `Content-Type` of `prometheus/2` in `format` (default `:prometheus`).

      iex> Hotpath.Metrics.content_type()
      "text/plain; version=0.0.4; charset=utf-8"
      iex> Hotpath.Metrics.content_type(:openmetrics)
      "application/openmetrics-text; version=1.0.0; charset=utf-8"
  """
  @spec content_type(:prometheus | :openmetrics | :protobuf) :: String.t()
  def content_type(format \\ :prometheus)
  def content_type(:prometheus), do: "text/plain; version=0.0.4; charset=utf-8"
  def content_type(:openmetrics), do: "application/openmetrics-text; version=1.0.0; charset=utf-8"

  def content_type(:protobuf),
    do:
      "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"

  @doc "Removes every series not recorded since the previous prune; returns how many."
  @spec prune(instance()) :: non_neg_integer()
  def prune(instance), do: instance |> Instance.registry!() |> Native.metrics_prune()

  @doc """
  Number of series and approximate native memory in bytes (`:memory_bytes`). Raises
  `Hotpath.NotRunningError` when no instance of that name runs.
  """
  @spec info(instance()) :: %{series: non_neg_integer(), memory_bytes: non_neg_integer()}
  def info(instance) do
    %{series: series, memory: bytes} = instance |> Instance.registry!() |> Native.metrics_info()
    %{series: series, memory_bytes: bytes}
  end
end
