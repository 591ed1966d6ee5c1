defmodule Hotpath.RateLimiter.BanTest do
  # Escalating bans (the :ban option, ban/3, unban/2, banned?/2), driven by `now:`.
  use ExUnit.Case, async: false

  import Hotpath.Test.Eventually
  alias Hotpath.RateLimiter

  defp start!(opts) do
    name = :"ban_#{System.unique_integer([:positive])}"

    start_supervised!(
      {RateLimiter, Keyword.merge([name: name, sweep_every: :infinity], opts)},
      id: name
    )

    name
  end

  setup do
    Hotpath.Telemetry.put_module(Hotpath.FakeTelemetry)
    Hotpath.FakeTelemetry.forward([:hotpath, :rate_limiter, :ban], :ban)
  end

  describe "automatic bans" do
    test "a key denied `after` times within `within` is refused for `for`, then let back" do
      l =
        start!(
          algorithm: :fixed_window,
          limit: 2,
          period: 1_000,
          ban: [after: 3, within: 60_000, for: 10_000]
        )

      assert {:allow, 1, _} = RateLimiter.hit(l, "k", 1, now: 0)
      assert {:allow, 0, _} = RateLimiter.hit(l, "k", 1, now: 0)
      assert {:deny, 1000, 1000} = RateLimiter.hit(l, "k", 1, now: 0)
      assert {:deny, 900, 900} = RateLimiter.hit(l, "k", 1, now: 100)
      refute RateLimiter.banned?(l, "k", now: 100)
      refute_received {:ban, _, %{limiter: ^l}}
      # The third denial starts the ban: its answer is the ban's length.
      assert {:deny, 10_000, 10_000} = RateLimiter.hit(l, "k", 1, now: 200)

      assert_received {:ban, %{duration: 10_000, offences: 1},
                       %{limiter: ^l, key: "k", reason: :denials}}

      assert RateLimiter.banned?(l, "k", now: 200)
      # Refused whatever the quota (the window reopened at 1000 ms), charged nothing.
      assert {:deny, 5_000, 5_000} = RateLimiter.hit(l, "k", 1, now: 5_200)
      assert {:deny, 5_000, 5_000} = RateLimiter.peek(l, "k", 1, now: 5_200)
      # Other keys are unaffected.
      assert {:allow, _, _} = RateLimiter.hit(l, "other", 1, now: 5_200)
      # On time, exactly.
      assert {:deny, 1, 1} = RateLimiter.hit(l, "k", 1, now: 10_199)
      refute RateLimiter.banned?(l, "k", now: 10_200)
      assert {:allow, 1, _} = RateLimiter.hit(l, "k", 1, now: 10_200)
    end

    test "denials older than `within` do not count" do
      l =
        start!(
          algorithm: :gcra,
          limit: 1,
          period: 1_000,
          ban: [after: 3, within: 1_000, for: 5_000]
        )

      assert {:allow, _, _} = RateLimiter.hit(l, "k", 1, now: 0)
      assert {:deny, _, _} = RateLimiter.hit(l, "k", 1, now: 1)
      assert {:deny, _, _} = RateLimiter.hit(l, "k", 1, now: 2)
      # The window of denials opened at 1 ms is over: this is the first of a new one.
      assert {:allow, _, _} = RateLimiter.hit(l, "k", 1, now: 1_001)
      assert {:deny, _, _} = RateLimiter.hit(l, "k", 1, now: 1_002)
      assert {:deny, _, _} = RateLimiter.hit(l, "k", 1, now: 1_003)
      refute RateLimiter.banned?(l, "k", now: 1_003)
      assert {:deny, 5_000, 5_000} = RateLimiter.hit(l, "k", 1, now: 1_004)
    end

    test "repeat offences lengthen the ban by `backoff`, capped at `max`" do
      l =
        start!(
          algorithm: :gcra,
          limit: 1,
          period: 100_000,
          ban: [after: 1, within: 1_000, for: 1_000, backoff: 3, max: 5_000]
        )

      assert {:allow, _, _} = RateLimiter.hit(l, "k", 1, now: 0)
      assert {:deny, 1_000, 1_000} = RateLimiter.hit(l, "k", 1, now: 1)
      assert {:deny, 3_000, 3_000} = RateLimiter.hit(l, "k", 1, now: 1_001)
      assert {:deny, 5_000, 5_000} = RateLimiter.hit(l, "k", 1, now: 4_001)
      assert {:deny, 5_000, 5_000} = RateLimiter.hit(l, "k", 1, now: 9_001)
      assert_received {:ban, %{duration: 1_000, offences: 1}, %{limiter: ^l}}
      assert_received {:ban, %{duration: 3_000, offences: 2}, %{limiter: ^l}}
      assert_received {:ban, %{duration: 5_000, offences: 3}, %{limiter: ^l}}
      assert_received {:ban, %{duration: 5_000, offences: 4}, %{limiter: ^l}}
      # Offences are forgotten `max` after the last ban ended: a first ban again.
      assert {:deny, 1_000, 1_000} = RateLimiter.hit(l, "k", 1, now: 14_001 + 5_000)
    end

    test "a limiter of several policies: bans whatever the policies, answers :banned" do
      l =
        start!(
          policies: [
            burst: [algorithm: :fixed_window, limit: 1, period: 1_000],
            daily: [algorithm: :fixed_window, limit: 100, period: 86_400_000]
          ],
          ban: [after: 2, within: 10_000, for: 30_000]
        )

      assert {:allow, 0, _, :burst} = RateLimiter.hit(l, "k", 1, now: 0)
      assert {:deny, _, _, [:burst]} = RateLimiter.hit(l, "k", 1, now: 1)
      assert {:deny, 30_000, 30_000, :banned} = RateLimiter.hit(l, "k", 1, now: 2)
      assert {:deny, 10_000, 10_000, :banned} = RateLimiter.hit(l, "k", 1, now: 20_002)
      assert {:deny, 10_000, 10_000} = RateLimiter.peek(l, "k", 1, policy: :daily, now: 20_002)
      assert RateLimiter.banned?(l, "k", now: 30_001)
      assert {:allow, 0, _, :burst} = RateLimiter.hit(l, "k", 1, now: 30_002)
      # The day was charged only for what was admitted.
      assert {:allow, 97, _} = RateLimiter.peek(l, "k", 1, policy: :daily, now: 30_002)
    end
  end

  describe "ban/3, unban/2, banned?/2" do
    test "an operator bans, a ban ends on time or when lifted" do
      l = start!(limit: 5, period: 1_000, ban: [for: 60_000])
      assert :ok = RateLimiter.ban(l, "k", now: 0)

      assert_received {:ban, %{duration: 60_000, offences: 0},
                       %{limiter: ^l, key: "k", reason: :manual}}

      assert RateLimiter.banned?(l, "k", now: 59_999)
      assert {:deny, 1, 1} = RateLimiter.hit(l, "k", 1, now: 59_999)
      refute RateLimiter.banned?(l, "k", now: 60_000)
      assert :ok = RateLimiter.ban(l, "k", for: 1_000, now: 60_000)
      assert {:deny, 1_000, 1_000} = RateLimiter.hit(l, "k", 1, now: 60_000)
      assert :ok = RateLimiter.unban(l, "k", now: 60_001)
      refute RateLimiter.banned?(l, "k", now: 60_001)
      assert {:allow, 4, _} = RateLimiter.hit(l, "k", 1, now: 60_001)
      assert :ok = RateLimiter.unban(l, "never seen")
      refute RateLimiter.banned?(l, "never seen")
      # Without a trigger, denials never ban.
      for _ <- 1..20, do: RateLimiter.hit(l, "k", 1, now: 60_002)
      refute RateLimiter.banned?(l, "k", now: 60_002)
    end

    test "a ban uses the real clock without now:" do
      l = start!(limit: 5, period: 1_000, ban: [for: 60_000])
      assert :ok = RateLimiter.ban(l, {:user, 7})
      assert RateLimiter.banned?(l, {:user, 7})
      assert {:deny, ms, ms} = RateLimiter.hit(l, {:user, 7})
      assert ms in 59_000..60_000
    end

    test "bans are bounded by max_keys and swept when they end" do
      l = start!(limit: 5, period: 1_000, max_keys: 16, ban: [for: 1_000])
      for i <- 1..16, do: assert(:ok = RateLimiter.ban(l, i, now: 0))
      assert {:error, :full} = RateLimiter.ban(l, 17, now: 0)
      assert RateLimiter.info(l).keys == 16
      assert %{removed: 0} = RateLimiter.sweep(l, now: 999)
      assert %{removed: 16, keys: 0} = RateLimiter.sweep(l, now: 1_000)
      assert :ok = RateLimiter.ban(l, 17, now: 1_000)
    end

    test "bans survive an owner crash" do
      name = :"ban_crash_#{System.unique_integer([:positive])}"
      opts = [name: name, limit: 5, period: 1_000, ban: [for: 60_000], sweep_every: 1]

      start_supervised!(%{
        id: :ban_sup,
        type: :supervisor,
        start:
          {Supervisor, :start_link,
           [[{RateLimiter, opts}], [strategy: :one_for_one, max_restarts: 10]]}
      })

      assert :ok = RateLimiter.ban(name, "k")
      killed = Process.whereis(name)
      Process.exit(killed, :kill)
      eventually(fn -> (pid = Process.whereis(name)) && pid != killed end)
      assert RateLimiter.banned?(name, "k")
    end

    test "reset/2 forgets the ban too" do
      l = start!(limit: 5, period: 1_000, ban: [for: 60_000])
      :ok = RateLimiter.ban(l, "k", now: 0)
      :ok = RateLimiter.reset(l, "k")
      refute RateLimiter.banned?(l, "k", now: 0)
    end
  end

  describe "bad inputs" do
    test ":ban is validated with clear messages" do
      base = [name: :bad, limit: 1, period: 1_000]

      for {ban, message} <- [
            {:x, ~r/:ban must be a keyword list of :after, :within, :for \(required\)/},
            {[], ~r/missing required option :for \(Hotpath.RateLimiter :ban\)/},
            {[for: 0], ~r/:for must be an integer in 1..8640000000, got: 0/},
            {[for: 10, after: 3], ~r/:after and :within go together/},
            {[for: 10, within: 3], ~r/:after and :within go together/},
            {[for: 10, after: 0, within: 1], ~r/:after must be an integer in 1..4294967295/},
            {[for: 10, backoff: 0.5], ~r/:backoff must be a number in 1..1000, got: 0.5/},
            {[for: 10, backoff: :x], ~r/:backoff must be a number/},
            {[for: 10, max: 5], ~r/:max must be at least :for \(10\), got: 5/},
            {[for: 10, color: 1], ~r/unknown options \[:color\]/}
          ] do
        assert_raise ArgumentError, message, fn -> RateLimiter.start_link(base ++ [ban: ban]) end
      end
    end

    test "ban operations check their arguments" do
      l = start!(limit: 5, period: 1_000, ban: [for: 1_000])
      plain = start!(limit: 5, period: 1_000)

      assert_raise ArgumentError, ~r/:ban needs a limiter started with the :ban option/, fn ->
        RateLimiter.ban(plain, "k")
      end

      assert_raise ArgumentError,
                   ~r/:banned\? needs a limiter started with the :ban option/,
                   fn ->
                     RateLimiter.banned?(plain, "k")
                   end

      assert_raise ArgumentError, ~r/:unban needs/, fn -> RateLimiter.unban(plain, "k") end
      assert_raise ArgumentError, ~r/:for must be/, fn -> RateLimiter.ban(l, "k", for: 0) end

      assert_raise ArgumentError, ~r/:for must be/, fn ->
        RateLimiter.ban(l, "k", for: 2 ** 40)
      end

      assert_raise ArgumentError, ~r/unknown options/, fn -> RateLimiter.ban(l, "k", until: 1) end
      assert_raise ArgumentError, ~r/:now must be/, fn -> RateLimiter.banned?(l, "k", now: -1) end
      assert_raise ArgumentError, ~r/:now must be/, fn -> RateLimiter.unban(l, "k", now: :x) end

      assert_raise ArgumentError, ~r/options must be a keyword list/, fn ->
        RateLimiter.ban(l, "k", 5)
      end

      assert_raise ArgumentError, ~r/keys are at most 4096 bytes/, fn ->
        RateLimiter.ban(l, :binary.copy("x", 5000))
      end

      assert_raise ArgumentError, ~r/a function cannot be a rate limiter key/, fn ->
        RateLimiter.banned?(l, fn -> 1 end)
      end

      assert_raise Hotpath.NotRunningError, fn -> RateLimiter.ban(:no_such_limiter, "k") end
      assert_raise ArgumentError, fn -> RateLimiter.unban("not an atom", "k") end
    end

    test "the ban NIF refuses garbage without crashing" do
      l = start!(limit: 5, period: 1_000, ban: [for: 1_000])
      {ref, _, _} = RateLimiter.published_entry(l)

      for op <- [:nope, {:ban, 0}, {:ban, -1}, {:ban, 2 ** 64}, {:reset, 1}, {:reset, -1}, "x"] do
        assert_raise ArgumentError, fn -> Hotpath.Native.limiter_ban(ref, op, "k", nil) end
      end

      assert_raise ArgumentError, fn -> Hotpath.Native.limiter_ban(ref, :unban, "k", -5) end

      assert_raise ArgumentError, fn ->
        Hotpath.Native.limiter_ban(:not_a_ref, :unban, "k", nil)
      end
    end
  end
end
