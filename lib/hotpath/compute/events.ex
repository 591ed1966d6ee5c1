defmodule Hotpath.Compute.Events do
  @moduledoc false
  # The telemetry events of `Hotpath.Compute` (documented in `Hotpath.Telemetry`), built by
  # pure functions from the data the pool or a worker has at hand, so they are tested without
  # the package.

  @typedoc "An event name, its measurements and its metadata."
  @type event :: {[atom()], map(), map()}

  @doc """
  Builds the event of `kind` from the data the pool or a worker has at hand.

      iex> {name, m, meta} =
      ...>   Hotpath.Compute.Events.event(:overloaded, %{
      ...>     pool: MyPool, running: 2, queued: 10, max_concurrency: 2, max_queue: 10
      ...>   })
      iex> {name, m, meta}
      {[:hotpath, :compute, :pool, :overloaded], %{running: 2, queued: 10},
       %{pool: MyPool, max_concurrency: 2, max_queue: 10}}
  """
  @spec event(:start | :stop | :exception | :overloaded, map()) :: event()
  def event(:start, data) do
    {[:hotpath, :compute, :job, :start],
     %{
       system_time: Map.get_lazy(data, :system_time, &System.system_time/0),
       monotonic_time: data.monotonic_time,
       queue_time: data.queue_time,
       running: data.running,
       queued: data.queued,
       saturation: data.running / data.max_concurrency
     }, Map.take(data, [:pool, :max_concurrency, :max_queue])}
  end

  def event(:stop, data) do
    {status, error} =
      case data.result do
        {:ok, _} -> {:ok, nil}
        {:error, reason} -> {:error, reason}
      end

    {[:hotpath, :compute, :job, :stop], durations(data),
     %{pool: data.pool, status: status, error: error}}
  end

  def event(:exception, data) do
    {[:hotpath, :compute, :job, :exception], durations(data),
     %{pool: data.pool, kind: data.kind, reason: data.reason}}
  end

  def event(:overloaded, data) do
    {[:hotpath, :compute, :pool, :overloaded], Map.take(data, [:running, :queued]),
     Map.take(data, [:pool, :max_concurrency, :max_queue])}
  end

  defp durations(data) do
    %{
      duration: data.monotonic_time - data.started_at,
      queue_time: data.queue_time,
      monotonic_time: data.monotonic_time
    }
  end

  @doc "Emits the event of `kind` through `Hotpath.Telemetry`."
  @spec emit(:start | :stop | :exception | :overloaded, map()) :: :ok
  def emit(kind, data), do: Hotpath.Telemetry.emit(event(kind, data))
end
