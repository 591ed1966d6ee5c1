# Cluster mode: Hotpath.RateLimiter with `cluster: :owner` / `:local_share` and
# Hotpath.Metrics.cluster_snapshot/2, on 3 nodes of this machine (this VM and two peers
# started with :peer), in one run.
#
#     MIX_ENV=prod mix run benches/cluster.exs
#
# Baselines: the empty NIF call and a non-cluster limiter (one NIF call by name). The peers
# share this machine's cores with this VM, so cluster throughput is what 3 nodes get out of
# the same CPUs, not what 3 machines would do.
Code.require_file("support/harness.exs", __DIR__)

# Loaded onto the peers (the scripts under benches/ exist only in this VM).
{:module, Bench.ClusterRemote, remote_beam, _} =
  defmodule Bench.ClusterRemote do
    @moduledoc false

    def start_detached(spec) do
      {:ok, sup} = Supervisor.start_link([spec], strategy: :one_for_one)
      Process.unlink(sup)
      sup
    end

    # `procs` processes hit keys of `keys` (a tuple) in a scattered order for `ms`
    # milliseconds (each VM has its own monotonic clock); returns the number of hits made.
    def hammer(limiter, keys, procs, ms) do
      deadline = System.monotonic_time(:millisecond) + ms

      1..procs
      |> Enum.map(fn p -> Task.async(fn -> loop(limiter, keys, p * 7_919, deadline, 0) end) end)
      |> Enum.map(&Task.await(&1, :infinity))
      |> Enum.sum()
    end

    defp loop(limiter, keys, i, deadline, done) do
      if rem(done, 256) == 0 and System.monotonic_time(:millisecond) >= deadline do
        done
      else
        Hotpath.RateLimiter.hit(limiter, elem(keys, rem(i * 7_919, tuple_size(keys))))
        loop(limiter, keys, i + 1, deadline, done + 1)
      end
    end

    def record_series(instance, series, per_series) do
      for s <- 1..series, v <- 1..per_series do
        Hotpath.Metrics.record(instance, "bench.cluster.duration", v * s / 10, %{route: "/r#{s}"})
      end

      :ok
    end
  end

defmodule Bench.Cluster do
  alias Hotpath.{Histogram, Metrics, RateLimiter}

  @limit 1_000_000_000
  @keys 10_000
  @series 1_000

  def run(remote_beam) do
    case start_distribution() do
      {:ok, started?} ->
        peers = start_peers(2, remote_beam)

        try do
          nodes = [node() | Enum.map(peers, &elem(&1, 1))]
          measure(nodes)
        after
          Enum.each(peers, fn {pid, _node} -> :peer.stop(pid) end)
          if started?, do: Node.stop()
        end

      {:error, reason} ->
        IO.puts("\n## Cluster\n\nskipped: #{reason}\n")
    end
  end

  defp measure(nodes) do
    plain = start_here(:bench_plain, [])
    owner = start_everywhere(nodes, :bench_owner, cluster: :owner, cluster_timeout: 1_000)
    share = start_everywhere(nodes, :bench_share, cluster: :local_share)
    wait_members(nodes, [owner, share])

    all_keys = for i <- 1..(@keys * 3), do: "user:#{i}"
    {here, elsewhere} = Enum.split_with(all_keys, &(RateLimiter.node_for(owner, &1) == node()))
    here = here |> Enum.take(@keys) |> List.to_tuple()
    elsewhere = elsewhere |> Enum.take(@keys) |> List.to_tuple()
    pick = fn keys, i -> elem(keys, rem(i, tuple_size(keys))) end

    Hotpath.Bench.run(
      title: "Cluster: rate limiter hit, 3 nodes on this machine",
      note:
        "`:owner` with 10k keys this node owns (decided here: the NIF misses the name, Elixir " <>
          "reads the cluster view and hashes the key) and 10k keys owned by a peer (one " <>
          ":erpc round trip over loopback distribution); `:local_share` decides here with " <>
          "1/3 of the limit. Baseline: the same hit on a non-cluster limiter.",
      cases: [
        {"empty NIF", fn -> Hotpath.Native.noop() end},
        {"hit, non-cluster", fn i -> RateLimiter.hit(plain, pick.(here, i)) end},
        {"hit :owner, key owned here", fn i -> RateLimiter.hit(owner, pick.(here, i)) end},
        {"hit :local_share", fn i -> RateLimiter.hit(share, pick.(here, i)) end},
        {"hit :owner, key owned by a peer",
         fn i -> RateLimiter.hit(owner, pick.(elsewhere, i)) end}
      ],
      baselines: ["empty NIF", "hit, non-cluster"],
      targets: [
        {:ratio, "hit :owner, key owned here", "hit, non-cluster", :<=, 4.0, :single},
        {:ratio, "hit :local_share", "hit, non-cluster", :<=, 4.0, :single}
      ]
    )

    latency_table([
      {"hit, non-cluster", fn i -> RateLimiter.hit(plain, pick.(here, i)) end, 50_000},
      {"hit :owner, key owned here", fn i -> RateLimiter.hit(owner, pick.(here, i)) end, 50_000},
      {"hit :owner, key owned by a peer", fn i -> RateLimiter.hit(owner, pick.(elsewhere, i)) end,
       10_000}
    ])

    throughput_table(nodes, plain, owner, share, List.to_tuple(all_keys))
    snapshot_table(nodes)
  end

  # ---- latency -----------------------------------------------------------------------

  defp latency_table(cases) do
    rows =
      Enum.map(cases, fn {name, fun, n} ->
        Enum.each(1..min(n, 5_000), fun)
        h = Histogram.new()

        for i <- 1..n do
          t0 = System.monotonic_time(:nanosecond)
          fun.(i)
          Histogram.record(h, System.monotonic_time(:nanosecond) - t0)
        end

        %{0.5 => p50, 0.99 => p99} = Histogram.quantiles(h, [0.5, 0.99])
        {name, n, p50, p99}
      end)

    IO.puts("""
    ## Cluster: hit latency, 1 process

    Each call timed alone (monotonic clock, ns), into a `Hotpath.Histogram` (1% error).

    | case | calls | p50 (µs) | p99 (µs) |
    |---|---:|---:|---:|
    #{Enum.map_join(rows, "\n", fn {name, n, p50, p99} -> "| #{name} | #{n} | #{us(p50)} | #{us(p99)} |" end)}
    """)

    {_, _, remote_p50, remote_p99} = List.last(rows)
    {_, _, plain_p50, _} = hd(rows)

    Hotpath.Bench.report(
      "remote-owner hit p99 well under the default cluster_timeout (<= 10 ms of 100 ms)",
      "#{us(remote_p99)} µs",
      remote_p99 <= 10_000_000
    )

    Hotpath.Bench.report(
      "remote-owner hit p50 <= 1 ms (loopback)",
      "#{us(remote_p50)} µs (#{Float.round(remote_p50 / plain_p50, 0)}x the non-cluster p50)",
      remote_p50 <= 1_000_000
    )

    IO.puts("")
  end

  defp us(ns), do: :erlang.float_to_binary(ns / 1000, decimals: 2)

  # ---- cluster throughput ----------------------------------------------------------------

  defp throughput_table(nodes, plain, owner, share, keys) do
    procs = System.schedulers_online()
    ms = 2_000

    rows =
      for {name, limiter, on} <- [
            {"non-cluster limiter, this node only", plain, [node()]},
            {"non-cluster limiter on each node (N x the limit)", :bench_plain_each, nodes},
            {"`:local_share`, 3 nodes", share, nodes},
            {"`:owner`, 3 nodes (2/3 of hits remote)", owner, nodes}
          ] do
        if limiter == :bench_plain_each do
          for n <- nodes -- [node()], do: start_on(n, :bench_plain_each, [])
        end

        total =
          on
          |> Enum.map(fn n ->
            Task.async(fn ->
              :erpc.call(n, Bench.ClusterRemote, :hammer, [
                plain_name(limiter, n, plain),
                keys,
                procs,
                ms
              ])
            end)
          end)
          |> Enum.map(&Task.await(&1, :infinity))
          |> Enum.sum()

        {name, length(on) * procs, total * 1000 / ms}
      end

    IO.puts("""
    ## Cluster: throughput, 30k keys, #{ms} ms

    #{procs} processes per node hitting keys in a scattered order; all nodes share this
    machine's #{System.schedulers_online()} cores.

    | case | processes | hits/s (all nodes) |
    |---|---:|---:|
    #{Enum.map_join(rows, "\n", fn {name, p, ops} -> "| #{name} | #{p} | #{Hotpath.Bench.format_ops(ops)} |" end)}
    """)
  end

  # On this node the plain baseline is the limiter started by measure/1.
  defp plain_name(:bench_plain_each, n, plain) when n == node(), do: plain
  defp plain_name(limiter, _n, _plain), do: limiter

  # ---- cluster_snapshot ----------------------------------------------------------------------

  defp snapshot_table(nodes) do
    spec =
      {Metrics,
       name: :bench_cluster_metrics,
       telemetry: false,
       metrics: [Metrics.distribution("bench.cluster.duration", tags: [:route])]}

    for n <- nodes, do: start_spec_on(n, spec)

    for n <- nodes do
      :ok =
        :erpc.call(n, Bench.ClusterRemote, :record_series, [:bench_cluster_metrics, @series, 20])
    end

    view = Metrics.cluster_snapshot(:bench_cluster_metrics)
    [%{series: series}] = view.metrics
    true = length(series) == @series and view.failed == []

    rows =
      for {name, fun} <- [
            {"`snapshot/1`, this node (baseline)",
             fn -> Metrics.snapshot(:bench_cluster_metrics) end},
            {"`cluster_snapshot/2`, 3 nodes",
             fn -> Metrics.cluster_snapshot(:bench_cluster_metrics) end},
            {"`prometheus/2` with `cluster: true`, 3 nodes",
             fn -> Metrics.prometheus(:bench_cluster_metrics, cluster: true) end}
          ] do
        fun.()

        times =
          for _ <- 1..15 do
            {us, _} = :timer.tc(fun)
            us
          end

        {name, Enum.at(Enum.sort(times), 7)}
      end

    IO.puts("""
    ## Cluster: merged metrics, #{@series} series per node

    A distribution with #{@series} tag values (20 values each) on each of 3 nodes; median of
    15 calls.

    | case | ms |
    |---|---:|
    #{Enum.map_join(rows, "\n", fn {name, us} -> "| #{name} | #{:erlang.float_to_binary(us / 1000, decimals: 2)} |" end)}
    """)

    {_, cluster_us} = Enum.at(rows, 1)

    Hotpath.Bench.report(
      "cluster_snapshot of 1k series over 3 nodes < 100 ms",
      "#{:erlang.float_to_binary(cluster_us / 1000, decimals: 2)} ms",
      cluster_us < 100_000
    )
  end

  # ---- nodes -----------------------------------------------------------------------------

  defp start_distribution do
    cond do
      Node.alive?() ->
        {:ok, false}

      epmd = System.find_executable("epmd") ->
        {_, 0} = System.cmd(epmd, ["-daemon"])

        name = :"hotpath_bench_#{System.pid()}@127.0.0.1"

        case :net_kernel.start(name, %{name_domain: :longnames}) do
          {:ok, _} -> {:ok, true}
          {:error, reason} -> {:error, "starting node #{name} failed: #{inspect(reason)}"}
        end

      true ->
        {:error, "epmd is not on PATH"}
    end
  end

  defp start_peers(count, remote_beam) do
    for _ <- 1..count do
      {:ok, pid, node} =
        :peer.start(%{
          name: :"hotpath_bench_peer_#{System.pid()}_#{System.unique_integer([:positive])}",
          host: ~c"127.0.0.1",
          longnames: true,
          connection: :standard_io,
          # Three VMs share this machine's cores: peers do not spin idle schedulers.
          args: [
            ~c"-setcookie",
            Atom.to_charlist(Node.get_cookie()),
            ~c"+sbwt",
            ~c"none",
            ~c"+sbwtdcpu",
            ~c"none",
            ~c"+sbwtdio",
            ~c"none"
          ]
        })

      :ok = :peer.call(pid, :code, :add_paths, [:code.get_path()])
      {:ok, _} = :peer.call(pid, :application, :ensure_all_started, [:hotpath])

      {:module, _} =
        :peer.call(pid, :code, :load_binary, [Bench.ClusterRemote, ~c"nofile", remote_beam])

      true = Node.connect(node)
      {pid, node}
    end
  end

  defp limiter_spec(name, opts) do
    {RateLimiter, [name: name, limit: @limit, period: 1_000, sweep_every: :infinity] ++ opts}
  end

  defp start_here(name, opts) do
    {:ok, _} = Supervisor.start_link([limiter_spec(name, opts)], strategy: :one_for_one)
    name
  end

  defp start_on(n, name, opts), do: start_spec_on(n, limiter_spec(name, opts))

  defp start_spec_on(n, spec) when n == node() do
    {:ok, _} = Supervisor.start_link([spec], strategy: :one_for_one)
  end

  defp start_spec_on(n, spec), do: :erpc.call(n, Bench.ClusterRemote, :start_detached, [spec])

  defp start_everywhere(nodes, name, opts) do
    Enum.each(nodes, &start_on(&1, name, opts))
    name
  end

  defp wait_members(nodes, limiters, attempts \\ 1_000) do
    converged =
      Enum.all?(limiters, fn l ->
        Enum.all?(nodes, fn n ->
          length(:erpc.call(n, RateLimiter, :info, [l]).cluster.members) == length(nodes)
        end)
      end)

    cond do
      converged -> :ok
      attempts == 0 -> raise "cluster membership did not converge"
      true -> Process.sleep(5) && wait_members(nodes, limiters, attempts - 1)
    end
  end
end

Hotpath.Bench.main(fn -> Bench.Cluster.run(remote_beam) end)
