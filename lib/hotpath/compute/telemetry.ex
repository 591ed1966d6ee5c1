defmodule Hotpath.Compute.Telemetry do
  @moduledoc """
  The telemetry events of `Hotpath.Compute`.

  Events are emitted only when the host application has `:telemetry` (Hotpath does not
  depend on it). Durations are in `:native` time units, as `:telemetry.span/3` does; convert
  with `System.convert_time_unit/3`.

    * `[:hotpath, :compute, :job, :start]` - a job left the queue and started.
      Measurements: `:system_time`, `:monotonic_time`, `:queue_time`, `:running` (jobs
      running, this one included), `:queued`, `:saturation` (`running / max_concurrency`).
      Metadata: `:pool`, `:max_concurrency`, `:max_queue`.
    * `[:hotpath, :compute, :job, :stop]` - a job returned.
      Measurements: `:duration` (run time), `:queue_time`, `:monotonic_time`.
      Metadata: `:pool`, `:status` (`:ok` or `:error`), `:error` (the reason, or `nil`).
    * `[:hotpath, :compute, :job, :exception]` - a job panicked, raised, threw, exited, or
      was cancelled (timeout, caller gone) while running.
      Measurements: `:duration`, `:queue_time`, `:monotonic_time`.
      Metadata: `:pool`, `:kind` (`:panic | :error | :throw | :exit | :cancelled`), `:reason`.
    * `[:hotpath, :compute, :pool, :overloaded]` - a job was refused because the queue was
      full. Measurements: `:running`, `:queued`. Metadata: `:pool`, `:max_concurrency`,
      `:max_queue`.

  `event/2` builds an event without emitting it; `emit/3` sends it through a telemetry
  module (`:telemetry`, or a stand-in in tests).
  """
  @compile {:no_warn_undefined, :telemetry}

  @typedoc "An event name, its measurements and its metadata."
  @type event :: {[atom()], map(), map()}

  @doc """
  Builds the event of `kind` from the data the pool or a worker has at hand.

      iex> {name, m, meta} =
      ...>   Hotpath.Compute.Telemetry.event(:overloaded, %{
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

  @doc """
  The telemetry module to emit through: `:telemetry` when it is available, else `nil`.
  """
  @spec default_module() :: module() | nil
  def default_module do
    if Hotpath.Telemetry.available?(), do: :telemetry, else: nil
  end

  @doc """
  Emits the event of `kind` through `module` (`nil`: nothing is emitted). A crashing
  handler is `:telemetry`'s business (it detaches it); this never raises for the caller.
  """
  @spec emit(module() | nil, atom(), map()) :: :ok
  def emit(nil, _kind, _data), do: :ok

  def emit(module, kind, data) do
    {name, measurements, metadata} = event(kind, data)
    module.execute(name, measurements, metadata)
    :ok
  rescue
    _ -> :ok
  end
end
