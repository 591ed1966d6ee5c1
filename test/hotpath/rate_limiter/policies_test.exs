defmodule Hotpath.RateLimiter.PoliciesTest do
  # Limiters of several named policies: one atomic decision over all of them.
  use ExUnit.Case, async: true

  alias Hotpath.RateLimiter
  alias Hotpath.Test.OwnerCrash

  @algorithms [:gcra, :token_bucket, :fixed_window, :sliding_window]
  # A period no test outlives: nothing refills while a test runs (100 days).
  @long 8_640_000_000

  defp start!(policies, opts \\ []) do
    name = :"policies_#{System.unique_integer([:positive])}"

    start_supervised!(
      {RateLimiter, [name: name, policies: policies, sweep_every: :infinity] ++ opts}
    )

    name
  end

  defp two(opts \\ []) do
    start!(
      [
        burst: [algorithm: :fixed_window, limit: 3, period: 1_000],
        daily: [algorithm: :fixed_window, limit: 5, period: 86_400_000]
      ],
      opts
    )
  end

  describe "hit/4" do
    test "admitted only if every policy admits; the answer names the tightest policy" do
      l = two()
      assert RateLimiter.hit(l, "k", 1, now: 0) == {:allow, 2, 1000, :burst}
      assert RateLimiter.hit(l, "k", 1, now: 0) == {:allow, 1, 1000, :burst}
      assert RateLimiter.hit(l, "k", 1, now: 0) == {:allow, 0, 1000, :burst}
      assert RateLimiter.hit(l, "k", 1, now: 0) == {:deny, 1000, 1000, [:burst]}
      # Next second: the day has 2 left, fewer than the burst's 3.
      assert RateLimiter.hit(l, "k", 1, now: 1_000) == {:allow, 1, 86_399_000, :daily}
      assert RateLimiter.hit(l, "k", 1, now: 1_000) == {:allow, 0, 86_399_000, :daily}
      assert RateLimiter.hit(l, "k", 1, now: 1_000) == {:deny, 86_399_000, 86_399_000, [:daily]}
      # Two policies refuse: both named, the largest retry-after.
      assert RateLimiter.hit(l, "k", 3, now: 1_000) ==
               {:deny, 86_399_000, 86_399_000, [:burst, :daily]}

      # A cost beyond a policy's capacity can never pass.
      assert {:deny, :infinity, _, [:burst, :daily]} = RateLimiter.hit(l, "other", 6, now: 0)
      assert {:deny, :infinity, _, [:burst]} = RateLimiter.hit(l, "other", 4, now: 0)
    end

    test "a denial charges no policy" do
      l = two()
      for _ <- 1..3, do: assert({:allow, _, _, _} = RateLimiter.hit(l, "k", 1, now: 0))
      # Denied by :burst a hundred times: :daily is not charged.
      for _ <- 1..100, do: assert({:deny, _, _, [:burst]} = RateLimiter.hit(l, "k", 1, now: 10))
      assert RateLimiter.peek(l, "k", 1, policy: :daily, now: 10) == {:allow, 1, 86_399_990}
      # Denied by :daily: :burst is not charged either.
      assert {:allow, _, _, _} = RateLimiter.hit(l, "k", 2, now: 1_000)
      assert {:deny, _, _, [:daily]} = RateLimiter.hit(l, "k", 1, now: 2_000)
      assert RateLimiter.peek(l, "k", 1, policy: :burst, now: 2_000) == {:allow, 2, 1000}
    end

    test "hit/2 and hit/4 give the same answers" do
      a = two()
      b = two()

      for i <- 1..12 do
        now = RateLimiter.now(b)
        fast = RateLimiter.hit(a, "k")
        slow = RateLimiter.hit(b, "k", 1, now: now)
        assert elem(fast, 0) == elem(slow, 0), "hit #{i}"
        assert elem(fast, 3) == elem(slow, 3), "hit #{i}"
      end
    end

    test "a single-policy limiter answers as before" do
      name = :"plain_#{System.unique_integer([:positive])}"
      start_supervised!({RateLimiter, name: name, limit: 2, period: 1_000})
      assert RateLimiter.hit(name, "k", 1, now: 0) == {:allow, 1, 500}
      assert RateLimiter.hit(name, "k", 1, now: 0) == {:allow, 0, 1000}
      assert RateLimiter.hit(name, "k", 1, now: 0) == {:deny, 500, 1000}
      refute Map.has_key?(RateLimiter.info(name), :policies)
    end
  end

  describe "peek, reset and info per policy" do
    test "peek answers for all policies or one, charging nothing" do
      l = two()
      assert RateLimiter.peek(l, "k", 1, now: 0) == {:allow, 2, 1000, :burst}
      assert {:allow, _, _, _} = RateLimiter.hit(l, "k", 3, now: 0)
      assert RateLimiter.peek(l, "k", 1, now: 0) == {:deny, 1000, 1000, [:burst]}
      assert RateLimiter.peek(l, "k", 1, policy: :burst, now: 0) == {:deny, 1000, 1000}
      assert RateLimiter.peek(l, "k", 1, policy: :daily, now: 0) == {:allow, 1, 86_400_000}
      assert RateLimiter.peek(l, "k", 1, policy: :daily, now: 0) == {:allow, 1, 86_400_000}
    end

    test "reset forgets every policy, or one" do
      l = two()
      assert {:allow, _, _, _} = RateLimiter.hit(l, "k", 3, now: 0)
      assert :ok = RateLimiter.reset(l, "k", policy: :burst)
      assert RateLimiter.peek(l, "k", 1, policy: :burst, now: 0) == {:allow, 2, 1000}
      assert RateLimiter.peek(l, "k", 1, policy: :daily, now: 0) == {:allow, 1, 86_400_000}
      assert :ok = RateLimiter.reset(l, "k")
      assert RateLimiter.peek(l, "k", 1, policy: :daily, now: 0) == {:allow, 4, 86_400_000}
      assert :ok = RateLimiter.reset(l, "never seen", policy: :daily)
      assert :ok = RateLimiter.reset_all(l)
      assert RateLimiter.info(l).keys == 0
    end

    test "info lists the policies; one key is one entry whatever the policy count" do
      l = two(max_keys: 100)
      assert {:allow, _, _, _} = RateLimiter.hit(l, "k")
      info = RateLimiter.info(l)
      assert info.keys == 1

      assert info.policies == [
               burst: [algorithm: :fixed_window, limit: 3, period: 1_000, burst: nil],
               daily: [algorithm: :fixed_window, limit: 5, period: 86_400_000, burst: nil]
             ]

      assert info.config[:limit] == nil
      assert info.memory_bytes > 0
    end

    test "the sweeper removes a key once every policy is fresh" do
      l = two()
      assert {:allow, _, _, _} = RateLimiter.hit(l, "k", 1, now: 0)
      assert %{removed: 0} = RateLimiter.sweep(l, now: 1_000)
      assert %{removed: 1, keys: 0} = RateLimiter.sweep(l, now: 86_400_000)
    end
  end

  describe "concurrency" do
    test "8 processes get exactly the tightest total, for each pair of algorithms" do
      for a <- @algorithms, b <- @algorithms do
        l =
          start!(
            first: [algorithm: a, limit: 300, period: @long],
            second: [algorithm: b, limit: 500, period: @long]
          )

        admitted =
          1..8
          |> Task.async_stream(
            fn _ ->
              Enum.count(1..100, fn _ -> match?({:allow, _, _, _}, RateLimiter.hit(l, "hot")) end)
            end,
            max_concurrency: 8
          )
          |> Enum.reduce(0, fn {:ok, n}, acc -> acc + n end)

        assert admitted == 300, "#{a} + #{b} admitted #{admitted}"
        # The looser policy was charged exactly what was admitted, and nothing for the denials.
        assert {:allow, 199, _} = RateLimiter.peek(l, "hot", 1, policy: :second)
        assert {:deny, _, _} = RateLimiter.peek(l, "hot", 1, policy: :first)
        stop_supervised!({RateLimiter, l})
      end
    end

    test "weighted hits of 8 processes over three policies fill the tightest exactly" do
      l =
        start!(
          a: [algorithm: :gcra, limit: 1_000, period: @long, burst: 1_000],
          b: [algorithm: :sliding_window, limit: 997, period: @long],
          c: [algorithm: :fixed_window, limit: 2_000, period: @long]
        )

      admitted =
        1..8
        |> Task.async_stream(fn i ->
          cost = rem(i, 3) + 1

          Enum.reduce(1..200, 0, fn _, acc ->
            case RateLimiter.hit(l, "w", cost) do
              {:allow, _, _, _} -> acc + cost
              {:deny, _, _, _} -> acc
            end
          end)
        end)
        |> Enum.reduce(0, fn {:ok, n}, acc -> acc + n end)

      assert admitted in 995..997
      assert {:allow, remaining, _} = RateLimiter.peek(l, "w", 1, policy: :c)
      assert remaining == 2_000 - admitted - 1
      assert {:allow, r, _} = RateLimiter.peek(l, "w", 1, policy: :a)
      assert r == 1_000 - admitted - 1
    end
  end

  describe "lifecycle" do
    test "counters of every policy survive an owner crash under load" do
      name = :"policies_crash_#{System.unique_integer([:positive])}"

      opts = [
        name: name,
        sweep_every: 1,
        policies: [
          tight: [algorithm: :gcra, limit: 2_000, period: @long, burst: 2_000],
          loose: [algorithm: :sliding_window, limit: 5_000, period: @long]
        ]
      ]

      {admitted, owner, sup} =
        OwnerCrash.hit_through_crashes(opts, 1_500, fn ->
          match?({:allow, _, _, _}, RateLimiter.hit(name, "k"))
        end)

      assert Process.whereis(name) != owner
      assert admitted == 2_000
      assert {:allow, 2_999, _} = RateLimiter.peek(name, "k", 1, policy: :loose)
      assert %{active: 1} = Supervisor.count_children(sup)
    end

    test "a restart with other policies gets a new table" do
      name = :"policies_restart_#{System.unique_integer([:positive])}"
      opts = [name: name, policies: [a: [limit: 1, period: 60_000]]]
      start_supervised!({RateLimiter, opts}, id: :first)
      # One named policy answers in the shape of several (named).
      assert {:allow, 0, _, :a} = RateLimiter.hit(name, "k")
      assert {:deny, _, _, [:a]} = RateLimiter.hit(name, "k")
      :ok = stop_supervised(:first)
      opts = [name: name, policies: [a: [limit: 1, period: 60_000], b: [limit: 5, period: 1]]]
      start_supervised!({RateLimiter, opts}, id: :second)
      assert {:allow, 0, _, :a} = RateLimiter.hit(name, "k")
    end
  end

  describe "telemetry" do
    setup do
      Hotpath.Telemetry.put_module(Hotpath.FakeTelemetry)
      Hotpath.FakeTelemetry.forward([:hotpath, :rate_limiter, :deny], :deny)
    end

    test "deny events name the violated policies" do
      l = two(telemetry_denies: true)
      assert {:allow, _, _, _} = RateLimiter.hit(l, "k", 3)
      assert {:deny, _, _, [:burst]} = RateLimiter.hit(l, "k")
      assert_receive {:deny, %{cost: 1}, %{limiter: ^l, key: "k", violated: [:burst]}}
      assert {:deny, _, _, [:burst]} = RateLimiter.hit(l, "k", 1, now: 0)
      assert_receive {:deny, %{cost: 1}, %{limiter: ^l, violated: [:burst]}}
      # (Other tests' limiters emit deny events through the same stand-in.)
      refute_receive {:deny, _, %{limiter: ^l}}
    end
  end

  describe "bad inputs" do
    test "start_link validates policies with clear messages" do
      base = [name: :bad, sweep_every: :infinity]

      for {opts, message} <- [
            {[policies: []], ~r/:policies must be a keyword list of 1 to 8 policies/},
            {[policies: :x], ~r/:policies must be/},
            {[policies: [a: [limit: 1]]],
             ~r/missing required option :period \(Hotpath.RateLimiter policy :a\)/},
            {[policies: [a: [limit: 0, period: 1]]],
             ~r/:limit must be a positive integer, got: 0 \(Hotpath.RateLimiter policy :a\)/},
            {[policies: [a: [limit: 1, period: 1, algorithm: :leaky]]],
             ~r/:algorithm must be one of/},
            {[policies: [a: [limit: 1, period: 1, color: :red]]], ~r/unknown options \[:color\]/},
            {[policies: [a: [limit: 2 ** 32, period: 1]]],
             ~r/limit must be an integer in 1..4294967295/},
            {[policies: [a: [algorithm: :fixed_window, limit: 1, period: 1, burst: 2]]],
             ~r/burst applies only to :gcra and :token_bucket/},
            {[policies: [a: [limit: 1, period: 1], a: [limit: 2, period: 1]]],
             ~r/names each policy once, got :a twice/},
            {[policies: for(i <- 1..9, do: {:"p#{i}", [limit: 1, period: 1]})],
             ~r/at most 8 policies, got 9/},
            {[policies: [a: [limit: 1, period: 1]], limit: 5],
             ~r/:limit cannot be given with :policies/},
            {[policies: [a: [limit: 1, period: 1]], algorithm: :gcra, burst: 2],
             ~r/:algorithm, :burst cannot be given with :policies/}
          ] do
        assert_raise ArgumentError, message, fn -> RateLimiter.start_link(base ++ opts) end
        assert_raise ArgumentError, message, fn -> RateLimiter.child_spec(base ++ opts) end
      end
    end

    test "per-call options of a limiter of several policies" do
      l = two()

      assert_raise ArgumentError, ~r/per-call :limit applies to a single-policy limiter/, fn ->
        RateLimiter.hit(l, "k", 1, limit: 5)
      end

      assert_raise ArgumentError, ~r/:policy must be one of :burst, :daily, got: :weekly/, fn ->
        RateLimiter.peek(l, "k", 1, policy: :weekly)
      end

      assert_raise ArgumentError, ~r/invalid call option \{:policy, :burst\}/, fn ->
        RateLimiter.hit(l, "k", 1, policy: :burst)
      end

      assert_raise ArgumentError, ~r/:policy must be an atom, got: "burst"/, fn ->
        RateLimiter.reset(l, "k", policy: "burst")
      end

      assert_raise ArgumentError, ~r/:policy must be one of :burst, :daily, got: :x/, fn ->
        RateLimiter.reset(l, "k", policy: :x)
      end

      assert_raise ArgumentError, ~r/reset\/3 needs :policy/, fn ->
        RateLimiter.reset(l, "k", now: 5)
      end

      assert_raise ArgumentError, ~r/unknown options \[:color\]/, fn ->
        RateLimiter.reset(l, "k", color: 1)
      end

      assert_raise ArgumentError, ~r/cost must be a positive integer/, fn ->
        RateLimiter.hit(l, "k", 0)
      end

      single = :"single_#{System.unique_integer([:positive])}"
      start_supervised!({RateLimiter, name: single, limit: 1, period: 1}, id: :single)

      assert_raise ArgumentError, ~r/:policy applies to a limiter with :policies/, fn ->
        RateLimiter.peek(single, "k", 1, policy: :a)
      end

      assert_raise ArgumentError, ~r/:policy applies to a limiter with :policies/, fn ->
        RateLimiter.reset(single, "k", policy: :a)
      end
    end

    test "limiter_new_multi refuses garbage without crashing" do
      ok = [{:a, :gcra, 1, 1, nil}]

      for args <- [
            [[], nil, 10, nil, false, false],
            [ok, nil, 0, nil, false, false],
            [ok, nil, 2 ** 33, nil, false, false],
            [ok, nil, 10, -1, false, false],
            [ok ++ [{:b, :gcra, 1, 1, nil}], nil, 10, nil, false, true],
            [ok, {nil, nil, 0, 1.0, nil}, 10, nil, false, false],
            [ok, nil, 10, nil, :yes, false]
          ] do
        assert_raise ArgumentError, fn -> apply(Hotpath.Native, :limiter_new_multi, args) end
      end
    end

    test "the NIFs refuse malformed policies without crashing" do
      for {policies, ban} <- [
            {[], nil},
            {:x, nil},
            {[{:a, :gcra, 1, 1}], nil},
            {[{:a, :gcra, 1, 1, nil}, {:a, :gcra, 1, 1, nil}], nil},
            {[{:a, :nope, 1, 1, nil}], nil},
            {[{:a, :gcra, 1, 1, nil}], {1, nil, 1, 1.0, nil}},
            {[{:a, :gcra, 1, 1, nil}], {nil, nil, 1, 0.5, nil}},
            {[{:a, :gcra, 1, 1, nil}], :bad}
          ] do
        assert_raise ArgumentError, fn -> Hotpath.Native.limiter_validate_rules(policies, ban) end
      end
    end
  end
end
