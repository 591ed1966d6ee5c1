defmodule Hotpath.SchedulerTrace do
  @moduledoc false
  # How long a process holds a normal scheduler at a stretch, measured with scheduling trace
  # events (`:erlang.trace(pid, true, [:running])`), never with sleeps. Used by the
  # scheduler-fairness tests: a NIF on a normal scheduler must not keep a process scheduled in
  # for more than about 1 ms.

  @dirty_exit {:erts_internal, :dirty_nif_finalizer, 1}

  @doc """
  The bound the fairness tests assert, in µs of scheduler-thread CPU time: "about 1 ms". A
  stretch ends when the process's reductions run out, so it is up to one reduction budget
  (about 1 ms of reported NIF work, less the BEAM code around it) plus the call that used it
  up; on this 2-core machine under load, cache and memory contention stretch CPU time further.
  """
  def limit_us, do: 3_000

  @doc """
  Calls `fun` in a loop in a new, traced process until `:ms` milliseconds (default 200) and
  `:min_calls` calls (default 3) have passed. Returns `%{calls: n, longest_us: us, longest: {in,
  out}}`: the longest stretch the process ran on a normal scheduler between being scheduled in
  and scheduled out, in CPU time of the scheduler thread, and the functions it was in at both
  ends. With `:rounds` (default 5) it does this several times and answers the round with the
  shortest longest stretch, for what CPU time still counts that is not the process's (page
  faults, cache misses after a migration, and on a VM the time the host took the vCPU away,
  which thread CPU time includes: a trixie-lane run on a host whose line handoffs then took
  up to 11 µs read 3310 µs for a record that reads far below the bound elsewhere); a NIF that holds its scheduler does so in every round. A stretch on a dirty scheduler (a
  dirty NIF, scheduled out through `:erts_internal.dirty_nif_finalizer/1`) does not hold a normal
  scheduler and is not counted. `fun` runs in the new process: build large inputs before (they
  are copied into it once) or inside `:setup` (a 0-arity function whose result `fun` receives).
  """
  def longest_stretch(fun, opts \\ []) when is_function(fun, 1) do
    rounds = Keyword.get(opts, :rounds, 5)

    1..rounds
    |> Enum.map(fn _ -> one_round(fun, opts) end)
    |> Enum.min_by(& &1.longest_us)
  end

  defp one_round(fun, opts) do
    ms = Keyword.get(opts, :ms, 200)
    min_calls = Keyword.get(opts, :min_calls, 3)
    setup = Keyword.get(opts, :setup, fn -> nil end)
    parent = self()

    pid =
      spawn(fn ->
        input = setup.()
        send(parent, {:ready, self()})

        receive do
          :go -> :ok
        end

        deadline = System.monotonic_time(:millisecond) + ms
        send(parent, {:done, self(), loop(fun, input, deadline, min_calls, 0)})

        # Waiting schedules the process out, which closes its last stretch with an event.
        receive do
          :stop -> :ok
        end
      end)

    # A setup that raises ends the process: fail at once instead of waiting for the timeout.
    monitor = Process.monitor(pid)

    receive do
      {:ready, ^pid} -> Process.demonitor(monitor, [:flush])
      {:DOWN, ^monitor, _, _, reason} -> raise "the traced process exited: #{inspect(reason)}"
    end

    # CPU timestamps: the scheduler thread's CPU time, which does not advance while the OS has
    # the thread preempted, so a loaded machine does not stretch a measurement. A stretch runs
    # on one scheduler thread from `in` to `out`, so the difference is its CPU time.
    # `cpu_timestamp` is a VM-wide flag (it applies to `timestamp` in every trace): on for the
    # round only.
    :erlang.trace(:all, true, [:cpu_timestamp])
    :erlang.trace(pid, true, [:running, :timestamp, {:tracer, self()}])
    send(pid, :go)

    {calls, events} =
      try do
        collect(pid, [])
      after
        :erlang.trace(:all, false, [:cpu_timestamp])
      end

    {longest, ends} = longest(events, nil, {0, nil})

    %{
      calls: calls,
      longest_us: longest,
      longest: ends
    }
  end

  defp loop(fun, input, deadline, min_calls, n) do
    fun.(input)

    if n + 1 >= min_calls and System.monotonic_time(:millisecond) >= deadline,
      do: n + 1,
      else: loop(fun, input, deadline, min_calls, n + 1)
  end

  defp collect(pid, acc) do
    receive do
      {:trace_ts, ^pid, event, mfa, ts} when event in [:in, :out] ->
        collect(pid, [{event, mfa, us(ts)} | acc])

      {:done, ^pid, calls} ->
        ref = Process.monitor(pid)
        acc = wait_out(pid, acc)
        send(pid, :stop)

        receive do
          {:DOWN, ^ref, _, _, _} -> :ok
        end

        {calls, Enum.reverse(acc)}
    end
  end

  # After :done the process blocks in `receive`: wait for the :out event that closes its stretch.
  defp wait_out(pid, acc) do
    receive do
      {:trace_ts, ^pid, :out, mfa, ts} -> [{:out, mfa, us(ts)} | acc]
      {:trace_ts, ^pid, :in, mfa, ts} -> wait_out(pid, [{:in, mfa, us(ts)} | acc])
    end
  end

  defp us({mega, sec, micro}), do: (mega * 1_000_000 + sec) * 1_000_000 + micro

  defp longest([{:in, mfa, t_in} | rest], _open, best), do: longest(rest, {mfa, t_in}, best)

  defp longest([{:out, @dirty_exit, _} | rest], _open, best), do: longest(rest, nil, best)

  defp longest([{:out, out_mfa, t_out} | rest], {in_mfa, t_in}, {best, _} = acc) do
    acc = if t_out - t_in > best, do: {t_out - t_in, {in_mfa, out_mfa}}, else: acc
    longest(rest, nil, acc)
  end

  defp longest([_ | rest], open, best), do: longest(rest, open, best)
  defp longest([], _open, best), do: best
end
