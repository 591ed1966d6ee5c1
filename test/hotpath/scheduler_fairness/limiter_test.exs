defmodule Hotpath.SchedulerFairness.LimiterTest do
  # Issue 14, item 9: a process calling a limiter NIF on a normal scheduler in a loop, with the
  # largest input the NIF accepts, never holds its scheduler for more than about 1 ms at a
  # stretch (measured from :running trace events, see Hotpath.SchedulerTrace).
  # limiter_new and limiter_clear run on dirty CPU schedulers (checked last).
  use ExUnit.Case, async: false

  alias Hotpath.{Native, RateLimiter, SchedulerTrace}

  @moduletag timeout: 120_000

  setup_all do
    # One table of a million keys (the default max_keys), filled once for every case.
    {:ok, sup} = Supervisor.start_link([], strategy: :one_for_one)

    start = fn opts ->
      {:ok, _} =
        Supervisor.start_child(
          sup,
          {RateLimiter, Keyword.merge([limit: 1, period: 600_000, sweep_every: :infinity], opts)}
        )

      opts[:name]
    end

    big = start.(name: :fair_big)
    for i <- 1..1_000_000, do: RateLimiter.hit(big, i, 1, now: 0)
    full = start.(name: :fair_full, max_keys: 1_000_000)
    for i <- 1..1_000_000, do: RateLimiter.hit(full, i, 1, now: 0)
    huge = start.(name: :fair_huge, max_keys: Bitwise.bsl(1, 32))
    on_exit(fn -> Process.exit(sup, :shutdown) end)
    %{big: big, full: full, huge: huge}
  end

  defp assert_fair(what, fun, opts \\ []) do
    %{longest_us: us, calls: calls} =
      SchedulerTrace.longest_stretch(fun, Keyword.merge([ms: 20, rounds: 15], opts))

    assert us < SchedulerTrace.limit_us(),
           "#{what}: held a normal scheduler #{us} µs at a stretch (#{calls} calls)"
  end

  test "info/1 on a million keys and on a table sized for 2^32 keys", ctx do
    assert RateLimiter.info(ctx.big).keys == 1_000_000
    assert_fair("info 1M keys", fn _ -> RateLimiter.info(ctx.big) end)
    assert_fair("info max_keys 2^32", fn _ -> RateLimiter.info(ctx.huge) end)
  end

  test "hit/2, hit/4, peek and reset refusing the largest keys", ctx do
    refuse = fn f ->
      try do
        f.()
      rescue
        ArgumentError -> :refused
      end
    end

    # The most costly refusals: a list walked to the 4096-byte bound, a deep nest, a huge
    # tuple and map (walked no further than the bound); and terms small in memory but huge
    # once encoded, whose size erl_nif cannot tell (measured in Elixir with external_size,
    # never encoded): a 500 KB bignum (OTP 26+ caps integers near 4 Mbit) shared 1,000 times
    # (500 MB encoded), a 10 MB bitstring that is not a binary, 4,000 copies of one
    # 255-character non-Latin-1 atom (2 MB).
    inputs = fn ->
      big = Bitwise.bsl(1, 4_000_000)
      atom = String.to_atom(String.duplicate("é", 127) <> "ĳ")

      [
        Enum.to_list(1..100_000),
        Enum.reduce(1..100_000, [], &[&1 | &2]),
        Enum.reduce(1..5_000, :leaf, &{&1, &2}),
        List.to_tuple(Enum.to_list(1..100_000)),
        Map.new(1..100_000, &{&1, &1}),
        List.to_tuple(List.duplicate(big, 1_000)),
        <<0::size(80_000_001)>>,
        List.duplicate(atom, 4_000)
      ]
    end

    for {name, call} <- [
          hit2: &RateLimiter.hit(ctx.big, &1),
          hit4: &RateLimiter.hit(ctx.big, &1, 1, now: 0),
          peek: &RateLimiter.peek(ctx.big, &1, 1, now: 0),
          reset: &RateLimiter.reset(ctx.big, &1)
        ] do
      assert_fair(
        "#{name} refusing large keys",
        fn keys -> Enum.each(keys, fn key -> :refused = refuse.(fn -> call.(key) end) end) end,
        setup: inputs
      )
    end
  end

  test "hit/2 with the largest accepted keys: a 4096-byte binary, terms encoded to ~4 KB",
       ctx do
    keys = fn ->
      [
        :binary.copy("b", 4_096),
        # 2 bytes per small integer: an encoding of about 4,000 bytes each.
        List.to_tuple(List.duplicate(1, 2_000)),
        List.duplicate([], 4_000),
        List.duplicate(7, 4_000)
      ]
    end

    assert_fair(
      "hit/2 with large accepted keys",
      fn keys -> Enum.each(keys, &RateLimiter.hit(ctx.big, &1)) end,
      setup: keys
    )
  end

  test "hits of new keys on a full table of a million keys", ctx do
    assert RateLimiter.info(ctx.full).keys == 1_000_000

    assert_fair(
      "hit on a full table",
      fn _ ->
        RateLimiter.hit(ctx.full, System.unique_integer(), 1, now: 1)
        RateLimiter.hit(ctx.full, System.unique_integer())
      end
    )
  end

  test "sweep/2 of a million keys, chunk by chunk", ctx do
    assert_fair("sweep", fn _ -> RateLimiter.sweep(ctx.big, now: 1) end, ms: 30)
  end

  test "now/1, node_for/2, and the NIFs behind start_link (validate, publish)", ctx do
    assert_fair("now", fn _ -> RateLimiter.now(ctx.big) end)
    assert_fair("node_for", fn _ -> RateLimiter.node_for(ctx.big, "k") end)

    assert_fair("validate", fn _ ->
      Native.limiter_validate(:gcra, 4_294_967_295, 8_640_000_000, nil)
    end)

    {ref, _, _} = RateLimiter.published_entry(ctx.big)
    assert_fair("publish", fn _ -> Native.limiter_publish(ref, ctx.big, false) end)
  end

  test "the largest limiter of several policies: 8 policies and bans, hits on a full table",
       _ctx do
    # 8 policies and a ban rule: the most slots a cell holds; a full table of 100k keys.
    policies =
      for {algorithm, i} <-
            Enum.with_index(
              List.flatten(
                List.duplicate([:gcra, :token_bucket, :fixed_window, :sliding_window], 2)
              )
            ),
          do: {:"p#{i}", [algorithm: algorithm, limit: 1, period: 600_000]}

    name = :fair_multi

    {:ok, sup} =
      Supervisor.start_link(
        [
          {RateLimiter,
           name: name,
           policies: policies,
           ban: [after: 2, within: 600_000, for: 600_000, backoff: 2],
           max_keys: 100_000,
           sweep_every: :infinity}
        ],
        strategy: :one_for_one
      )

    on_exit(fn -> Process.exit(sup, :shutdown) end)
    for i <- 1..100_000, do: RateLimiter.hit(name, i, 1, now: 0)
    assert RateLimiter.info(name).keys == 100_000

    assert_fair("hit/2 of 8 policies on a full table", fn _ ->
      RateLimiter.hit(name, System.unique_integer(), 1, now: 1)
      RateLimiter.hit(name, System.unique_integer())
      RateLimiter.hit(name, 7)
    end)

    assert_fair("peek, ban, banned? and unban of 8 policies", fn _ ->
      RateLimiter.peek(name, 8, 1, policy: :p7)
      RateLimiter.ban(name, 9)
      RateLimiter.banned?(name, 9)
      RateLimiter.unban(name, 9)
      RateLimiter.reset(name, 10, policy: :p3)
    end)

    rules = RateLimiter.Options.native_policies(RateLimiter.info(name).config)
    assert_fair("validate 8 policies", fn _ -> Native.limiter_validate_rules(rules, nil) end)
  end

  test "limiter_new at max_keys 2^32 and reset_all run on dirty schedulers (not counted)" do
    assert_fair(
      "new 2^32",
      fn _ -> Native.limiter_new(:gcra, 1, 1_000, nil, Bitwise.bsl(1, 32), nil, false) end,
      min_calls: 2
    )
  end
end
