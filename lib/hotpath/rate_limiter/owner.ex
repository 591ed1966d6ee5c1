defmodule Hotpath.RateLimiter.Owner do
  @moduledoc false
  # The process behind a named limiter: registers the native table in :persistent_term,
  # sweeps it periodically in chunks, and unregisters it on a clean shutdown. The table is
  # referenced from :persistent_term, not owned by this process's heap, so it outlives a
  # crash of this process and is taken over by the restarted one.

  use GenServer

  alias Hotpath.Native
  alias Hotpath.RateLimiter.Options

  # Each sweep chunk is one NIF call (on a dirty CPU scheduler) of about this budget.
  @chunk_budget_us 300

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    name = opts[:name]
    key = {Hotpath.RateLimiter, name}

    ref =
      case :persistent_term.get(key, nil) do
        {ref, _, old} ->
          if Options.table_options(old) == Options.table_options(opts),
            do: ref,
            else: new_table(opts)

        nil ->
          new_table(opts)
      end

    entry = {ref, opts[:telemetry_denies], opts}
    if :persistent_term.get(key, nil) !== entry, do: :persistent_term.put(key, entry)
    # The hot path (`hit/2,3`) finds the table by name in native code.
    Native.limiter_publish(ref, name, opts[:telemetry_denies])

    state = %{name: name, ref: ref, opts: opts, pass: nil, timer: nil}
    {:ok, schedule(state)}
  end

  defp new_table(opts) do
    if Options.cells?(opts), do: new_cells(opts), else: new_slots(opts)
  end

  defp new_cells(opts) do
    Native.limiter_new_multi(
      Options.native_policies(opts),
      Options.native_ban(opts),
      opts[:max_keys],
      with(:infinity <- opts[:max_bytes], do: nil),
      opts[:on_full] == :allow,
      opts[:policies] == nil
    )
  end

  defp new_slots(opts) do
    Native.limiter_new(
      opts[:algorithm],
      opts[:limit],
      opts[:period],
      opts[:burst],
      opts[:max_keys],
      with(:infinity <- opts[:max_bytes], do: nil),
      opts[:on_full] == :allow
    )
  end

  # No call reaches this process: `Hotpath.RateLimiter.sweep/2` sweeps in its caller, so no
  # caller's input is ever handled here.

  @impl true
  def handle_info(:sweep, state) do
    # A pass runs chunk by chunk, one message each, so the owner stays responsive and no
    # single call holds a scheduler.
    send(self(), {:sweep_chunk, 0})
    {:noreply, %{state | timer: nil, pass: %{removed: 0, started: System.monotonic_time()}}}
  end

  def handle_info({:sweep_chunk, from}, %{pass: pass} = state) when pass != nil do
    {next, removed, keys} = Native.limiter_sweep(state.ref, from, nil, @chunk_budget_us)
    pass = %{pass | removed: pass.removed + removed}

    case next do
      nil ->
        emit_sweep(state.ref, report_name(state), pass.removed, keys, pass_duration(pass))
        {:noreply, schedule(%{state | pass: nil})}

      next ->
        send(self(), {:sweep_chunk, next})
        {:noreply, %{state | pass: pass}}
    end
  end

  def handle_info({:EXIT, _pid, _reason}, state), do: {:noreply, state}
  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(reason, state) do
    # A clean stop removes the limiter; after a crash the table stays registered so the
    # restarted owner (and every caller meanwhile) keeps its counters.
    if clean_exit?(reason) do
      key = {Hotpath.RateLimiter, state.name}

      case :persistent_term.get(key, nil) do
        {ref, _, _} when ref == state.ref ->
          Native.limiter_unpublish(ref, state.name)
          :persistent_term.erase(key)

        _ ->
          :ok
      end
    end

    :ok
  end

  # A supervisor's stop or a normal exit: what is published is removed; after a crash it stays
  # in place for the restarted process. Shared with the cluster member.
  @doc false
  @spec clean_exit?(term()) :: boolean()
  def clean_exit?(:normal), do: true
  def clean_exit?(:shutdown), do: true
  def clean_exit?({:shutdown, _}), do: true
  def clean_exit?(_), do: false

  @doc false
  # A whole sweep pass from the calling process (`Hotpath.RateLimiter.sweep/2`): chunk by
  # chunk, each chunk one NIF call that reports its time to the scheduler.
  def sweep_all(ref, now), do: sweep_all(ref, now, 0, 0)

  defp sweep_all(ref, now, from, removed) do
    case Native.limiter_sweep(ref, from, now, @chunk_budget_us) do
      {nil, n, keys} -> {removed + n, keys}
      {next, n, _keys} -> sweep_all(ref, now, next, removed + n)
    end
  end

  defp schedule(%{opts: opts} = state) do
    case opts[:sweep_every] do
      :infinity -> state
      ms -> %{state | timer: Process.send_after(self(), :sweep, ms)}
    end
  end

  defp pass_duration(pass), do: System.monotonic_time() - pass.started

  # The table of a cluster limiter runs under an internal name: events name the limiter.
  defp report_name(state), do: Keyword.get(state.opts, :report_as, state.name)

  @doc false
  def emit_sweep(ref, name, removed, keys, duration) do
    %{full_events: full} = Native.limiter_stats(ref)
    Hotpath.Telemetry.emit(sweep_event(name, removed, keys, duration, full))
  end

  @doc false
  def sweep_event(name, removed, keys, duration, full_events) do
    {[:hotpath, :rate_limiter, :sweep],
     %{duration: duration, removed: removed, keys: keys, full_events: full_events},
     %{limiter: name}}
  end

  @doc false
  def deny_event(name, key, cost, retry_after, reset_after) do
    {[:hotpath, :rate_limiter, :deny], %{cost: cost},
     %{limiter: name, key: key, retry_after: retry_after, reset_after: reset_after}}
  end

  @doc false
  # A denial of a limiter of several policies also names what refused it.
  def deny_event(name, key, cost, retry_after, reset_after, violated) do
    {event, measurements, metadata} = deny_event(name, key, cost, retry_after, reset_after)
    {event, measurements, Map.put(metadata, :violated, violated)}
  end

  @doc false
  def ban_event(name, key, duration_ms, offences, reason) do
    {[:hotpath, :rate_limiter, :ban], %{duration: duration_ms, offences: offences},
     %{limiter: name, key: key, reason: reason}}
  end
end
