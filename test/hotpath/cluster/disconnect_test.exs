defmodule Hotpath.Cluster.DisconnectTest do
  # Node.disconnect/1 on a cluster limiter, with its own peers: cutting a connection makes
  # OTP's global (prevent_overlapping_partitions, the default since OTP 25) cut further
  # connections until the partitions are disjoint, and which nodes end up together is a
  # race. The test checks what Hotpath documents whatever the partitions turn out to be:
  # each node's members are the nodes it is connected to, each partition decides alone with
  # one owner per key, and healing brings every key back to its owner with its count.
  use ExUnit.Case, async: false

  import Hotpath.ClusterCase
  alias Hotpath.RateLimiter

  @moduletag :cluster

  test "each partition decides alone, then keys move back with their counts" do
    [a, cut] = peers = start_peers(2)
    nodes = [node(), a.node, cut.node]
    l = :"disconnect_limiter_#{System.unique_integer([:positive])}"
    spec = spec(l)

    Enum.each(nodes, &start_on(&1, spec))
    await_members(l, nodes, nodes)
    key = Enum.find(1..10_000, &(RateLimiter.node_for(l, &1) == cut.node))
    for _ <- 1..3, do: assert({:allow, _, _} = RateLimiter.hit(l, key))

    # global must be idle first: a lock it still holds from setting up the connections is
    # released with a call to every node it locked, the cut one included, and that call
    # connects the cut node again (the partitions then merge back into one).
    await_global(peers)
    true = Node.disconnect(cut.node)

    # Peers are driven over their standard I/O from now on: a distribution call would
    # reconnect them. Wait until the connections form disjoint partitions and every
    # node's members are its partition.
    run = fn
      n, m, f, args when n == node() -> apply(m, f, args)
      n, m, f, args -> on(Enum.find(peers, &(&1.node == n)), m, f, args)
    end

    partitions =
      eventually(fn ->
        partition = Map.new(nodes, &{&1, Enum.sort([&1 | run.(&1, Node, :list, [])])})

        disjoint? =
          Enum.all?(partition, fn {_n, members} ->
            Enum.all?(members, &(partition[&1] == members))
          end)

        views? =
          Enum.all?(partition, fn {n, members} ->
            run.(n, RateLimiter, :info, [l]).cluster.members == members
          end)

        disjoint? and views? and partition |> Map.values() |> Enum.uniq()
      end)

    assert length(partitions) >= 2, "the cut node is in a partition of its own side"

    # In each partition every node agrees on the key's owner and answers at once (no
    # fallback: a :deny fallback would answer reset_after 0). The cut node's partition goes
    # on from its count (3 of 5); any other starts from an empty count on its new owner.
    for partition <- partitions do
      owners = for n <- partition, do: run.(n, RateLimiter, :node_for, [l, key])
      assert [owner] = Enum.uniq(owners)
      assert owner in partition
      [first | _] = partition
      decisions = for _ <- 1..8, do: run.(first, RateLimiter, :hit, [l, key])
      assert Enum.all?(decisions, fn {_, _, reset_after} -> reset_after > 0 end)
      admitted = Enum.count(decisions, &match?({:allow, _, _}, &1))
      assert admitted == if(cut.node in partition, do: 2, else: 5)
    end

    # Healed: one group again, the key is back on the cut node, whose count survived.
    for n <- nodes, other <- nodes, do: run.(n, Node, :connect, [other])
    connect_all(peers)
    await_members(l, nodes, nodes)
    assert RateLimiter.node_for(l, key) == cut.node
    assert {:deny, _, reset_after} = RateLimiter.hit(l, key)
    assert reset_after > 0
  end

  test "a member of a stale view that is no longer connected is not called (nor reconnected)" do
    [peer] = start_peers(1)
    l = :"stale_view_limiter_#{System.unique_integer([:positive])}"
    spec = spec(l)

    Enum.each([node(), peer.node], &start_on(&1, spec))
    await_members(l, [node(), peer.node], [node(), peer.node])
    key = Enum.find(1..10_000, &(RateLimiter.node_for(l, &1) == peer.node))
    assert {:allow, 4, _} = RateLimiter.hit(l, key)

    # The member process keeps this node's view: suspended, it cannot learn that the peer
    # left, as in the moment between a disconnect and the view's update.
    await_global([peer])
    :ok = :sys.suspend(l)

    try do
      true = Node.disconnect(peer.node)
      assert RateLimiter.node_for(l, key) == peer.node

      # The owner is not connected: the fallback answers (no :erpc call, which would connect
      # the node again), with the reason :noconnection; reset skips it.
      test = self()
      event = [:hotpath, :rate_limiter, :cluster_fallback]
      id = {__MODULE__, make_ref()}
      :ok = Hotpath.FakeTelemetry.attach(id, event, &send(test, {&1, &2, &3, &4}), nil)
      on_exit(fn -> Hotpath.FakeTelemetry.detach(id) end)
      assert RateLimiter.hit(l, key) == {:deny, 10_000, 0}
      assert_received {^event, %{count: 1}, %{limiter: ^l, owner: owner, reason: reason}, nil}
      assert {owner, reason} == {peer.node, :noconnection}
      assert :ok = RateLimiter.reset(l, key)
      assert Node.list() == []
      assert on(peer, Node, :list, []) == []
    after
      :ok = :sys.resume(l)
    end

    await_members(l, [node()], [node()])
    assert RateLimiter.node_for(l, key) == node()
    assert Node.list() == []
  end

  # A cluster limiter of 5 per 100 days whose fallback denies.
  defp spec(name) do
    {RateLimiter,
     name: name,
     limit: 5,
     period: 8_640_000_000,
     cluster: :owner,
     cluster_fallback: :deny,
     cluster_timeout: 10_000}
  end
end
