defmodule Hotpath.Compute.Job do
  @moduledoc false
  # The process of one job of a `Hotpath.Compute` pool: it runs the job, sends the result to
  # the caller, tells the pool, and emits the job's telemetry events.

  alias Hotpath.Compute.Events

  @doc false
  # The body of the job process started by the pool.
  def run(ref, job, context) do
    Events.emit(:start, context.start)
    started = System.monotonic_time()
    result = execute(job)
    # Tell the pool first: a caller that gets its result and exits at once must not look like
    # a caller that died while its job ran (which would cancel a finished job).
    send(context.owner, {:"$hotpath_done", ref})
    send(ref, {ref, {:result, result}})

    data = %{
      pool: context.pool,
      monotonic_time: System.monotonic_time(),
      started_at: started,
      queue_time: context.queue_time
    }

    case result do
      {:error, {:panic, message}} ->
        Events.emit(:exception, Map.merge(data, %{kind: :panic, reason: message}))

      {:error, {kind, reason, _stack}} when kind == :exception ->
        Events.emit(:exception, Map.merge(data, %{kind: :error, reason: reason}))

      {:error, {kind, reason}} when kind in [:throw, :exit] ->
        Events.emit(:exception, Map.merge(data, %{kind: kind, reason: reason}))

      _ ->
        Events.emit(:stop, Map.put(data, :result, result))
    end
  end

  @doc false
  # Runs a job and normalises its outcome (public for the tests of the rules).
  def execute(job) do
    case call(job) do
      {:ok, _} = ok -> ok
      {:error, _} = error -> error
      other -> {:ok, other}
    end
  rescue
    e in Hotpath.PanicError -> {:error, {:panic, e.message}}
    e in ErlangError -> erlang_error(e, __STACKTRACE__)
    e -> {:error, {:exception, e, __STACKTRACE__}}
  catch
    :throw, value -> {:error, {:throw, value}}
    :exit, reason -> {:error, {:exit, reason}}
  end

  defp call(fun) when is_function(fun, 0), do: fun.()
  defp call({m, f, a}), do: apply(m, f, a)

  defp erlang_error(%ErlangError{original: :nif_panicked}, _stack),
    do: {:error, {:panic, "native code panicked (nif_panicked)"}}

  defp erlang_error(e, stack), do: {:error, {:exception, e, stack}}
end
