# Native memory per Hotpath.Metrics series at +S 2, 8, 32 and 64 (issue 18): a 10-bucket
# distribution and a summary, 1,000 series recorded from 4 processes per scheduler. More
# schedulers than cores is fine for a memory figure: each row is a child VM
# (benches/support/series_memory.exs under `mix run` with ERL_FLAGS), plus the same workload
# in a plain Rust process with one thread per scheduler (hotpath_core's `series_memory`
# example) for the OS's figure without the VM's own allocators in it.
#
#     MIX_ENV=prod mix run benches/metrics_memory.exs
Code.require_file("support/harness.exs", __DIR__)

defmodule Bench.MetricsMemory do
  @schedulers [2, 8, 32, 64]
  @series 1000
  @bounds %{distribution: 1536, summary: 4096}

  def run do
    example = build_example()

    rows =
      for s <- @schedulers, kind <- [:distribution, :summary] do
        vm = child(kind, s)
        os = example && rust(example, kind, s)
        {s, kind, vm, os}
      end

    IO.puts(
      """

      ## Metrics: native memory per series

      #{@series} series of one metric (tag `:id`), 4 processes per scheduler, each recording 5
      values (1.5 to 39.0) into every series. A distribution with 10 buckets; a summary with its
      default window (60 s in 6 slots; a run this short uses one slot, the Rust unit test
      `a_series_costs_the_same_whatever_the_number_of_threads` covers all 6). "info/1":
      `Hotpath.Metrics.info/1` `:memory_bytes` per series in a child VM (`mix run` with
      `ERL_FLAGS="+S n:n"`), the registry's own accounting of its native allocations; "ended on"
      counts the schedulers the recording processes finished on. "OS (RSS)": the OS's figure,
      the same records from one thread per scheduler in a plain Rust process (`cargo run
      --release -p hotpath_core --example series_memory`), its RSS growth per series over 4,000
      series (malloc's headers and the map's spare capacity included). A VM's own RSS moves by
      megabytes with its allocators' and glibc's per-thread caches (`:erlang.memory/0` never sees
      native memory): in trials it read -0.4 to 8.6 KB per series, so it is not used.

      | schedulers | metric | info/1 (B/series) | OS, RSS (B/series) | ended on | counts exact |
      |---:|---|---:|---:|---:|---|
      """ <>
        Enum.map_join(rows, "\n", fn {s, kind, vm, os} ->
          "| +S #{s} | #{kind} | #{vm.bytes_per_series} | #{(os && os.rss) || "-"} | " <>
            "#{vm.schedulers_used} | #{vm.counts_exact} |"
        end)
    )

    for kind <- [:distribution, :summary] do
      worst =
        rows
        |> Enum.filter(&(elem(&1, 1) == kind))
        |> Enum.map(fn {_, _, vm, _} -> vm.bytes_per_series end)
        |> Enum.max()

      os =
        rows
        |> Enum.filter(&(elem(&1, 1) == kind))
        |> Enum.map(fn {_, _, _, os} -> os && os.rss end)

      os_worst = if Enum.all?(os), do: Enum.max(os)

      Hotpath.Bench.report(
        "#{kind} series <= #{@bounds[kind]} B at every scheduler count (info/1, and the " <>
          "OS's figure)",
        "#{worst} B at most (OS: #{os_worst || "not measured"} B)",
        worst <= @bounds[kind] and (os_worst == nil or os_worst <= @bounds[kind])
      )
    end

    Hotpath.Bench.report(
      "every series' count exact in every child",
      "#{Enum.count(rows, fn {_, _, vm, _} -> vm.counts_exact end)} of #{length(rows)}",
      Enum.all?(rows, fn {_, _, vm, _} -> vm.counts_exact end)
    )
  end

  defp child(kind, schedulers) do
    script = Path.join(__DIR__, "support/series_memory.exs")

    env = [
      {"ERL_FLAGS", "+S #{schedulers}:#{schedulers}"},
      {"MIX_ENV", to_string(Mix.env())}
    ]

    {out, 0} =
      System.cmd("mix", ["run", "--no-compile", script, to_string(kind), "#{@series}"],
        env: env,
        stderr_to_stdout: true
      )

    [_, term] = Regex.run(~r/^RESULT (.+)$/m, out)
    {result, _} = Code.eval_string(term)
    result
  end

  # The example's path from cargo's JSON messages (a CARGO_TARGET_DIR may move it).
  defp build_example do
    args = ~w(build --release --locked -p hotpath_core --example series_memory
              --message-format=json-render-diagnostics)

    with cargo when is_binary(cargo) <- System.find_executable("cargo"),
         {out, 0} <-
           System.cmd(cargo, args, cd: Path.expand("..", __DIR__), stderr_to_stdout: true),
         [_, path] <- Regex.run(~r/"executable":"([^"]*series_memory)"/, out) do
      path
    else
      _ -> nil
    end
  end

  defp rust(example, kind, threads) do
    case System.cmd(example, [to_string(kind), "#{threads}", "4000"], stderr_to_stdout: true) do
      {out, 0} ->
        [_, bytes, rss] = Regex.run(~r/bytes_per_series=(\d+) rss_bytes_per_series=(\d+)/, out)
        %{bytes: String.to_integer(bytes), rss: String.to_integer(rss)}

      _ ->
        nil
    end
  end
end

Hotpath.Bench.main(&Bench.MetricsMemory.run/0)
