# Hotpath.RateLimiter against what a user would otherwise write, in the same run.
#
#     MIX_ENV=prod mix run benches/rate_limiter.exs
#
# Baselines: the empty NIF call; :ets.update_counter/4 with a default object on the same keys
# (the race-free ETS counter users write by hand); a pure-ETS token bucket with lookup +
# insert (the common library pattern, racy under concurrency).
Code.require_file("support/harness.exs", __DIR__)

defmodule Bench.RateLimiter do
  alias Hotpath.RateLimiter

  @keys 10_000
  @resident 1_000_000

  def run do
    keys = List.to_tuple(for i <- 1..@keys, do: "user:#{i}")
    allow = start(:bench_allow, :gcra, 1_000_000_000, 1_000)
    deny = start(:bench_deny, :gcra, 1, 3_600_000)
    for l <- [:bench_window, :bench_sliding, :bench_bucket, :bench_two], do: :ok = ensure(l)

    ets =
      :ets.new(:bench_counter, [:public, :set, write_concurrency: true, read_concurrency: true])

    bucket =
      :ets.new(:bench_bucket_ets, [:public, :set, write_concurrency: true, read_concurrency: true])

    for i <- 0..(@keys - 1), do: RateLimiter.hit(deny, elem(keys, i))

    key = fn i -> elem(keys, rem(i, @keys)) end

    Hotpath.Bench.run(
      title: "Rate limiter: 10k binary keys",
      note:
        "Allow-heavy: `:gcra` with a limit no key reaches; deny-heavy: every key already over its limit. " <>
          "Each op picks `elem(keys, rem(i, 10_000))` (the ETS baselines too; \"empty NIF + key pick\" is that pick plus the empty NIF, the target's baseline is the bare empty NIF). \"empty NIF with hit's arguments and answer\" takes the same atom, binary and integer, reads them as `hit` does and returns a 3-tuple, with no table and no clock: the floor of any `hit`. " <>
          "The two-policy target is the by-key-count table's, where each pair is measured back to back.",
      cases: [
        {"empty NIF", fn -> Hotpath.Native.noop() end},
        {"empty NIF + key pick",
         fn i ->
           _ = key.(i)
           Hotpath.Native.noop()
         end},
        {"empty NIF with hit's arguments and answer",
         fn i -> Hotpath.Native.noop_hit_shape(:bench_allow, key.(i), 1) end},
        {"hit :gcra", fn i -> RateLimiter.hit(allow, key.(i)) end},
        {"hit :gcra deny-heavy", fn i -> RateLimiter.hit(deny, key.(i)) end},
        {"hit :token_bucket", fn i -> RateLimiter.hit(:bench_bucket, key.(i)) end},
        {"hit :fixed_window", fn i -> RateLimiter.hit(:bench_window, key.(i)) end},
        {"hit :sliding_window", fn i -> RateLimiter.hit(:bench_sliding, key.(i)) end},
        {"hit two policies (:gcra + :fixed_window)",
         fn i -> RateLimiter.hit(:bench_two, key.(i)) end},
        {"ets update_counter", fn i -> ets_counter(ets, key.(i)) end},
        {"ets token bucket", fn i -> ets_bucket(bucket, key.(i)) end}
      ],
      baselines: ["empty NIF", "ets update_counter", "hit :gcra"],
      targets: [
        {:ratio, "hit :gcra", "empty NIF", :<=, 2.5, :single},
        {:ratio, "hit :gcra", "ets update_counter", :<=, 0.6, :single},
        {:scaling, "hit :gcra", :>=, 1.6}
      ]
    )

    hot_ets = :ets.new(:bench_hot, [:public, :set, write_concurrency: true])

    Hotpath.Bench.run(
      title: "Rate limiter: one hot key",
      note: "Every op on the same key: the worst case for a per-key lock.",
      cases: [
        {"empty NIF", fn -> Hotpath.Native.noop() end},
        {"hit :gcra hot key", fn -> RateLimiter.hit(allow, "hot") end},
        {"ets update_counter hot key", fn -> ets_counter(hot_ets, "hot") end}
      ],
      baselines: ["empty NIF", "ets update_counter hot key"],
      targets: [
        {:ratio, "hit :gcra hot key", "ets update_counter hot key", :<=, 1.0, :single},
        {:ratio, "hit :gcra hot key", "ets update_counter hot key", :<=, 1.0, :all}
      ]
    )

    policies_by_keys()

    # One limiter per scheduler, each holding the 10k keys: the same memory-bound work as
    # "hit :gcra" with nothing shared between the processes.
    own =
      List.to_tuple(
        for s <- 1..System.schedulers_online() do
          name = start(:"bench_own_#{s}", :gcra, 1_000_000_000, 1_000)
          for i <- 0..(@keys - 1), do: RateLimiter.hit(name, elem(keys, i))
          name
        end
      )

    Hotpath.Bench.scaling(
      title: "Rate limiter: scaling from 1 process to one per scheduler (issue #18)",
      note:
        "10k binary keys, every process walking all of them from another offset (so every hit's key was last written by another scheduler), and one hot key. " <>
          "The empty NIF is the core check: its scaling is what the machine gave in that round. " <>
          "\"hit :gcra, a limiter per scheduler\" is the same hit on a limiter of the process's own scheduler (nothing shared): " <>
          "what this host gave memory-bound work in that round, which the empty NIF does not show. " <>
          "\"line handoff\" is the second check, run before each 2-process measurement: two processes pass one `:atomics` word back and forth, ns per one-way handoff. " <>
          "This VM's vCPUs move between its host's cores, and the cost of moving a cache line from one to the other changes from second to second (~30 to ~430 ns in a Rust ping-pong); " <>
          "every case whose processes write the same lines (all but the empty NIF and the limiter per scheduler) pays it, so the last column gives each case's scaling over the rounds where the handoff was near and over the others.",
      cases: [
        {"empty NIF", fn -> Hotpath.Native.noop() end},
        {"hit :gcra, a limiter per scheduler",
         fn i -> RateLimiter.hit(elem(own, :erlang.system_info(:scheduler_id) - 1), key.(i)) end},
        {"hit :gcra", fn i -> RateLimiter.hit(allow, key.(i)) end},
        {"hit :token_bucket", fn i -> RateLimiter.hit(:bench_bucket, key.(i)) end},
        {"hit :fixed_window", fn i -> RateLimiter.hit(:bench_window, key.(i)) end},
        {"hit :sliding_window", fn i -> RateLimiter.hit(:bench_sliding, key.(i)) end},
        {"ets update_counter", fn i -> ets_counter(ets, key.(i)) end},
        {"hit :gcra hot key", fn -> RateLimiter.hit(allow, "hot") end},
        {"ets update_counter hot key", fn -> ets_counter(hot_ets, "hot") end}
      ],
      targets:
        Enum.flat_map(
          ["hit :gcra", "hit :token_bucket", "hit :fixed_window", "hit :sliding_window"],
          &[{:scaling, &1, :>=, 1.6}, {:scaling_vs_core, &1, :>=, 0.85}]
        ) ++
          [
            {:ratio, "hit :gcra", "ets update_counter", :<=, 0.67, :all},
            {:scaling, "hit :gcra hot key", :>=, 0.9}
          ]
    )

    resident()
    sweep()
  end

  # The two-policy row against one policy at three key counts: 10k keys of 32-byte entries
  # (one policy) and of 48-byte entries (two) sit on either side of this host's L2, so the
  # ratio there measures the cache as much as the work; 1k keys fit for both, 200k for
  # neither.
  @policy_key_counts [1_000, 10_000, 200_000]

  defp policies_by_keys do
    cases =
      Enum.flat_map(@policy_key_counts, fn n ->
        one = start(:"bench_one_#{n}", :gcra, 1_000_000_000, 1_000)
        two = :"bench_two_#{n}"
        {:ok, _} = RateLimiter.start_link(two_policies(two))
        keys = List.to_tuple(for i <- 1..n, do: "user:#{i}")
        for i <- 0..(n - 1), l <- [one, two], do: RateLimiter.hit(l, elem(keys, i))
        key = fn i -> elem(keys, rem(i, n)) end

        [
          {"hit :gcra (#{n} keys)", fn i -> RateLimiter.hit(one, key.(i)) end},
          {"hit two policies (#{n} keys)", fn i -> RateLimiter.hit(two, key.(i)) end}
        ]
      end)

    Hotpath.Bench.run(
      title: "Rate limiter: two policies against one, by key count (issue #16)",
      note:
        "`:gcra` alone against `:gcra` + `:fixed_window` (`policies:`), with 1k keys (both tables in this host's L2), " <>
          "10k keys (the 32-byte entries of the first fit, the 48-byte ones of the second not) and 200k keys (neither). " <>
          "Each pair is measured back to back in every round (15 rounds of 60 ms), and the ratio is the median of the rounds' ratios.",
      cases: [{"empty NIF", fn -> Hotpath.Native.noop() end} | cases],
      baselines: ["empty NIF"],
      modes: [:single],
      rounds: 15,
      round_ms: 60,
      targets:
        for n <- @policy_key_counts do
          {:ratio, "hit two policies (#{n} keys)", "hit :gcra (#{n} keys)", :<=, 1.5, :single}
        end
    )
  end

  defp start(name, algorithm, limit, period, extra \\ []) do
    {:ok, _} =
      RateLimiter.start_link(
        [name: name, algorithm: algorithm, limit: limit, period: period, sweep_every: :infinity] ++
          extra
      )

    name
  end

  defp ensure(:bench_window), do: ok(start(:bench_window, :fixed_window, 1_000_000_000, 1_000))

  defp ensure(:bench_sliding),
    do: ok(start(:bench_sliding, :sliding_window, 1_000_000_000, 1_000))

  defp ensure(:bench_bucket), do: ok(start(:bench_bucket, :token_bucket, 1_000_000_000, 1_000))

  # Two policies decided in one native call (issue #16): a per-second GCRA and a daily window.
  defp ensure(:bench_two) do
    {:ok, _} = RateLimiter.start_link(two_policies(:bench_two))
    :ok
  end

  defp two_policies(name) do
    [
      name: name,
      sweep_every: :infinity,
      policies: [
        burst: [algorithm: :gcra, limit: 1_000_000_000, period: 1_000],
        daily: [algorithm: :fixed_window, limit: 1_000_000_000, period: 86_400_000]
      ]
    ]
  end

  defp ok(_), do: :ok

  defp ets_counter(tab, key), do: :ets.update_counter(tab, key, {2, 1}, {key, 0})

  # The lookup-then-insert token bucket of common ETS limiters (not atomic).
  defp ets_bucket(tab, key) do
    now = System.monotonic_time(:millisecond)
    capacity = 1_000_000_000

    {tokens, last} =
      case :ets.lookup(tab, key) do
        [{_, tokens, last}] -> {tokens, last}
        [] -> {capacity, now}
      end

    tokens = min(capacity, tokens + (now - last) * 1_000_000)

    if tokens >= 1 do
      :ets.insert(tab, {key, tokens - 1, now})
      {:allow, tokens - 1}
    else
      {:deny, 1}
    end
  end

  # 1M keys resident: bytes per key, and hit throughput on the full table.
  defp resident do
    l = start(:bench_resident, :gcra, 10, 3_600_000, max_keys: 2_000_000)
    keys = List.to_tuple(for i <- 1..@resident, do: "user:#{i}")
    # The loop's own garbage grows this process's heap by tens of MB: count only what the
    # process gained outside the VM's allocators (RSS growth minus `:erlang.memory(:total)`
    # growth), and start from a collected heap.
    :erlang.garbage_collect()
    {rss_before, vm_before} = {rss(), :erlang.memory(:total)}
    Enum.each(0..(@resident - 1), &RateLimiter.hit(l, elem(keys, &1)))
    {rss_after, vm_after} = {rss(), :erlang.memory(:total)}
    native_growth = rss_after - rss_before - (vm_after - vm_before)
    %{keys: n, memory_bytes: bytes} = RateLimiter.info(l)
    key_size = byte_size("user:500000")

    ets = :ets.new(:bench_resident_ets, [:public, :set, write_concurrency: true])
    Enum.each(0..(@resident - 1), &ets_counter(ets, elem(keys, &1)))
    ets_bytes = :ets.info(ets, :memory) * :erlang.system_info(:wordsize)

    IO.puts("""
    ## Rate limiter: #{n} keys resident

    | table | bytes per key |
    |---|---:|
    | Hotpath (`info/1` estimate) | #{div(bytes, n)} |
    | Hotpath (process RSS growth minus the VM's own allocation growth) | #{div(native_growth, n)} |
    | (process RSS growth, including the VM's: #{div(vm_after - vm_before, n)} B/key) | #{div(rss_after - rss_before, n)} |
    | ETS `{key, counter}` rows (`:ets.info(t, :memory)`) | #{div(ets_bytes, n)} |
    """)

    per_key = max(div(bytes, n), div(native_growth, n))

    Hotpath.Bench.report(
      "1M keys resident: bytes per key <= 96 + key size (#{key_size} B)",
      "#{per_key} B",
      per_key <= 96 + key_size
    )

    key = fn i -> elem(keys, rem(i * 7919, @resident)) end

    Hotpath.Bench.run(
      title: "Rate limiter: 1M keys resident",
      note: "Keys picked in a scattered order over the whole table.",
      cases: [
        {"empty NIF", fn -> Hotpath.Native.noop() end},
        {"hit :gcra (1M keys)", fn i -> RateLimiter.hit(l, key.(i)) end},
        {"ets update_counter (1M keys)", fn i -> ets_counter(ets, key.(i)) end}
      ],
      baselines: ["empty NIF", "ets update_counter (1M keys)"]
    )

    :ets.delete(ets)
  end

  # A sweep of 1M expired keys while a heartbeat process measures its worst wake-up gap.
  defp sweep do
    l = start(:bench_sweep, :fixed_window, 10, 1_000, max_keys: 2_000_000)
    Enum.each(1..@resident, &RateLimiter.hit(l, &1, 1, now: 0))

    heartbeat = Hotpath.Bench.start_heartbeat()
    Process.sleep(50)
    %{removed: removed, duration: duration} = RateLimiter.sweep(l, now: 10_000)
    Process.sleep(20)
    worst_us = round(List.last(Hotpath.Bench.stop_heartbeat(heartbeat)) * 1000)
    ms = System.convert_time_unit(duration, :native, :microsecond) / 1000

    IO.puts("""
    ## Rate limiter: sweeping #{removed} expired keys

    | measure | value |
    |---|---:|
    | sweep duration | #{:erlang.float_to_binary(ms, decimals: 1)} ms |
    | worst heartbeat gap (`receive after 1`) | #{:erlang.float_to_binary(worst_us / 1000, decimals: 2)} ms |
    """)

    Hotpath.Bench.report(
      "sweep of 1M expired keys: worst heartbeat gap < 5 ms",
      "#{:erlang.float_to_binary(worst_us / 1000, decimals: 2)} ms",
      worst_us < 5_000
    )
  end

  defp rss do
    "/proc/self/status"
    |> File.read!()
    |> then(&Regex.run(~r/VmRSS:\s+(\d+) kB/, &1))
    |> then(fn [_, kb] -> String.to_integer(kb) * 1024 end)
  end
end

Hotpath.Bench.main(&Bench.RateLimiter.run/0)
