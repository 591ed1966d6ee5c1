# Child VM of benches/metrics_memory.exs: native memory per series of one metric kind under
# the issue-18 workload, printed as one line of Erlang terms for the parent to read.
#
#     ERL_FLAGS="+S 32:32" MIX_ENV=prod mix run --no-compile benches/support/series_memory.exs \
#       distribution 1000
#
# Workload: `series` series (tag `:id`), 4 processes per online scheduler; every process
# records 5 values into every series (each process walks the series from its own offset).
# Values: 1.0..40.0 ms-like latencies (`values/0`), the same for both kinds.
#
# Memory: `Hotpath.Metrics.info/1` `:memory_bytes` (the registry's own accounting of its
# native allocations). The OS's figure comes from hotpath_core's `series_memory` example
# (a plain Rust process): this VM's RSS moves by megabytes with its own allocators' and
# glibc's per-thread caches (`:erlang.memory/0` sees only the VM's allocators, never native
# memory), which swamped 1-4 MB of series in trials (-0.4 to 8.6 KB per series).
defmodule Bench.SeriesMemory do
  alias Hotpath.Metrics

  def main([kind, series]) do
    kind = String.to_existing_atom(kind)
    series = String.to_integer(series)
    procs = 4 * System.schedulers_online()

    metric =
      case kind do
        :distribution ->
          Metrics.distribution("bench.mem.duration",
            tags: [:id],
            reporter_options: [buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]]
          )

        :summary ->
          Metrics.summary("bench.mem.duration", tags: [:id])
      end

    ids = List.to_tuple(for i <- 1..series, do: Integer.to_string(i))
    values = values()

    {:ok, _} =
      Metrics.start_link(
        name: :bench_mem,
        telemetry: false,
        max_series: series + 1,
        metrics: [metric]
      )

    schedulers = run(:bench_mem, ids, values, procs, series)
    %{series: n, memory_bytes: bytes} = Metrics.info(:bench_mem)
    [%{series: snapshots}] = Metrics.snapshot(:bench_mem)
    expected = procs * length(values)

    result = %{
      kind: kind,
      schedulers: System.schedulers_online(),
      processes: procs,
      schedulers_used: schedulers,
      series: n,
      bytes_per_series: div(bytes, n),
      counts_exact: Enum.all?(snapshots, &(&1.count == expected))
    }

    IO.puts("RESULT " <> inspect(result))
  end

  # 5 latencies a process records into each series (1.0..40.0).
  defp values, do: [1.5, 3.2, 7.7, 12.5, 39.0]

  # Every process records every value into every series; returns on how many distinct
  # schedulers the processes finished (a sign that the records came from many threads).
  defp run(name, ids, values, procs, series) do
    parent = self()

    pids =
      for p <- 1..procs do
        spawn_link(fn ->
          receive do: (:go -> :ok)

          for k <- 0..(series - 1), v <- values do
            id = elem(ids, rem(k + p * 37, series))
            :ok = Metrics.record(name, "bench.mem.duration", v, %{id: id})
          end

          send(parent, {:done, self(), :erlang.system_info(:scheduler_id)})
        end)
      end

    Enum.each(pids, &send(&1, :go))

    pids
    |> Enum.map(fn pid -> receive do: ({:done, ^pid, s} -> s) end)
    |> Enum.uniq()
    |> length()
  end
end

Bench.SeriesMemory.main(System.argv())
