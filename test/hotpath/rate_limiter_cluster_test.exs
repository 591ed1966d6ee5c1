defmodule Hotpath.RateLimiterClusterTest do
  # Cluster mode on one node (no peers): ownership by rendezvous hashing, option checks, the
  # limiter's processes, and the hot path staying a single NIF for everyone else. The
  # multi-node behaviour is in test/hotpath/cluster/.
  use ExUnit.Case, async: true

  import Hotpath.Test.Eventually
  alias Hotpath.{Native, RateLimiter}
  alias Hotpath.RateLimiter.Cluster

  defp start!(opts) do
    name = :"cluster_limiter_#{System.unique_integer([:positive])}"

    opts = Keyword.merge([name: name, limit: 5, period: 60_000, sweep_every: :infinity], opts)

    start_supervised!({RateLimiter, opts})
    name
  end

  defp keys, do: Enum.map(1..30_000, &"user:#{&1}")

  defp members(nodes), do: Cluster.with_members(view(), nodes).members

  defp view do
    %Cluster{
      name: :v,
      local: :v_local,
      scope: :v_scope,
      mode: :owner,
      timeout: 100,
      fallback: :deny,
      config: [limit: 10, period: 1_000, burst: nil]
    }
  end

  describe "rendezvous ownership" do
    @nodes [:a@h, :b@h, :c@h]

    test "spreads keys evenly and is the same whatever the order of the members" do
      keys = keys()
      owners = Enum.map(keys, &Cluster.owner(members(@nodes), &1))
      assert owners == Enum.map(keys, &Cluster.owner(members(Enum.reverse(@nodes)), &1))

      for {_node, count} <- Enum.frequencies(owners) do
        assert count in 9_000..11_000
      end

      assert Cluster.owner([], "k") == nil
    end

    test "a member leaving moves only its own keys, a member joining takes only keys" do
      keys = keys()
      three = Map.new(keys, &{&1, Cluster.owner(members(@nodes), &1)})
      two = Map.new(keys, &{&1, Cluster.owner(members(@nodes -- [:c@h]), &1)})
      four = Map.new(keys, &{&1, Cluster.owner(members([:d@h | @nodes]), &1)})

      for k <- keys do
        if three[k] != :c@h, do: assert(two[k] == three[k])
        if four[k] != :d@h, do: assert(four[k] == three[k])
      end

      moved_in = Enum.count(keys, &(four[&1] == :d@h))
      assert moved_in in 6_500..8_500, "about a quarter of the keys go to the new member"
    end

    test "each node's share of the policy" do
      assert Cluster.with_members(view(), @nodes).share == {3, 1_000, nil}
      assert Cluster.with_members(view(), [:a@h]).share == {10, 1_000, nil}

      burst = %{view() | config: [limit: 2, period: 1_000, burst: 7]}
      assert Cluster.with_members(burst, @nodes).share == {1, 1_000, 2}
      assert Cluster.with_members(view(), []).size == 1
    end
  end

  describe "options" do
    test "cluster options are checked with clear messages" do
      base = [name: :opts_cluster, limit: 1, period: 1_000]

      for {opts, message} <- [
            {[cluster: :everywhere],
             ~r/:cluster must be one of nil, :owner, :local_share, got: :everywhere/},
            {[cluster: :owner, cluster_timeout: 0],
             ~r/:cluster_timeout must be nil or an integer in 1\.\.4294967295, got: 0/},
            {[cluster: :owner, cluster_fallback: :maybe], ~r/:cluster_fallback must be/},
            {[cluster_timeout: 10], ~r/:cluster_timeout only apply with cluster: :owner/},
            {[cluster: :local_share, cluster_fallback: :deny, cluster_timeout: 5],
             ~r/:cluster_timeout and :cluster_fallback only apply with cluster: :owner, got cluster: :local_share/}
          ] do
        assert_raise ArgumentError, message, fn -> RateLimiter.start_link(base ++ opts) end
      end
    end

    test "defaults, and a child spec of a supervisor" do
      spec = RateLimiter.child_spec(name: :spec_cluster, limit: 1, period: 1_000, cluster: :owner)
      assert spec.type == :supervisor
      {RateLimiter, :start_link, [opts]} = spec.start
      assert {opts[:cluster_timeout], opts[:cluster_fallback]} == {100, :local_share}
      # Validating the validated options again changes nothing (child_spec, then start_link).
      assert Hotpath.RateLimiter.Options.validate!(opts) == opts

      assert RateLimiter.child_spec(name: :spec_plain, limit: 1, period: 1_000).type == :worker
    end
  end

  describe "on one node" do
    test "an :owner limiter alone decides every key here, exactly" do
      l = start!(cluster: :owner)
      assert RateLimiter.node_for(l, "k") == node()
      assert %{mode: :owner, members: [n], share: %{limit: 5}} = RateLimiter.info(l).cluster
      assert n == node()

      decisions = for _ <- 1..6, do: RateLimiter.hit(l, "k")
      assert Enum.count(decisions, &match?({:allow, _, _}, &1)) == 5
      assert {:deny, _, _} = RateLimiter.peek(l, "k")
      assert {:allow, 0, _} = RateLimiter.hit(l, "other", 1, limit: 1, now: 0)
      assert RateLimiter.info(l).keys == 2
      assert RateLimiter.now(l) >= 0
      assert %{keys: 2} = RateLimiter.sweep(l)
      assert :ok = RateLimiter.reset(l, "k")
      assert {:allow, 4, _} = RateLimiter.hit(l, "k")
      assert :ok = RateLimiter.reset_all(l)
      assert RateLimiter.info(l).keys == 0
    end

    test ":local_share alone enforces the whole limit" do
      l = start!(cluster: :local_share, limit: 4)
      assert RateLimiter.info(l).cluster.share == %{limit: 4, burst: nil}
      assert Enum.count(1..6, fn _ -> match?({:allow, _, _}, RateLimiter.hit(l, "k")) end) == 4
      assert {:allow, 1, _} = RateLimiter.hit(l, "j", 1, limit: 8, burst: 2)
    end

    test "the hot path of every other limiter is untouched: one NIF call by name" do
      plain = start!([])
      clustered = start!(cluster: :owner)
      # A plain limiter's table is published under its name and answers in the NIF...
      assert {:allow, 4, _} = Native.limiter_hit(plain, "k", 1)
      # ...a cluster limiter has nothing published under its name (its table runs under an
      # internal one), which is how hit/2 knows to take the cluster path.
      assert Native.limiter_hit(clustered, "k", 1) == :unpublished
      assert {:allow, 4, _} = Native.limiter_hit(Cluster.local_name(clustered), "k", 1)
      assert {:allow, 3, _} = RateLimiter.hit(clustered, "k")
    end

    test "bad arguments raise in the caller" do
      l = start!(cluster: :owner)

      for cost <- [0, -1, 1.5, "1"] do
        assert_raise ArgumentError, ~r/cost must be a positive integer/, fn ->
          RateLimiter.hit(l, "k", cost)
        end

        assert_raise ArgumentError, ~r/cost must be a positive integer/, fn ->
          RateLimiter.hit(l, "k", cost, now: 0)
        end
      end

      assert_raise ArgumentError, ~r/invalid call option/, fn ->
        RateLimiter.hit(l, "k", 1, colour: :red)
      end

      assert_raise ArgumentError, ~r/at most 4096 bytes/, fn ->
        RateLimiter.hit(l, String.duplicate("k", 5_000))
      end
    end

    test "two cluster limiters on a node have their own scopes; names are unique" do
      a = start!(cluster: :owner)
      b = start!(cluster: :owner, limit: 1)
      assert Process.whereis(Cluster.scope_name(a)) != Process.whereis(Cluster.scope_name(b))
      assert {:allow, 4, _} = RateLimiter.hit(a, "k")
      assert {:allow, 0, _} = RateLimiter.hit(b, "k")

      assert {:error, {:already_started, _}} =
               RateLimiter.start_link(name: a, limit: 1, period: 1_000, cluster: :owner)
    end

    test "a crashed member is restarted and hits go on; a clean stop removes everything" do
      l = start!(cluster: :owner)
      assert {:allow, 4, _} = RateLimiter.hit(l, "k")
      member = Process.whereis(l)
      Process.exit(member, :kill)
      assert {:allow, 3, _} = RateLimiter.hit(l, "k")
      eventually(fn -> (pid = Process.whereis(l)) && pid != member end)
      assert {:allow, 2, _} = RateLimiter.hit(l, "k")

      :ok = stop_supervised({RateLimiter, l})
      assert_raise Hotpath.NotRunningError, fn -> RateLimiter.hit(l, "k") end
      assert Process.whereis(Cluster.scope_name(l)) == nil
      assert RateLimiter.published_entry(Cluster.local_name(l)) == nil
      assert Native.limiter_hit(Cluster.local_name(l), "k", 1) == :unpublished
    end

    test "fallback event contents" do
      assert Cluster.fallback_event(:l, "k", :a@h, :timeout, :deny) ==
               {[:hotpath, :rate_limiter, :cluster_fallback], %{count: 1},
                %{limiter: :l, key: "k", owner: :a@h, reason: :timeout, fallback: :deny}}
    end
  end
end
