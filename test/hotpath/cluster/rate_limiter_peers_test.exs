defmodule Hotpath.Cluster.RateLimiterPeersTest do
  # Cluster mode of Hotpath.RateLimiter on real nodes: this node and two peers started with
  # :peer for the whole module; tests that kill or cut off a node start their own extra peer.
  use ExUnit.Case, async: false

  import Hotpath.ClusterCase
  alias Hotpath.RateLimiter
  alias Hotpath.RateLimiter.Cluster

  @moduletag :cluster
  # A period no test outlives by much: nothing refills while a test runs (100 days).
  @long 8_640_000_000

  setup_all do
    peers = start_peers(2)
    %{peers: peers, nodes: [node() | Enum.map(peers, & &1.node)]}
  end

  # Starts a cluster limiter of a fresh name on each of `nodes` and waits until every one of
  # them sees all of them as members. Returns the name.
  defp start_limiter!(nodes, opts) do
    {name, spec} = limiter(opts)
    Enum.each(nodes, &start_on(&1, spec))
    await_members(name, nodes, nodes)
    name
  end

  defp limiter(opts) do
    name = :"cluster_limiter_#{System.unique_integer([:positive])}"
    {name, {RateLimiter, [name: name, period: @long, sweep_every: :infinity] ++ opts}}
  end

  defp hit_on(node, limiter, key, cost \\ 1, opts \\ []),
    do: :erpc.call(node, RateLimiter, :hit, [limiter, key, cost, opts])

  # Keys whose owner, among `nodes`, is `owner`.
  defp keys_owned_by(limiter, owner, count) do
    Stream.iterate(0, &(&1 + 1))
    |> Stream.map(&"key:#{&1}")
    |> Stream.filter(&(RateLimiter.node_for(limiter, &1) == owner))
    |> Enum.take(count)
  end

  describe "cluster: :owner" do
    test "three nodes hitting one key concurrently get exactly the limit in total", %{
      nodes: nodes
    } do
      l = start_limiter!(nodes, limit: 300, cluster: :owner, cluster_timeout: 10_000)

      # Every node agrees on the owner.
      owners = for n <- nodes, do: :erpc.call(n, RateLimiter, :node_for, [l, "hot"])
      assert [_owner] = Enum.uniq(owners)

      admitted =
        nodes
        |> Enum.map(
          &Task.async(fn ->
            :erpc.call(&1, Hotpath.ClusterCase, :hammer, [l, ["hot"], 4, 150])
          end)
        )
        |> Enum.map(&Task.await(&1, 60_000))

      # 3 nodes x 4 processes x 150 attempts = 1800 for a limit of 300.
      assert total(admitted) == %{"hot" => 300}
    end

    test "many keys owned across the nodes are each counted exactly", %{nodes: nodes} do
      l = start_limiter!(nodes, limit: 10, cluster: :owner, cluster_timeout: 10_000)
      keys = for i <- 1..60, do: "user:#{i}"
      owners = keys |> Enum.map(&RateLimiter.node_for(l, &1)) |> Enum.uniq() |> Enum.sort()
      assert owners == Enum.sort(nodes), "60 keys spread over the 3 nodes"

      admitted =
        nodes
        |> Enum.map(
          &Task.async(fn -> :erpc.call(&1, Hotpath.ClusterCase, :hammer, [l, keys, 2, 8]) end)
        )
        |> Enum.map(&Task.await(&1, 60_000))

      # Each key: 3 nodes x 2 processes x 8 attempts = 48 for a limit of 10.
      assert total(admitted) == Map.new(keys, &{&1, 10})
    end

    test "peek, per-call options, reset and reset_all act on the owner", %{
      nodes: [_, a, b] = nodes
    } do
      l = start_limiter!(nodes, limit: 3, cluster: :owner, cluster_timeout: 10_000)
      [key] = keys_owned_by(l, a, 1)

      assert {:allow, 2, _} = hit_on(b, l, key)
      assert {:allow, 1, _} = RateLimiter.hit(l, key)
      assert {:allow, 0, _} = RateLimiter.peek(l, key)
      assert {:allow, 0, _} = hit_on(a, l, key)
      assert {:deny, _, _} = RateLimiter.peek(l, key)
      # The owner's table holds the key; the others do not.
      assert :erpc.call(a, RateLimiter, :info, [l]).keys == 1
      assert RateLimiter.info(l).keys == 0
      # A per-call policy travels with the call.
      [fresh] = keys_owned_by(l, a, 2) -- [key]
      assert {:allow, 0, _} = RateLimiter.hit(l, fresh, 1, limit: 1)
      assert {:deny, _, _} = hit_on(b, l, fresh, 1, limit: 1)
      # Bad arguments raise in the caller, whoever owns the key.
      assert_raise ArgumentError, ~r/cost must be a positive integer/, fn ->
        RateLimiter.hit(l, key, 0, limit: 2)
      end

      assert_raise ArgumentError, ~r/at most 4096 bytes/, fn ->
        RateLimiter.hit(l, String.duplicate("k", 5_000))
      end

      assert :ok = RateLimiter.reset(l, key)
      assert {:allow, 2, _} = hit_on(b, l, key)
      assert :ok = RateLimiter.reset_all(l)
      assert :erpc.call(a, RateLimiter, :info, [l]).keys == 0
    end

    test "several policies and bans: the whole decision, and every ban, on the key's owner", %{
      nodes: [_, a, b] = nodes
    } do
      name = :"cluster_policies_#{System.unique_integer([:positive])}"

      spec =
        {RateLimiter,
         name: name,
         sweep_every: :infinity,
         cluster: :owner,
         cluster_timeout: 10_000,
         policies: [
           burst: [algorithm: :gcra, limit: 40, period: @long],
           day: [algorithm: :fixed_window, limit: 25, period: @long]
         ],
         ban: [for: 600_000]}

      Enum.each(nodes, &start_on(&1, spec))
      await_members(name, nodes, nodes)
      l = name
      keys = keys_owned_by(l, a, 5)

      admitted =
        nodes
        |> Enum.map(
          &Task.async(fn -> :erpc.call(&1, Hotpath.ClusterCase, :hammer, [l, keys, 3, 6]) end)
        )
        |> Enum.map(&Task.await(&1, 60_000))

      # Each key: 3 nodes x 3 processes x 6 attempts = 54 for the day's 25, the burst's 40.
      assert total(admitted) == Map.new(keys, &{&1, 25})
      [key | _] = keys
      assert {:deny, _, _, [:day]} = hit_on(b, l, key)
      assert {:allow, 14, _} = RateLimiter.peek(l, key, 1, policy: :burst)
      # Only the owner's table holds the keys.
      assert :erpc.call(a, RateLimiter, :info, [l]).keys == 5
      assert :erpc.call(b, RateLimiter, :info, [l]).keys == 0

      # A ban issued on b lives on the owner: every node sees it.
      [fresh] = keys_owned_by(l, a, 6) -- keys
      assert :ok = :erpc.call(b, RateLimiter, :ban, [l, fresh, [for: 60_000]])
      assert :erpc.call(a, RateLimiter, :info, [l]).keys == 6
      assert :erpc.call(b, RateLimiter, :info, [l]).keys == 0
      assert RateLimiter.banned?(l, fresh)
      assert {:deny, _, _, :banned} = hit_on(a, l, fresh)
      assert {:deny, _, _, :banned} = RateLimiter.hit(l, fresh)
      assert :ok = RateLimiter.unban(l, fresh)
      refute :erpc.call(b, RateLimiter, :banned?, [l, fresh])
      assert {:allow, _, _, _} = hit_on(b, l, fresh)
      # A ban left on b's own table (as a ban made while the owner did not answer is): an
      # unban from anywhere lifts it there too.
      banned_on_b? = fn ->
        :erpc.call(b, Cluster, :decide_as_owner, [l, :banned?, fresh, 1, []])
      end

      assert {:ok, :ok} = :erpc.call(b, Cluster, :decide_as_owner, [l, :ban, fresh, 60_000, []])
      assert banned_on_b?.() == {:ok, true}
      refute RateLimiter.banned?(l, fresh)
      assert :ok = RateLimiter.unban(l, fresh)
      assert banned_on_b?.() == {:ok, false}
      # Per-policy resets act on every member, the owner included.
      assert :ok = RateLimiter.reset(l, key, policy: :day)
      assert {:allow, _, _, _} = hit_on(b, l, key)
    end

    test "a crash of a node's table owner moves no key: its membership and counts stay", %{
      nodes: [_, a, _] = nodes
    } do
      l = start_limiter!(nodes, limit: 3, cluster: :owner, cluster_timeout: 10_000)
      [key] = keys_owned_by(l, a, 1)
      assert {:allow, 2, _} = RateLimiter.hit(l, key)

      scope = Cluster.scope_name(l)
      local = Cluster.local_name(l)
      # This node's view of the group: a restarted presence on `a` would leave and join again.
      {monitor, _} = :pg.monitor(scope, l)
      presence = :erpc.call(a, :pg, :get_local_members, [scope, l])
      member = :erpc.call(a, Process, :whereis, [l])
      owner = :erpc.call(a, Process, :whereis, [local])

      :erpc.call(a, Process, :exit, [owner, :kill])

      eventually(fn ->
        new = :erpc.call(a, Process, :whereis, [local])
        is_pid(new) and new != owner
      end)

      # The restarted owner took its table over: nothing was lost, the key is still `a`'s.
      assert {:allow, 1, _} = RateLimiter.hit(l, key)
      assert {:allow, 0, _} = hit_on(a, l, key)
      assert :erpc.call(a, :pg, :get_local_members, [scope, l]) == presence
      assert :erpc.call(a, Process, :whereis, [l]) == member
      refute_receive {^monitor, _change, ^l, _pids}, 200
      :pg.demonitor(scope, monitor)
    end

    test "a slow owner triggers the fallback", %{peers: [slow | _], nodes: nodes} do
      # 200 ms: far above a loaded loopback round trip, so only the stopped owner times out.
      opts = [limit: 9, cluster: :owner, cluster_timeout: 200]
      deny = start_limiter!(nodes, opts ++ [cluster_fallback: :deny])
      allow = start_limiter!(nodes, opts ++ [cluster_fallback: :allow])
      share = start_limiter!(nodes, opts)
      [key] = keys_owned_by(share, slow.node, 1)
      assert RateLimiter.node_for(deny, key) == slow.node
      assert RateLimiter.node_for(allow, key) == slow.node

      # The owner answers before it is stopped.
      assert {:allow, 8, _} = RateLimiter.hit(share, key)

      # SIGSTOP: the owner's VM stays connected but answers nothing, like a VM stuck in a
      # long pause. Every call waits the timeout, then falls back.
      pid = pause(slow)

      try do
        assert RateLimiter.hit(deny, key) == {:deny, 200, 0}
        assert RateLimiter.hit(allow, key) == {:allow, 0, 0}
        # :local_share decides here with this node's share: 9 / 3 nodes = 3.
        decisions = for _ <- 1..4, do: RateLimiter.hit(share, key)
        assert [{:allow, 2, _}, {:allow, 1, _}, {:allow, 0, _}, {:deny, _, _}] = decisions

        # Bad arguments for a key the stopped node owns raise here at once, on every path:
        # never sent to the owner, never answered by the fallback.
        [large] =
          1..1_000
          |> Stream.map(&{&1, :binary.copy("k", 5_000)})
          |> Stream.filter(&(RateLimiter.node_for(allow, &1) == slow.node))
          |> Enum.take(1)

        for call <- [
              fn -> RateLimiter.peek(allow, large) end,
              fn -> RateLimiter.hit(allow, large, 1, limit: 2) end,
              fn -> RateLimiter.peek(allow, key, :bad_cost) end,
              fn -> RateLimiter.peek(allow, key, 1, limit: :bad) end
            ] do
          assert_raise ArgumentError, call
        end
      after
        resume(pid)
      end

      # Back: the owner decides again, from its own count. The 4 calls that timed out may or
      # may not have been counted there too, once it resumed (as documented).
      assert {:allow, _, reset_after} = RateLimiter.hit(deny, key)
      assert reset_after > 0
      assert {:allow, remaining, _} = RateLimiter.hit(share, key)
      assert remaining in 3..7
    end

    test "a node joining and leaving moves only its keys, within the documented bound", %{
      peers: [p1, p2],
      nodes: nodes
    } do
      limit = 10
      opts = [limit: limit, cluster: :owner, cluster_fallback: :deny, cluster_timeout: 10_000]
      {l, spec} = limiter(opts)
      two = [node(), p1.node]
      Enum.each(two, &start_on(&1, spec))
      await_members(l, two, two)
      keys = for i <- 1..90, do: "k#{i}"
      before = Map.new(keys, &{&1, RateLimiter.node_for(l, &1)})

      hammer = fn on ->
        on
        |> Enum.map(
          &Task.async(fn ->
            :erpc.call(&1, Hotpath.ClusterCase, :hammer, [l, keys, 1, 2 * limit])
          end)
        )
        |> Enum.map(&Task.await(&1, 60_000))
        |> total()
      end

      # Half of each key's limit, counted on its owner among the two.
      first = :erpc.call(p1.node, Hotpath.ClusterCase, :hammer, [l, keys, 1, div(limit, 2)])
      assert first == Map.new(keys, &{&1, div(limit, 2)})

      # p2 joins: it takes over about a third of the keys, and only those. The share is
      # counted over 900 keys: node names differ from run to run, and over the 90 hammered
      # keys alone p2 once took 46, where 3000 simulated name draws reached 45 at most; over
      # 900 they stayed within 29-40 %.
      sup = start_on(p2.node, spec)
      await_members(l, nodes, nodes)
      share = Enum.count(1..900, &(RateLimiter.node_for(l, "k#{&1}") == p2.node))
      assert share in 150..450
      moved = for k <- keys, RateLimiter.node_for(l, k) == p2.node, do: k
      for k <- keys -- moved, do: assert(RateLimiter.node_for(l, k) == before[k])
      joined = hammer.(nodes)

      # p2 leaves: its keys go back to their previous owners, which kept their counts.
      :ok = :erpc.call(p2.node, Supervisor, :stop, [sup])
      await_members(l, two, two)
      assert Map.new(keys, &{&1, RateLimiter.node_for(l, &1)}) == before
      left = hammer.(two)

      totals = total([first, joined, left])
      # Keys that never moved: exactly the limit. Moved keys: one extra limit from the new
      # owner's empty count (the bound allows (1 + 2 moves) x limit; moving back to an owner
      # that kept its count adds nothing).
      for k <- keys -- moved, do: assert(totals[k] == limit)
      for k <- moved, do: assert(totals[k] == 2 * limit)
      assert Enum.all?(moved, &(totals[&1] <= 3 * limit))
    end

    test "a node killed mid-run: survivors keep answering, keys move, totals stay within the bound",
         %{peers: [p1, _], nodes: nodes} do
      [victim] = start_peers(1)
      everyone = nodes ++ [victim.node]
      limit = 20

      l =
        start_limiter!(everyone,
          limit: limit,
          cluster: :owner,
          cluster_fallback: :deny,
          cluster_timeout: 10_000
        )

      keys = for i <- 1..120, do: "k#{i}"
      owner_before = Map.new(keys, &{&1, RateLimiter.node_for(l, &1)})
      moved = for {k, o} <- owner_before, o == victim.node, do: k
      assert length(moved) > 5, "the victim owns some keys"

      # Phase 1: 10 admitted hits per key, some of them counted on the victim.
      before =
        [node(), p1.node]
        |> Enum.map(
          &Task.async(fn -> :erpc.call(&1, Hotpath.ClusterCase, :hammer, [l, keys, 1, 5]) end)
        )
        |> Enum.map(&Task.await(&1, 60_000))

      assert total(before) == Map.new(keys, &{&1, 10})

      # Phase 2: the survivors hammer every key while the victim is killed (SIGKILL).
      me = self()

      hammers =
        for n <- nodes do
          Task.async(fn ->
            :erpc.call(n, Hotpath.ClusterCase, :hammer, [l, keys, 2, 10, {me, 200}])
          end)
        end

      assert_receive {:progress, _}, 30_000
      {_, 0} = System.cmd("kill", ["-KILL", os_pid(victim)])
      after_kill = Enum.map(hammers, &Task.await(&1, 60_000))

      # Survivors agree the victim is gone, and its keys moved to one new owner each.
      await_members(l, nodes, nodes)

      for k <- keys do
        owners = for n <- nodes, do: :erpc.call(n, RateLimiter, :node_for, [l, k])
        assert [owner] = Enum.uniq(owners)
        if k in moved, do: assert(owner != victim.node), else: assert(owner == owner_before[k])
      end

      totals = total(before ++ after_kill)

      # Keys that did not move stay exact; a moved key gets at most one extra limit: what
      # the victim admitted is lost with it, and its new owner starts from an empty count.
      for k <- keys -- moved, do: assert(totals[k] == limit)
      for k <- moved, do: assert(totals[k] <= 2 * limit)
      # Survivors keep answering from the new owners.
      assert Enum.all?(moved, &match?({:deny, _, _}, RateLimiter.peek(l, &1)))
    end
  end

  describe "cluster: :local_share" do
    test "each node enforces limit/N locally, N following the membership", %{
      peers: [_, b],
      nodes: nodes
    } do
      {l, spec} = limiter(limit: 30, cluster: :local_share)
      sups = Map.new(nodes, &{&1, start_on(&1, spec)})
      await_members(l, nodes, nodes)

      for n <- nodes do
        assert :erpc.call(n, RateLimiter, :info, [l]).cluster.share == %{limit: 10, burst: nil}
      end

      admitted =
        nodes
        |> Enum.map(
          &Task.async(fn -> :erpc.call(&1, Hotpath.ClusterCase, :hammer, [l, ["k"], 2, 20]) end)
        )
        |> Enum.map(&Task.await(&1, 60_000))

      # No network hop: each node admitted its share, exactly.
      assert admitted == [%{"k" => 10}, %{"k" => 10}, %{"k" => 10}]

      # One node stops the limiter: the others now enforce 30 / 2.
      :ok = :erpc.call(b.node, Supervisor, :stop, [sups[b.node]])
      await_members(l, nodes -- [b.node], nodes -- [b.node])
      assert RateLimiter.info(l).cluster.share == %{limit: 15, burst: nil}

      admitted =
        Enum.count(1..20, fn _ -> match?({:allow, _, _}, RateLimiter.hit(l, "fresh")) end)

      assert admitted == 15
    end
  end
end
