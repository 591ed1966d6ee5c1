defmodule Hotpath.Metrics.Recipes do
  @moduledoc """
  Ready-made `Hotpath.Metrics` definitions for the standard `:telemetry` events of Phoenix,
  Ecto and the VM, named and unit-converted the Prometheus way (seconds, bytes, `_total`
  counters) so the exposition passes `promtool check metrics` lint.

  Drop them into your Telemetry supervisor:

      # lib/my_app_web/telemetry.ex
      def init(_arg) do
        metrics =
          Hotpath.Metrics.Recipes.phoenix() ++
            Hotpath.Metrics.Recipes.ecto(repo: [:my_app, :repo]) ++
            Hotpath.Metrics.Recipes.vm()

        children = [
          # telemetry_poller's default measurements emit the [:vm, ...] events every period
          {:telemetry_poller, measurements: [], period: 10_000},
          {Hotpath.Metrics, name: MyAppWeb.Metrics, metrics: metrics}
        ]

        Supervisor.init(children, strategy: :one_for_one)
      end

  and serve them with `Hotpath.Metrics.Plug` (or `Hotpath.Metrics.HTTP`). Add your own
  definitions to the list as usual. Every histogram is a `distribution` (classic buckets,
  Prometheus histograms); pass `buckets:` (in seconds) to change them.
  """

  alias Hotpath.Metrics

  # Prometheus client defaults, 5 ms to 10 s.
  @buckets [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
  @query_buckets [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
  @prefix {:custom, __MODULE__, :event_prefix, "a non-empty list of atoms (an event prefix)"}
  # Buckets are checked where the histogram is built (`Hotpath.Histogram.buckets!/1`).
  @phoenix_schema [
    endpoint_prefix: [type: @prefix, default: [:phoenix, :endpoint]],
    buckets: [type: :any, default: @buckets]
  ]
  @ecto_schema [
    repo: [type: @prefix, required: true],
    name: [type: :any],
    buckets: [type: :any, default: @query_buckets]
  ]

  @doc """
  Phoenix request metrics:

    * `phoenix_endpoint_duration_seconds` (histogram, labels `method`, `status`) from
      `[:phoenix, :endpoint, :stop]`: every request through the endpoint;
    * `phoenix_router_dispatch_duration_seconds` (histogram, labels `method`, `route`,
      `status`) from `[:phoenix, :router_dispatch, :stop]`: `route` is the route pattern
      (`/users/:id`), so its cardinality is that of your router;
    * `phoenix_router_dispatch_exceptions_total` (counter, labels `method`, `route`, `kind`)
      from `[:phoenix, :router_dispatch, :exception]`.

  Options: `:endpoint_prefix` - the `event_prefix` of your endpoint's `Plug.Telemetry`
  (default `[:phoenix, :endpoint]`); `:buckets` - histogram buckets in seconds.

      iex> Hotpath.Metrics.Recipes.phoenix() |> Enum.map(&Hotpath.Metrics.Definition.prometheus_name/1)
      ["phoenix_endpoint_duration_seconds", "phoenix_router_dispatch_duration_seconds",
       "phoenix_router_dispatch_exceptions_total"]
  """
  @spec phoenix(keyword()) :: [Metrics.Definition.t()]
  def phoenix(opts \\ []) do
    opts = Hotpath.Options.validate!(opts, @phoenix_schema, "Hotpath.Metrics.Recipes.phoenix/1")
    prefix = opts[:endpoint_prefix]
    buckets = opts[:buckets]

    [
      Metrics.distribution(prefix ++ [:stop, :duration],
        unit: {:native, :second},
        tags: [:method, :status],
        tag_values: &__MODULE__.conn_tags/1,
        description: "Time to answer a request, through the Phoenix endpoint",
        reporter_options: [buckets: buckets, prometheus_name: "phoenix_endpoint_duration_seconds"]
      ),
      Metrics.distribution([:phoenix, :router_dispatch, :stop, :duration],
        unit: {:native, :second},
        tags: [:method, :route, :status],
        tag_values: &__MODULE__.route_tags/1,
        description: "Time spent in a Phoenix route's pipelines and action",
        reporter_options: [
          buckets: buckets,
          prometheus_name: "phoenix_router_dispatch_duration_seconds"
        ]
      ),
      Metrics.counter([:phoenix, :router_dispatch, :exception, :duration],
        tags: [:method, :route, :kind],
        tag_values: &__MODULE__.exception_tags/1,
        description: "Exceptions raised while dispatching a Phoenix route",
        reporter_options: [prometheus_name: "phoenix_router_dispatch_exceptions"]
      )
    ]
  end

  @doc """
  Ecto query metrics for the repo whose `telemetry_prefix` is `:repo` (required, e.g.
  `[:my_app, :repo]`; events `repo ++ [:query]`). Names start with `:name` (default: the
  prefix joined by `_`, e.g. `my_app_repo`):

    * `<name>_query_total_time_seconds` (histogram, label `source`): the whole query;
    * `<name>_query_queue_time_seconds`, `<name>_query_query_time_seconds`,
      `<name>_query_decode_time_seconds` (histograms): its parts, each recorded when Ecto
      reports it;
    * `<name>_queries_total` (counter, labels `source`, `result`: `ok` or `error`).

  `:buckets` sets the histogram buckets (seconds; default 0.5 ms to 2.5 s).

      iex> Hotpath.Metrics.Recipes.ecto(repo: [:my_app, :repo]) |> Enum.map(&Hotpath.Metrics.Definition.prometheus_name/1)
      ["my_app_repo_query_total_time_seconds", "my_app_repo_query_queue_time_seconds",
       "my_app_repo_query_query_time_seconds", "my_app_repo_query_decode_time_seconds",
       "my_app_repo_queries_total"]
  """
  @spec ecto(keyword()) :: [Metrics.Definition.t()]
  def ecto(opts) do
    opts = Hotpath.Options.validate!(opts, @ecto_schema, "Hotpath.Metrics.Recipes.ecto/1")
    repo = opts[:repo]
    name = Keyword.get_lazy(opts, :name, fn -> Enum.join(repo, "_") end)
    buckets = opts[:buckets]
    event = repo ++ [:query]

    total =
      Metrics.distribution(event ++ [:total_time],
        unit: {:native, :second},
        tags: [:source],
        tag_values: &__MODULE__.query_tags/1,
        description: "Total time of an Ecto query (queue, query and decode)",
        reporter_options: [buckets: buckets, prometheus_name: "#{name}_query_total_time_seconds"]
      )

    parts =
      for part <- [:queue_time, :query_time, :decode_time] do
        Metrics.distribution(event ++ [part],
          unit: {:native, :second},
          keep: &__MODULE__.has_measurement(&1, &2, part),
          description: "The #{String.replace(Atom.to_string(part), "_", " ")} of Ecto queries",
          reporter_options: [buckets: buckets, prometheus_name: "#{name}_query_#{part}_seconds"]
        )
      end

    count =
      Metrics.counter(event ++ [:count],
        tags: [:source, :result],
        tag_values: &__MODULE__.query_tags/1,
        description: "Ecto queries by source table and result",
        reporter_options: [prometheus_name: "#{name}_queries_total"]
      )

    [total | parts] ++ [count]
  end

  @doc """
  VM measurements, as emitted by `telemetry_poller`'s default measurements:

    * `vm_memory_<kind>_bytes` (gauges) from `[:vm, :memory]`: total, processes, system,
      atom, binary, code, ets;
    * `vm_total_run_queue_length`, `vm_cpu_run_queue_length`, `vm_io_run_queue_length` from
      `[:vm, :total_run_queue_lengths]` (processes ready to run: a sustained non-zero value
      means the schedulers are saturated);
    * `vm_processes`, `vm_atoms`, `vm_ports` from `[:vm, :system_counts]`.

      iex> Hotpath.Metrics.Recipes.vm() |> Enum.map(&Hotpath.Metrics.Definition.prometheus_name/1) |> Enum.take(2)
      ["vm_memory_total_bytes", "vm_memory_processes_bytes"]
  """
  @spec vm(keyword()) :: [Metrics.Definition.t()]
  def vm(opts \\ []) do
    Hotpath.Options.validate!(opts, [], "Hotpath.Metrics.Recipes.vm/1")

    memory =
      for kind <- [:total, :processes, :system, :atom, :binary, :code, :ets] do
        Metrics.last_value([:vm, :memory, kind],
          unit: :byte,
          description: "VM memory: #{kind} (erlang:memory/0)",
          reporter_options: [prometheus_name: "vm_memory_#{kind}_bytes"]
        )
      end

    run_queues =
      for kind <- [:total, :cpu, :io] do
        Metrics.last_value([:vm, :total_run_queue_lengths, kind],
          description: "Processes ready to run: #{kind} run queues",
          reporter_options: [prometheus_name: "vm_#{kind}_run_queue_length"]
        )
      end

    counts =
      for {key, noun} <- [process_count: "processes", atom_count: "atoms", port_count: "ports"] do
        Metrics.last_value([:vm, :system_counts, key],
          description: "Number of #{noun} in the VM",
          reporter_options: [prometheus_name: "vm_#{noun}"]
        )
      end

    memory ++ run_queues ++ counts
  end

  @doc false
  # An event prefix: a non-empty list of atoms (a type of the options schemas).
  def event_prefix([_ | _] = prefix) do
    if Enum.all?(prefix, &is_atom/1), do: {:ok, prefix}, else: :error
  end

  def event_prefix(_other), do: :error

  # Tag functions are public named functions so definitions can be stored and compared, and
  # they never raise on unexpected metadata: a missing field becomes "unknown".

  @doc false
  def conn_tags(%{conn: conn}), do: %{method: field(conn, :method), status: field(conn, :status)}
  def conn_tags(_metadata), do: %{method: "unknown", status: "unknown"}

  @doc false
  def route_tags(%{conn: conn} = metadata),
    do: %{
      method: field(conn, :method),
      route: text(metadata[:route]),
      status: field(conn, :status)
    }

  def route_tags(metadata),
    do: %{method: "unknown", route: text(metadata[:route]), status: "unknown"}

  @doc false
  def exception_tags(metadata) do
    method = with %{conn: conn} <- metadata, do: field(conn, :method)
    %{method: text(method), route: text(metadata[:route]), kind: text(metadata[:kind])}
  end

  @doc false
  def query_tags(metadata) do
    result =
      case metadata[:result] do
        {:ok, _} -> "ok"
        {:error, _} -> "error"
        _ -> "unknown"
      end

    %{source: text(metadata[:source]), result: result}
  end

  @doc false
  def has_measurement(_metadata, measurements, key), do: is_map_key(measurements, key)

  defp field(%{} = conn, key), do: text(Map.get(conn, key))
  defp field(_conn, _key), do: "unknown"

  defp text(nil), do: "unknown"

  defp text(value) when is_binary(value) or is_atom(value) or is_integer(value),
    do: to_string(value)

  defp text(_value), do: "unknown"
end
