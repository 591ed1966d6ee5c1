# The A/B rows of the native tricks that stay (issue #15): each trick and its plain version,
# both compiled in (the plain twins come with the crate's `bench` feature, which `make bench`
# enables), measured in the same run on the path users call, `Hotpath.RateLimiter.hit/2`. A
# trick stays only while its plain version costs at least 15% more on that path. (The
# `:telemetry` handler of `Hotpath.Metrics` has no entry-point or name-table trick left: its
# A/B rows, measured before those tricks were removed, are in benches/RESULTS.md; the record
# path's series memo has its rows in benches/metrics_ab.exs.)
#
#     HOTPATH_CARGO_FEATURES=bench MIX_ENV=prod mix run benches/native_ab.exs
Code.require_file("support/harness.exs", __DIR__)

defmodule Bench.NativeAB do
  alias Hotpath.{Native, RateLimiter}

  @keys 10_000

  def run do
    if function_exported?(Native, :bench_limiter_hit_rustler_nif, 3) and twins_loaded?() do
      limiter()
    else
      IO.puts(
        "\n## Native tricks: A/B\n\nSkipped: the NIF was built without the `bench` feature " <>
          "(HOTPATH_CARGO_FEATURES=bench, as `make bench` sets).\n"
      )
    end
  end

  defp twins_loaded? do
    Native.bench_limiter_hit_rustler_nif(:bench_ab_none, "k", 1)
    true
  rescue
    _ -> false
  end

  # -- hit/2 -------------------------------------------------------------------------------

  defp limiter do
    keys = List.to_tuple(for i <- 1..@keys, do: "user:#{i}")
    key = fn i -> elem(keys, rem(i, @keys)) end

    for name <- [:bench_ab_allow, :bench_ab_instant] do
      {:ok, _} =
        RateLimiter.start_link(
          name: name,
          algorithm: :gcra,
          limit: 1_000_000_000,
          period: 1_000,
          sweep_every: :infinity
        )
    end

    Hotpath.Bench.run(
      title: "Native tricks, A/B: Hotpath.RateLimiter.hit/2",
      note:
        "`:gcra`, 10k binary keys, allow-heavy. \"hit/2\" is the library's call; \"hit/2, fast " <>
          "entry\" its NIF (fast entry point, quanta clock) " <>
          "through the same Elixir `case` as `hit/2`, and each row below it changes one thing " <>
          "(the targets compare them with it): \"#[rustler::nif] entry\" registers " <>
          "the NIF with rustler's wrapper (an argument `Vec` per call); \"clock: " <>
          "Instant\" reads `std::time::Instant` instead of quanta (its own limiter).",
      cases: [
        {"empty NIF", fn -> Native.noop() end},
        {"hit/2", fn i -> RateLimiter.hit(:bench_ab_allow, key.(i)) end},
        {"hit/2, fast entry",
         fn i -> decided(Native.limiter_hit(:bench_ab_allow, key.(i), 1)) end},
        {"hit/2, #[rustler::nif] entry",
         fn i -> decided(Native.bench_limiter_hit_rustler_nif(:bench_ab_allow, key.(i), 1)) end},
        {"hit/2, clock: Instant",
         fn i -> decided(Native.bench_limiter_hit_instant(:bench_ab_instant, key.(i), 1)) end}
      ],
      baselines: ["empty NIF", "hit/2"],
      targets: [
        Hotpath.Bench.keep_trick(
          "entry point (fast_nif.rs)",
          "hit/2, #[rustler::nif] entry",
          "hit/2, fast entry"
        ),
        Hotpath.Bench.keep_trick("clock (quanta)", "hit/2, clock: Instant", "hit/2, fast entry")
      ]
    )

    key_layout()
  end

  # The packed limiter key (two words, a long key's box address packed into them, `unsafe` in
  # key.rs) against its safe twin (an enum holding the box): what it buys is memory, not time.
  defp key_layout do
    rows =
      for {label, long} <- [
            {"\"user:<i>\", 11 bytes (inline)", false},
            {"32-byte keys (boxed)", true}
          ] do
        {packed_b, plain_b, packed_ns, plain_ns} = Native.bench_key_layout(1_000_000, long)

        "| #{label} | #{round(packed_b)} | #{round(plain_b)} | #{Hotpath.Bench.format_ratio(plain_b / packed_b)} | " <>
          "#{Hotpath.Bench.format_ns(packed_ns)} | #{Hotpath.Bench.format_ns(plain_ns)} |"
      end

    IO.puts("""
    ## Native tricks, A/B: the packed limiter key

    1M keys stored as a shard stores them (a `hashbrown` table of `(key, slot)` entries) and each looked up once per pass, best of 5 passes. Bytes per key: buckets at the table's load, control bytes and the boxes of long keys.

    | keys | packed B/key | plain B/key | plain / packed | packed ns/lookup | plain ns/lookup |
    |---|---:|---:|---:|---:|---:|
    #{Enum.join(rows, "\n")}
    """)
  end

  # What `hit/2` does with the NIF's answer.
  defp decided({:report, decision}), do: decision
  defp decided(:unpublished), do: raise(ArgumentError, "unpublished")
  defp decided(decision), do: decision
end

Hotpath.Bench.main(&Bench.NativeAB.run/0)
