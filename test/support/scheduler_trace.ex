defmodule Hotpath.SchedulerTrace do
  @moduledoc false
  # How long a process holds a normal scheduler at a stretch, measured with scheduling trace
  # events (`:erlang.trace(pid, true, [:running])`), never with sleeps. Used by the
  # scheduler-fairness tests: a NIF on a normal scheduler must not keep a process scheduled in
  # for more than about 1 ms.

  @dirty_exit {:erts_internal, :dirty_nif_finalizer, 1}

  @doc """
  The bound the fairness tests assert, in µs: "about 1 ms" with room for a scheduler thread
  the OS preempted in every round on a loaded 2-core machine.
  """
  def limit_us, do: 2_000

  @doc """
  Calls `fun` in a loop in a new, traced process until `:ms` milliseconds (default 200) and
  `:min_calls` calls (default 3) have passed. Returns `%{calls: n, longest_us: us, longest: {in,
  out}}`: the longest stretch the process ran on a normal scheduler between being scheduled in
  and scheduled out, and the functions it was in at both ends. With `:rounds` (default 5) it
  does this several times and answers the round with the shortest longest stretch: the OS may
  preempt a scheduler thread now and then on a loaded machine, which stretches one round, while
  a NIF that holds its scheduler does so in every round. A stretch on a dirty scheduler (a
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

    receive do
      {:ready, ^pid} -> :ok
    end

    :erlang.trace(pid, true, [:running, :monotonic_timestamp, {:tracer, self()}])
    send(pid, :go)
    {calls, events} = collect(pid, [])
    {longest, ends} = longest(events, nil, {0, nil})

    %{
      calls: calls,
      longest_us: System.convert_time_unit(longest, :native, :microsecond),
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
        collect(pid, [{event, mfa, ts} | acc])

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
      {:trace_ts, ^pid, :out, mfa, ts} ->
        [{:out, mfa, ts} | acc]

      {:trace_ts, ^pid, event, mfa, ts} when event in [:in, :out] ->
        wait_out(pid, [{event, mfa, ts} | acc])
    end
  end

  defp longest([{:in, mfa, t_in} | rest], _open, best), do: longest(rest, {mfa, t_in}, best)

  defp longest([{:out, @dirty_exit, _} | rest], _open, best), do: longest(rest, nil, best)

  defp longest([{:out, out_mfa, t_out} | rest], {in_mfa, t_in}, {best, _} = acc) do
    acc = if t_out - t_in > best, do: {t_out - t_in, {in_mfa, out_mfa}}, else: acc
    longest(rest, nil, acc)
  end

  defp longest([_ | rest], open, best), do: longest(rest, open, best)
  defp longest([], _open, best), do: best
end
