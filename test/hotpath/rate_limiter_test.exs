defmodule Hotpath.RateLimiterTest do
  use ExUnit.Case, async: true

  alias Hotpath.RateLimiter
  alias Hotpath.Test.OwnerCrash

  doctest Hotpath.RateLimiter

  @algorithms [:gcra, :token_bucket, :fixed_window, :sliding_window]

  defp start!(opts) do
    name = :"limiter_#{System.unique_integer([:positive])}"
    opts = Keyword.merge([name: name, limit: 10, period: 1_000, sweep_every: :infinity], opts)
    start_supervised!({RateLimiter, opts})
    name
  end

  describe "hit/4" do
    test "admits up to the limit, then denies with exact retry-after, for every algorithm" do
      for algorithm <- @algorithms do
        l = start!(algorithm: algorithm, limit: 3, period: 1_000)
        results = for _ <- 1..4, do: RateLimiter.hit(l, "k", 1, now: 0)
        assert [{:allow, 2, _}, {:allow, 1, _}, {:allow, 0, _}, {:deny, retry, reset}] = results
        assert retry > 0 and retry <= 2_000, "#{algorithm}: retry #{retry}"
        assert reset > 0 and reset <= 2_000
        assert {:allow, _, _} = RateLimiter.hit(l, "k", 1, now: retry)
      end
    end

    test "gcra spaces requests after the burst" do
      l = start!(limit: 10, period: 1_000, burst: 2)
      assert {:allow, 1, 100} = RateLimiter.hit(l, :k, 1, now: 0)
      assert {:allow, 0, 200} = RateLimiter.hit(l, :k, 1, now: 0)
      assert {:deny, 100, 200} = RateLimiter.hit(l, :k, 1, now: 0)
      assert {:deny, 1, 101} = RateLimiter.hit(l, :k, 1, now: 99)
      assert {:allow, 0, 200} = RateLimiter.hit(l, :k, 1, now: 100)
    end

    test "weighted costs, and a cost that can never fit" do
      for algorithm <- @algorithms do
        l = start!(algorithm: algorithm, limit: 5, period: 1_000)
        assert {:allow, 0, _} = RateLimiter.hit(l, "k", 5, now: 0)
        assert {:deny, retry, _} = RateLimiter.hit(l, "k", 2, now: 0)
        assert is_integer(retry) and retry > 0
        assert {:deny, :infinity, _} = RateLimiter.hit(l, "k", 6, now: 0)
        assert {:deny, :infinity, 0} = RateLimiter.hit(l, "other", 6, now: 0)
      end
    end

    test "retry-after is rounded up, never 0 while denied" do
      # 3 per second: an interval of 333.33.. ms.
      l = start!(limit: 3, period: 1_000, burst: 1)
      assert {:allow, 0, 334} = RateLimiter.hit(l, "k", 1, now: 0)
      assert {:deny, 1, 1} = RateLimiter.hit(l, "k", 1, now: 333)
      assert {:allow, _, _} = RateLimiter.hit(l, "k", 1, now: 334)
    end

    test "denied requests are not charged" do
      for algorithm <- @algorithms do
        l = start!(algorithm: algorithm, limit: 1, period: 1_000)
        assert {:allow, 0, _} = RateLimiter.hit(l, "k", 1, now: 0)
        denies = for t <- 1..50, do: RateLimiter.hit(l, "k", 1, now: t * 10)
        assert Enum.all?(denies, &match?({:deny, _, _}, &1))
        assert {:allow, _, _} = RateLimiter.hit(l, "k", 1, now: 2_000)
      end
    end

    test "per-call policies" do
      l = start!(limit: 100, period: 1_000)
      assert {:allow, 1, _} = RateLimiter.hit(l, "k", 1, limit: 2, period: 1_000, now: 0)
      assert {:allow, 0, _} = RateLimiter.hit(l, "k", 1, limit: 2, now: 0)
      assert {:deny, _, _} = RateLimiter.hit(l, "k", 1, limit: 2, now: 0)
      assert {:allow, _, _} = RateLimiter.hit(l, "other", 1, now: 0)
    end

    test "fixed windows open per key at the first hit" do
      l = start!(algorithm: :fixed_window, limit: 2, period: 1_000)
      assert {:allow, 1, 1_000} = RateLimiter.hit(l, "a", 1, now: 250)
      assert {:allow, 0, 900} = RateLimiter.hit(l, "a", 1, now: 350)
      assert {:deny, 900, 900} = RateLimiter.hit(l, "a", 1, now: 350)
      assert {:allow, 1, 1_000} = RateLimiter.hit(l, "b", 1, now: 900)
      assert {:allow, 1, 1_000} = RateLimiter.hit(l, "a", 1, now: 1_250)
    end

    test "the sliding window weighs the previous window" do
      l = start!(algorithm: :sliding_window, limit: 10, period: 1_000)
      assert {:allow, 0, _} = RateLimiter.hit(l, "k", 10, now: 0)
      # At 1500 ms the first window still weighs 50%.
      assert {:allow, 4, _} = RateLimiter.hit(l, "k", 1, now: 1_500)
      assert {:allow, 0, _} = RateLimiter.hit(l, "k", 4, now: 1_500)
      assert {:deny, 100, _} = RateLimiter.hit(l, "k", 1, now: 1_500)
    end

    test "keys are any term, compared exactly" do
      l = start!(limit: 1, period: 60_000)

      keys = [
        "a",
        :a,
        ~c"a",
        1,
        1.0,
        -1,
        2 ** 70,
        {:user, 1},
        {:user, 2},
        %{id: 1},
        [1, 2, 3],
        {127, 0, 0, 1},
        self(),
        <<1::3>>,
        String.duplicate("x", 100)
      ]

      for key <- keys, do: assert({:allow, 0, _} = RateLimiter.hit(l, key, 1, now: 0))
      for key <- keys, do: assert({:deny, _, _} = RateLimiter.hit(l, key, 1, now: 0))
      assert RateLimiter.info(l).keys == length(keys)
    end

    test "keys whose size the NIF cannot tell are measured first, on every path" do
      l = start!(algorithm: :fixed_window, limit: 2, period: 60_000)
      # A bignum, a bitstring that is not a binary, a non-Latin-1 atom, and terms holding them.
      keys = [2 ** 100, <<1::3>>, :"ĳ", {:user, 2 ** 64}, [<<5::7>>], %{a: :"ĳĳ"}]

      for key <- keys do
        assert {:allow, 1, _} = RateLimiter.hit(l, key)
        assert {:allow, 0, _} = RateLimiter.hit(l, key, 1, now: RateLimiter.now(l))
        assert {:deny, _, _} = RateLimiter.peek(l, key)
        assert :ok = RateLimiter.reset(l, key)
        assert {:allow, 1, _} = RateLimiter.hit(l, key)
      end

      # Each key is its own entry, distinct from the measured form a caller could write.
      assert RateLimiter.info(l).keys == length(keys)
      refute RateLimiter.hit(l, 2 ** 100) == RateLimiter.hit(l, 2 ** 101)

      big = Bitwise.bsl(1, 4_000_000)

      for key <- [big, {:user, big}, List.duplicate(<<1::7>>, 1_000)],
          call <- [
            &RateLimiter.hit(l, &1),
            &RateLimiter.hit(l, &1, 1, now: 0),
            &RateLimiter.peek(l, &1),
            &RateLimiter.reset(l, &1)
          ] do
        assert_raise ArgumentError, ~r/at most 4096 bytes, got one of \d+ bytes/, fn ->
          call.(key)
        end
      end
    end

    test "uses the limiter's monotonic clock without now:" do
      l = start!(limit: 2, period: 60_000)
      assert {:allow, 1, _} = RateLimiter.hit(l, "k")
      assert {:allow, 0, _} = RateLimiter.hit(l, "k")
      assert {:deny, retry, _} = RateLimiter.hit(l, "k")
      assert retry > 29_000
      assert RateLimiter.now(l) >= 0
    end
  end

  describe "hit/2 and hit/3, the one-call path" do
    # A period no test outlives (100 days): nothing refills and no window ends while a
    # sequence runs, so the limiter's own clock changes only the reported waits.
    @long 8_640_000_000
    # Costs for a limit of 5: fills it with 1 + 2 + 1 + 1, denies 1 and 3, never fits 6.
    @costs [1, 2, 1, 3, 1, 1, 6, 2]

    # Each sequence runs through hit/2,3 on one limiter and through hit/4 with `now:` on a
    # twin, all at the instant the first limiter's clock read before the sequence. The
    # answers agree exactly; the waits reported by the one-call path are shorter by at most
    # the milliseconds the sequence took (plus one for the clock's sub-millisecond part).
    defp both_paths(algorithm, telemetry_denies) do
      opts = [algorithm: algorithm, limit: 5, period: @long, telemetry_denies: telemetry_denies]
      {l, twin} = {start!(opts), start!(opts)}
      t0 = RateLimiter.now(l)
      fast = for cost <- @costs, do: one_call(l, "k", cost)
      elapsed = RateLimiter.now(l) - t0
      slow = for cost <- @costs, do: RateLimiter.hit(twin, "k", cost, now: t0)
      {fast, slow, elapsed}
    end

    defp one_call(l, key, 1), do: RateLimiter.hit(l, key)
    defp one_call(l, key, cost), do: RateLimiter.hit(l, key, cost)

    test "answers what hit/4 answers at the same instant, for every algorithm" do
      for algorithm <- @algorithms, telemetry_denies <- [false, true] do
        {fast, slow, elapsed} = both_paths(algorithm, telemetry_denies)
        context = "#{algorithm}, telemetry_denies: #{telemetry_denies}"

        assert [
                 {:allow, 4, _},
                 {:allow, 2, _},
                 {:allow, 1, _},
                 {:deny, _, _},
                 {:allow, 0, _},
                 {:deny, _, _},
                 {:deny, :infinity, _},
                 {:deny, _, _}
               ] = fast,
               context

        for {{tag, a1, b1} = f, {tag, a2, b2} = s} <- Enum.zip(fast, slow) do
          assert close?(a1, a2, elapsed) and close?(b1, b2, elapsed),
                 "#{context}: #{inspect(f)} on the one-call path, #{inspect(s)} with now:"
        end
      end
    end

    test "a denial is not charged and the key's state is the one hit/4 sees" do
      for algorithm <- @algorithms do
        l = start!(algorithm: algorithm, limit: 2, period: @long)
        assert {:allow, 0, _} = RateLimiter.hit(l, {:user, 7}, 2)
        for _ <- 1..20, do: assert({:deny, _, _} = RateLimiter.hit(l, {:user, 7}))
        assert {:deny, _, _} = RateLimiter.hit(l, {:user, 7}, 1, now: RateLimiter.now(l))
        assert {:allow, 1, _} = RateLimiter.hit(l, {:user, 8})
        assert :ok = RateLimiter.reset(l, {:user, 7})
        assert {:allow, 1, _} = RateLimiter.hit(l, {:user, 7})
        assert RateLimiter.info(l).keys == 2
      end
    end

    test "weighted hits from many processes fill the limit exactly" do
      l = start!(algorithm: :gcra, limit: 1_000, period: @long)

      admitted =
        1..20
        |> Task.async_stream(fn i ->
          cost = rem(i, 4) + 1

          Enum.reduce(1..200, 0, fn _, acc ->
            case RateLimiter.hit(l, "hot", cost) do
              {:allow, _, _} -> acc + cost
              {:deny, _, _} -> acc
            end
          end)
        end)
        |> Enum.reduce(0, fn {:ok, n}, acc -> acc + n end)

      # 20 processes x 200 attempts of cost 1..4 want 10,000: the limit is reached, never
      # passed, and what is left over is less than the largest cost that was refused.
      left = 1_000 - admitted
      assert left in 0..3
      if left > 0, do: assert({:allow, 0, _} = RateLimiter.hit(l, "hot", left))
      assert {:deny, _, _} = RateLimiter.hit(l, "hot")
    end
  end

  describe "peek/4, reset/2, reset_all/1" do
    test "peek answers like hit and consumes nothing" do
      for algorithm <- @algorithms do
        l = start!(algorithm: algorithm, limit: 2, period: 1_000)
        assert {:allow, 1, _} = RateLimiter.peek(l, "k", 1, now: 0)
        assert {:allow, 1, _} = RateLimiter.peek(l, "k", 1, now: 0)
        assert RateLimiter.info(l).keys == 0
        hit = RateLimiter.hit(l, "k", 2, now: 0)
        assert {:deny, _, _} = peeked = RateLimiter.peek(l, "k", 1, now: 10)
        assert peeked == RateLimiter.hit(l, "k", 1, now: 10)
        assert {:allow, 0, _} = hit
      end
    end

    test "reset forgets one key, reset_all every key" do
      l = start!(limit: 1, period: 60_000)
      for k <- ["a", "b"], do: RateLimiter.hit(l, k, 1, now: 0)
      assert :ok = RateLimiter.reset(l, "a")
      assert :ok = RateLimiter.reset(l, "never seen")
      assert {:allow, _, _} = RateLimiter.hit(l, "a", 1, now: 0)
      assert {:deny, _, _} = RateLimiter.hit(l, "b", 1, now: 0)
      assert :ok = RateLimiter.reset_all(l)
      assert RateLimiter.info(l).keys == 0
      assert {:allow, _, _} = RateLimiter.hit(l, "b", 1, now: 0)
    end
  end

  describe "concurrency" do
    test "many processes hitting one key admit exactly the limit" do
      for algorithm <- @algorithms do
        l = start!(algorithm: algorithm, limit: 1_000, period: 3_600_000)

        admitted =
          1..50
          |> Task.async_stream(
            fn _ ->
              Enum.count(1..100, fn _ -> match?({:allow, _, _}, RateLimiter.hit(l, "hot")) end)
            end,
            max_concurrency: 50
          )
          |> Enum.reduce(0, fn {:ok, n}, acc -> acc + n end)

        assert admitted == 1_000, "#{algorithm} admitted #{admitted}"
      end
    end

    test "weighted concurrent hits never exceed the limit and fill it exactly" do
      l = start!(algorithm: :gcra, limit: 997, period: 3_600_000)

      admitted =
        1..20
        |> Task.async_stream(fn i ->
          cost = rem(i, 3) + 1

          Enum.reduce(1..100, 0, fn _, acc ->
            case RateLimiter.hit(l, "hot", cost, now: 0) do
              {:allow, _, _} -> acc + cost
              _ -> acc
            end
          end)
        end)
        |> Enum.reduce(0, fn {:ok, n}, acc -> acc + n end)

      assert admitted <= 997
      assert {:deny, _, _} = RateLimiter.hit(l, "hot", 1, now: 0)
      assert admitted >= 997 - 2
    end

    test "many keys from many processes are counted exactly" do
      l = start!(algorithm: :fixed_window, limit: 1_000_000, period: 3_600_000)

      1..8
      |> Task.async_stream(fn _ -> for i <- 1..2_000, do: RateLimiter.hit(l, rem(i, 500)) end)
      |> Stream.run()

      assert RateLimiter.info(l).keys == 500
      # Each key was hit 8 * 4 = 32 times.
      for key <- [0, 250, 499] do
        assert {:allow, remaining, _} = RateLimiter.peek(l, key)
        assert remaining == 1_000_000 - 32 - 1
      end
    end
  end

  defp close?(wait, wait, _elapsed), do: true
  defp close?(a, b, elapsed) when is_integer(a) and is_integer(b), do: (b - a) in 0..(elapsed + 1)
  defp close?(_a, _b, _elapsed), do: false

  describe "max_keys and on_full" do
    test ":deny refuses new keys when full, with a retry-after, until keys expire" do
      l = start!(algorithm: :fixed_window, limit: 1, period: 1_000, max_keys: 16)
      for i <- 1..16, do: assert({:allow, 0, _} = RateLimiter.hit(l, i, 1, now: 0))
      assert {:deny, retry, retry} = RateLimiter.hit(l, :new, 1, now: 100)
      assert retry > 0 and retry <= 900
      assert %{keys: 16, full_events: 1} = RateLimiter.info(l)
      # Known keys are decided as usual.
      assert {:deny, 900, 900} = RateLimiter.hit(l, 1, 1, now: 100)
      # Once their windows end, expired keys make room.
      assert {:allow, 0, _} = RateLimiter.hit(l, :new, 1, now: 1_000)
      assert RateLimiter.info(l).keys <= 16
    end

    test ":allow admits new keys untracked when full" do
      l = start!(algorithm: :fixed_window, limit: 1, period: 1_000, max_keys: 16, on_full: :allow)
      for i <- 1..16, do: RateLimiter.hit(l, i, 1, now: 0)
      assert {:allow, 0, _} = RateLimiter.hit(l, :new, 1, now: 0)
      assert {:allow, 0, _} = RateLimiter.hit(l, :new, 1, now: 0)
      assert RateLimiter.info(l).keys == 16
    end
  end

  describe "sweeping" do
    test "removes exactly the keys back to their fresh state" do
      for algorithm <- @algorithms do
        l = start!(algorithm: algorithm, limit: 10, period: 1_000)
        for i <- 1..1_000, do: RateLimiter.hit(l, i, 1, now: 0)
        for i <- 1..500, do: RateLimiter.hit(l, i, 9, now: 0)
        assert %{removed: 0, keys: 1_000} = RateLimiter.sweep(l, now: 0)

        fresh_at =
          case algorithm do
            a when a in [:gcra, :token_bucket] -> 1_000
            :fixed_window -> 1_000
            :sliding_window -> 2_000
          end

        # Keys hit once are fresh earlier for GCRA (100 ms); all are fresh at `fresh_at`.
        %{removed: removed} = RateLimiter.sweep(l, now: fresh_at - 1)
        assert RateLimiter.info(l).keys == 1_000 - removed
        assert {:deny, _, _} = RateLimiter.peek(l, 1, 10, now: fresh_at - 1)
        assert %{keys: 0} = RateLimiter.sweep(l, now: fresh_at)
      end
    end

    test "the owner sweeps periodically, on its own timer" do
      l = start!(limit: 10, period: 1, sweep_every: 5)
      for i <- 1..100, do: RateLimiter.hit(l, i, 1, now: 0)
      owner = Process.whereis(l)
      :erlang.trace(owner, true, [:receive])

      # Nothing but the owner's timer sends :sweep. The keys expire 1 ms after the limiter's
      # epoch: every pass that starts from now on finds them expired, and a pass ends before
      # the timer is armed for the next, so the second :sweep means one whole pass ran.
      assert_receive {:trace, ^owner, :receive, :sweep}, 5_000
      assert_receive {:trace, ^owner, :receive, :sweep}, 5_000
      :erlang.trace(owner, false, [:receive])
      assert RateLimiter.info(l).keys == 0
    end

    test "a large table is swept in chunks while other processes keep hitting it" do
      l = start!(algorithm: :fixed_window, limit: 1, period: 1_000, max_keys: 200_000)
      for i <- 1..100_000, do: RateLimiter.hit(l, i, 1, now: 0)
      assert RateLimiter.info(l).shards > 16

      hitter =
        Task.async(fn ->
          for i <- 1..20_000, do: RateLimiter.hit(l, {:live, i}, 1, now: 1_500)
        end)

      assert %{removed: 100_000} = RateLimiter.sweep(l, now: 1_500)
      Task.await(hitter)
      assert RateLimiter.info(l).keys == 20_000
    end
  end

  describe "lifecycle" do
    test "counters survive an owner crash under load" do
      name = :"crash_#{System.unique_integer([:positive])}"
      opts = [name: name, limit: 5_000, period: 3_600_000, sweep_every: 1]

      {admitted, owner, sup} =
        OwnerCrash.hit_through_crashes(opts, 3_000, fn ->
          match?({:allow, _, _}, RateLimiter.hit(name, "k"))
        end)

      assert Process.whereis(name) != owner
      assert admitted == 5_000
      assert %{active: 1} = Supervisor.count_children(sup)
    end

    test "a clean stop unregisters the limiter; a restart with other options gets a new table" do
      l = start!(limit: 1, period: 60_000)
      RateLimiter.hit(l, "k", 1, now: 0)
      assert :ok = stop_supervised({RateLimiter, l})
      assert_raise Hotpath.NotRunningError, fn -> RateLimiter.hit(l, "k") end

      start_supervised!({RateLimiter, name: l, limit: 1, period: 60_000, sweep_every: :infinity})
      assert {:allow, 0, _} = RateLimiter.hit(l, "k", 1, now: 0)
    end

    test "a restart with the same options keeps the table, with other options replaces it" do
      name = :"restart_#{System.unique_integer([:positive])}"

      {:ok, pid} =
        GenServer.start(
          Hotpath.RateLimiter.Owner,
          Hotpath.RateLimiter.Options.validate!(name: name, limit: 1, period: 60_000)
        )

      RateLimiter.hit(name, "k", 1, now: 0)
      Process.exit(pid, :kill)

      {:ok, pid} =
        GenServer.start(
          Hotpath.RateLimiter.Owner,
          Hotpath.RateLimiter.Options.validate!(name: name, limit: 1, period: 60_000)
        )

      assert {:deny, _, _} = RateLimiter.hit(name, "k", 1, now: 0)
      Process.exit(pid, :kill)

      {:ok, pid} =
        GenServer.start(
          Hotpath.RateLimiter.Owner,
          Hotpath.RateLimiter.Options.validate!(name: name, limit: 2, period: 60_000)
        )

      assert {:allow, 1, _} = RateLimiter.hit(name, "k", 1, now: 0)
      # The hot path (found by name in native code) sees the new table too.
      assert {:allow, 0, _} = RateLimiter.hit(name, "k")
      GenServer.stop(pid)
      assert RateLimiter.published_entry(name) == nil
    end

    test "several limiters are independent" do
      a = start!(limit: 1, period: 60_000)
      b = start!(limit: 1, period: 60_000)
      assert {:allow, _, _} = RateLimiter.hit(a, "k", 1, now: 0)
      assert {:allow, _, _} = RateLimiter.hit(b, "k", 1, now: 0)
    end

    test "child_spec ids by name so limiters share a supervisor" do
      spec = RateLimiter.child_spec(name: :x, limit: 1, period: 1)
      assert spec.id == {RateLimiter, :x}
    end
  end

  describe "telemetry" do
    test "event contents" do
      assert {[:hotpath, :rate_limiter, :sweep],
              %{removed: 3, keys: 7, duration: 10, full_events: 0},
              %{limiter: :l}} = Hotpath.RateLimiter.Owner.sweep_event(:l, 3, 7, 10, 0)

      assert {[:hotpath, :rate_limiter, :deny], %{cost: 2},
              %{limiter: :l, key: "k", retry_after: 5, reset_after: 9}} =
               Hotpath.RateLimiter.Owner.deny_event(:l, "k", 2, 5, 9)
    end

    test "deny events are harmless without :telemetry" do
      l = start!(limit: 1, period: 60_000, telemetry_denies: true)
      assert {:allow, _, _} = RateLimiter.hit(l, "k")
      assert {:deny, _, _} = RateLimiter.hit(l, "k")
      assert {:deny, _, _} = RateLimiter.hit(l, "k", 1, now: 5)
    end
  end

  describe "bad inputs" do
    test "start_link validates every option with a clear message" do
      base = [name: :bad, limit: 1, period: 1_000]

      cases = [
        {[limit: 1, period: 1], ~r/missing required option :name/},
        {[name: :bad, period: 1], ~r/missing required option :limit/},
        {[name: :bad, limit: 1], ~r/missing required option :period/},
        {Keyword.put(base, :name, "str"), ~r/:name must be/},
        {Keyword.put(base, :algorithm, :leaky),
         ~r/:algorithm must be one of :gcra.*, got: :leaky/},
        {Keyword.put(base, :limit, 0), ~r/:limit must be a positive integer, got: 0/},
        {Keyword.put(base, :limit, 1.5), ~r/:limit must be/},
        {Keyword.put(base, :limit, 2 ** 32), ~r/limit must be an integer in 1..4294967295/},
        {Keyword.put(base, :period, -1), ~r/:period must be/},
        {Keyword.put(base, :period, 101 * 86_400_000), ~r/period must be/},
        {Keyword.put(base, :burst, 0), ~r/:burst must be/},
        {base ++ [algorithm: :fixed_window, burst: 2],
         ~r/burst applies only to :gcra and :token_bucket/},
        {Keyword.put(base, :max_keys, 0), ~r/:max_keys must be/},
        {Keyword.put(base, :on_full, :maybe), ~r/:on_full must be/},
        {Keyword.put(base, :sweep_every, 0), ~r/:sweep_every must be/},
        {Keyword.put(base, :telemetry_denies, :yes), ~r/:telemetry_denies must be/},
        {Keyword.put(base, :colour, :red), ~r/unknown options \[:colour\], valid options are/},
        {:not_a_list, ~r/must be a keyword list/},
        {[:name], ~r/must be a keyword list/}
      ]

      for {opts, message} <- cases do
        assert_raise ArgumentError, message, fn -> RateLimiter.start_link(opts) end
      end
    end

    test "calls on an unknown limiter raise ArgumentError" do
      for fun <- [
            fn -> RateLimiter.hit(:nope, "k") end,
            fn -> RateLimiter.hit(:nope, "k", 1, now: 0) end,
            fn -> RateLimiter.peek(:nope, "k") end,
            fn -> RateLimiter.reset(:nope, "k") end,
            fn -> RateLimiter.reset_all(:nope) end,
            fn -> RateLimiter.info(:nope) end,
            fn -> RateLimiter.now(:nope) end
          ] do
        assert_raise Hotpath.NotRunningError,
                     ~r/no Hotpath.RateLimiter named :nope is running/,
                     fun
      end
    end

    test "bad costs, keys and call options raise ArgumentError" do
      l = start!([])

      for cost <- [0, -1, 1.5, "1", nil, :one, 2 ** 64] do
        assert_raise ArgumentError, ~r/cost must be a positive integer/, fn ->
          RateLimiter.hit(l, "k", cost)
        end

        assert_raise ArgumentError, ~r/cost must be a positive integer/, fn ->
          RateLimiter.peek(l, "k", cost)
        end
      end

      huge = String.duplicate("x", 5_000)
      assert_raise ArgumentError, ~r/at most 4096 bytes/, fn -> RateLimiter.hit(l, huge) end

      assert_raise ArgumentError, ~r/at most 4096 bytes/, fn ->
        RateLimiter.hit(l, {:big, huge})
      end

      assert_raise ArgumentError, ~r/at most 4096 bytes/, fn -> RateLimiter.reset(l, huge) end

      # Huge terms are refused before they are encoded, whatever their shape.
      big_list = Enum.to_list(1..1_000_000)
      deep = Enum.reduce(1..100_000, :leaf, fn _, acc -> {acc} end)

      for key <- [
            big_list,
            List.to_tuple(big_list),
            Map.new(1..100_000, &{&1, &1}),
            deep,
            [1, 2 | huge],
            %{key: [huge]}
          ] do
        assert_raise ArgumentError, ~r/at most 4096 bytes/, fn -> RateLimiter.hit(l, key) end
        assert_raise ArgumentError, ~r/at most 4096 bytes/, fn -> RateLimiter.peek(l, key) end
      end

      assert_raise ArgumentError, ~r/a function cannot be a rate limiter key/, fn ->
        RateLimiter.hit(l, fn -> :ok end)
      end

      # Terms just under the limit are still keys.
      assert {:allow, _, _} = RateLimiter.hit(l, {:ok, String.duplicate("y", 4000)})
      assert {:allow, _, _} = RateLimiter.hit(l, Enum.to_list(1..500))
      assert {:allow, _, _} = RateLimiter.hit(l, [1, 2 | :improper])
      # 3000 elements of one byte each encode in about 3 KB.
      assert {:allow, _, _} = RateLimiter.hit(l, List.duplicate([], 3000))
      assert {:allow, _, _} = RateLimiter.hit(l, List.to_tuple(List.duplicate([], 3000)))

      for opts <- [
            [now: -1],
            [now: 1.0],
            [limit: 0],
            [period: :x],
            [burst: -2],
            [color: 1],
            [:now],
            %{now: 1}
          ] do
        assert_raise ArgumentError, fn -> RateLimiter.hit(l, "k", 1, opts) end
      end

      assert_raise ArgumentError, ~r/now must be/, fn ->
        RateLimiter.hit(l, "k", 1, now: 2 ** 50)
      end

      assert_raise ArgumentError, ~r/now must be/, fn -> RateLimiter.sweep(l, now: -5) end

      w = start!(algorithm: :fixed_window)

      assert_raise ArgumentError, ~r/burst applies only/, fn ->
        RateLimiter.hit(w, "k", 1, burst: 3)
      end

      # The limiter is unharmed.
      assert {:allow, _, _} = RateLimiter.hit(l, "k")
    end

    test "the NIFs reject wrong resources and garbage without crashing" do
      for bad <- [nil, make_ref(), "ref", {:ok, 1}] do
        # Nothing is published under it: the hot path answers so, and hit/2 raises.
        assert Hotpath.Native.limiter_hit(bad, "k", 1) == :unpublished
        error = if is_atom(bad), do: Hotpath.NotRunningError, else: ArgumentError
        assert_raise error, fn -> RateLimiter.hit(bad, "k") end
        assert_raise ArgumentError, fn -> Hotpath.Native.limiter_stats(bad) end
        assert_raise ArgumentError, fn -> Hotpath.Native.limiter_sweep(bad, 0, nil, 100) end
      end

      assert_raise ArgumentError, ~r/algorithm must be/, fn ->
        Hotpath.Native.limiter_new(:nope, 1, 1, nil, 1, nil, false)
      end

      assert_raise ArgumentError, ~r/max_keys/, fn ->
        Hotpath.Native.limiter_new(:gcra, 1, 1, nil, 2 ** 40, nil, false)
      end

      assert_raise ArgumentError, ~r/max_bytes/, fn ->
        Hotpath.Native.limiter_new(:gcra, 1, 1, nil, 1, -1, false)
      end
    end
  end
end
