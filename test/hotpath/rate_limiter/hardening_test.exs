defmodule Hotpath.RateLimiter.HardeningTest do
  # Issue 14: bad input is refused in the caller, never handed to the owner; options that
  # would kill a process later are refused before any starts; memory is bounded in bytes.
  use ExUnit.Case, async: true

  alias Hotpath.Opaque
  alias Hotpath.RateLimiter

  defp start!(opts \\ []) do
    name = :"hardening_#{System.unique_integer([:positive])}"
    opts = Keyword.merge([name: name, limit: 5, period: 1_000, sweep_every: :infinity], opts)
    pid = start_supervised!({RateLimiter, opts})
    {name, pid}
  end

  describe "sweep/2 (item 4)" do
    test "a now: out of range raises in the caller; the owner lives on" do
      {l, pid} = start!()
      Process.flag(:trap_exit, true)

      for now <- [1_099_511_627_777, Bitwise.bsl(1, 64), -1, 1.5, :soon] do
        assert_raise ArgumentError, ~r/now must be a non-negative integer .* up to 2\^40/, fn ->
          RateLimiter.sweep(l, now: Opaque.value(now))
        end
      end

      assert Process.whereis(l) == pid
      assert Process.alive?(pid)
      refute_received {:EXIT, _, _}
      assert %{removed: 0} = RateLimiter.sweep(l, now: Bitwise.bsl(1, 40))
    end

    test "options that are not a keyword list, or unknown ones, raise ArgumentError" do
      {l, pid} = start!()

      for opts <- [:now, %{now: 1}, [1], [{:now, 1} | :tail], "now", [later: 1]] do
        assert_raise ArgumentError, fn -> RateLimiter.sweep(l, Opaque.value(opts)) end
      end

      assert Process.whereis(l) == pid
    end

    test "works while the owner is down (it never involves the owner)" do
      {l, pid} = start!(limit: 1)
      RateLimiter.hit(l, "k", 1, now: 0)
      :sys.suspend(pid)
      assert %{removed: 1, keys: 0} = RateLimiter.sweep(l, now: 5_000)
      :sys.resume(pid)
    end

    test "unknown limiters raise NotRunningError, what is no name ArgumentError" do
      assert_raise Hotpath.NotRunningError, fn -> RateLimiter.sweep(:no_such_limiter) end

      for name <- [1, "x", {:a}, self()] do
        assert_raise ArgumentError, fn -> RateLimiter.sweep(Opaque.value(name)) end
      end
    end
  end

  describe "call options (hit/4, peek/4)" do
    test "now: beyond 2^40, improper lists and bad values raise ArgumentError" do
      {l, _pid} = start!()

      for opts <- [
            [now: 1_099_511_627_777],
            [{:now, 1} | :tail],
            [limit: 0],
            [period: 2.0],
            [burst: :big],
            [now: 0, other: 1]
          ] do
        assert_raise ArgumentError, fn -> RateLimiter.hit(l, "k", 1, Opaque.value(opts)) end
        assert_raise ArgumentError, fn -> RateLimiter.peek(l, "k", 1, Opaque.value(opts)) end
      end
    end
  end

  describe "start_link/1 and child_spec/1 (item 5)" do
    test "max_keys above 2^32 raises in the caller, before any process starts" do
      name = :hardening_max_keys
      opts = [name: name, limit: 1, period: 1_000, max_keys: 4_294_967_297]

      assert_raise ArgumentError, ~r/max_keys must be an integer in 1\.\.4294967296/, fn ->
        RateLimiter.start_link(opts)
      end

      assert_raise ArgumentError, ~r/max_keys must be an integer in 1\.\.4294967296/, fn ->
        RateLimiter.child_spec(opts)
      end

      assert Process.whereis(name) == nil
    end

    test "sweep_every and cluster_timeout beyond a timer's range raise in the caller" do
      base = [name: :hardening_timer, limit: 1, period: 1_000]

      for bad <- [
            [sweep_every: Bitwise.bsl(1, 64)],
            [sweep_every: 4_294_967_296],
            [cluster: :owner, cluster_timeout: Bitwise.bsl(1, 32)],
            [max_bytes: -1],
            [max_bytes: Bitwise.bsl(1, 49)],
            [max_bytes: 1.0]
          ] do
        assert_raise ArgumentError, ~r/must be/, fn -> RateLimiter.start_link(base ++ bad) end
        assert_raise ArgumentError, ~r/must be/, fn -> RateLimiter.child_spec(base ++ bad) end
      end

      assert Process.whereis(:hardening_timer) == nil
    end

    test "a cluster limiter's name must leave room for its internal names" do
      name = String.to_atom(String.duplicate("n", 250))

      assert_raise ArgumentError, ~r/at most 239 characters/, fn ->
        RateLimiter.start_link(name: name, limit: 1, period: 1_000, cluster: :local_share)
      end
    end

    test "the largest accepted timer values start" do
      {l, _} = start!(sweep_every: 4_294_967_295, max_keys: 16)
      assert RateLimiter.info(l).config[:sweep_every] == 4_294_967_295
    end
  end

  describe "memory bounded in bytes" do
    test "a flood of maximum-size unique keys stays within the documented bound" do
      max_keys = 2_000
      {l, _} = start!(limit: 1, period: 60_000, max_keys: max_keys)
      %{config: config} = RateLimiter.info(l)
      max_bytes = config[:max_bytes]
      assert max_bytes == max_keys * 256

      prefix = :binary.copy("k", 4_096 - 8)

      decisions =
        for i <- 1..(2 * max_keys) do
          RateLimiter.hit(l, prefix <> <<i::64>>, 1, now: 0)
        end

      admitted = Enum.count(decisions, &match?({:allow, _, _}, &1))
      # Only max_bytes / 4096 such keys fit; every other one is refused as by a full table.
      assert admitted == div(max_bytes, 4_096)

      %{keys: keys, key_bytes: key_bytes, memory_bytes: memory, shards: shards} =
        info = RateLimiter.info(l)

      assert keys == admitted
      assert key_bytes == admitted * 4_096
      assert key_bytes <= max_bytes
      assert info.full_events == 2 * max_keys - admitted
      assert memory <= max_keys * 80 + max_bytes + shards * 128 + 1_024

      # Keys over 4096 bytes are refused outright.
      assert_raise ArgumentError, ~r/at most 4096 bytes/, fn ->
        RateLimiter.hit(l, :binary.copy("k", 4_097))
      end

      # Expired keys give their bytes back.
      assert {:allow, _, _} = RateLimiter.hit(l, prefix <> "new", 1, now: 120_000)
      RateLimiter.sweep(l, now: 120_000)
      assert RateLimiter.info(l).key_bytes <= 4_096
    end

    test "max_bytes: 0 still stores small keys; :infinity bounds by max_keys only" do
      {l, _} = start!(limit: 1, period: 60_000, max_keys: 200, max_bytes: 0)

      for i <- 1..100, do: assert({:allow, _, _} = RateLimiter.hit(l, i, 1, now: 0))
      assert %{keys: 100, key_bytes: 0} = RateLimiter.info(l)
      assert {:deny, _, _} = RateLimiter.hit(l, :binary.copy("x", 15), 1, now: 0)

      {l2, _} = start!(limit: 1, period: 60_000, max_keys: 10, max_bytes: :infinity)
      for i <- 1..10, do: RateLimiter.hit(l2, :binary.copy("y", 4_000) <> <<i>>, 1, now: 0)
      assert %{keys: 10, key_bytes: 40_010} = RateLimiter.info(l2)
    end
  end

  describe "cluster limiters" do
    @describetag :cluster
    test "hit/4, peek/4 and sweep/2 validate every option in the caller" do
      for mode <- [:owner, :local_share] do
        {l, pid} = start!(cluster: mode)

        for opts <- [[now: 1_099_511_627_777], [limit: 0], [burst: Bitwise.bsl(1, 64)], [x: 1]] do
          assert_raise ArgumentError, fn -> RateLimiter.hit(l, "k", 1, Opaque.value(opts)) end
          assert_raise ArgumentError, fn -> RateLimiter.peek(l, "k", 1, Opaque.value(opts)) end
        end

        assert_raise ArgumentError, fn -> RateLimiter.sweep(l, now: 1_099_511_627_777) end
        assert_raise ArgumentError, fn -> RateLimiter.sweep(l, Opaque.value(:now)) end
        assert %{removed: _, keys: _} = RateLimiter.sweep(l, now: 0)
        assert {:allow, _, _} = RateLimiter.hit(l, "k", 1, now: 0)
        assert Process.alive?(pid)
        stop_supervised!({RateLimiter, l})
      end
    end
  end
end
