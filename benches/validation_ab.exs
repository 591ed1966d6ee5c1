# What `Hotpath.RateLimiter.hit/4`'s hand-written option check saves (issue #15): every other
# option of the library goes through the one schema validator, `Hotpath.Options`; the per-call
# options of `hit/4` and `peek/4` are checked by hand (`RateLimiter.call_opts!/2`) because they
# are on a per-request path. This runs, in the same run, `hit/4` as the library does it, the
# same call with the same options first validated through `Hotpath.Options` against a schema
# of the same rules (the schema's cost comes on top), and each check alone.
#
#     MIX_ENV=prod mix run benches/validation_ab.exs
Code.require_file("support/harness.exs", __DIR__)

defmodule Bench.ValidationAB do
  alias Hotpath.RateLimiter

  @keys 10_000
  # The rules of `RateLimiter.call_opts!/2`, as a schema.
  @call_schema [
    limit: [type: {:integer, 1, :infinity}],
    period: [type: {:integer, 1, :infinity}],
    burst: [type: {:integer, 1, :infinity}],
    now: [
      type:
        {:custom, Hotpath.RateLimiter, :now_option,
         "a non-negative integer of milliseconds up to 2^40"}
    ]
  ]
  @where "Hotpath.RateLimiter.hit/4"

  def run do
    name = :bench_validation_ab

    {:ok, _} =
      RateLimiter.start_link(
        name: name,
        algorithm: :gcra,
        limit: 1_000_000_000,
        period: 1_000,
        sweep_every: :infinity
      )

    keys = List.to_tuple(for i <- 1..@keys, do: "user:#{i}")
    key = fn i -> elem(keys, rem(i, @keys)) end
    # A per-call policy, as an app with per-plan limits passes it.
    opts = [limit: 1_000_000_000, period: 1_000]
    {_ref, _deny_events, config} = RateLimiter.published_entry(name)

    Hotpath.Bench.run(
      title: "Per-call options of Hotpath.RateLimiter.hit/4: hand check vs Hotpath.Options",
      note:
        "`:gcra`, 10k binary keys, allow-heavy, `opts = #{inspect(opts)}`. \"hit/4\" is the " <>
          "library's call (its options checked by hand, `call_opts!/2`); \"hit/4 after " <>
          "Hotpath.Options\" validates the same options through `Hotpath.Options.validate!/3` " <>
          "(a schema of the same rules) first, so it pays for both checks: the difference is " <>
          "what the schema would add. The last two rows are the checks alone.",
      cases: [
        {"empty NIF", fn -> Hotpath.Native.noop() end},
        {"hit/2 (no options)", fn i -> RateLimiter.hit(name, key.(i)) end},
        {"hit/4", fn i -> RateLimiter.hit(name, key.(i), 1, opts) end},
        {"hit/4 after Hotpath.Options",
         fn i ->
           Hotpath.Options.validate!(opts, @call_schema, @where)
           RateLimiter.hit(name, key.(i), 1, opts)
         end},
        {"hand check alone (call_opts!/2)", fn -> RateLimiter.call_opts!(opts, config) end},
        {"Hotpath.Options.validate!/3 alone",
         fn -> Hotpath.Options.validate!(opts, @call_schema, @where) end}
      ],
      baselines: ["empty NIF", "hit/4"],
      targets: [
        {:custom, "the schema's cost on hit/4 (reported): hit/4 after Hotpath.Options / hit/4",
         fn results ->
           text =
             Enum.map_join(results, ", ", fn {mode, r} ->
               extra = r["hit/4 after Hotpath.Options"].ns - r["hit/4"].ns

               "#{mode} #{Hotpath.Bench.format_ratio(r["hit/4 after Hotpath.Options"].ns / r["hit/4"].ns)} " <>
                 "(+#{round(extra)} ns)"
             end)

           {true, text}
         end}
      ]
    )

    GenServer.stop(name)
  end
end

Hotpath.Bench.main(&Bench.ValidationAB.run/0)
