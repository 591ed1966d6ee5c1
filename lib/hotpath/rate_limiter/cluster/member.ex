defmodule Hotpath.RateLimiter.Cluster.Member do
  @moduledoc false
  # This node's view of a cluster limiter: registered under the limiter's name, it follows
  # the group of the limiter's `:pg` scope with `:pg.monitor/2` and keeps the view
  # (`Hotpath.RateLimiter.Cluster`, with the member nodes) in `:persistent_term`, where every
  # hit reads it. This node is always in its own view (its `Presence` joins the group after
  # this process starts). The view is rewritten only when the set of member nodes changes (a
  # `:persistent_term` update is a global event; membership changes are rare).
  #
  # On start it first learns the group from every connected node (bounded by the cluster
  # timeout), so a node that joins does not decide keys with a partial view of the members.

  use GenServer

  alias Hotpath.RateLimiter
  alias Hotpath.RateLimiter.{Cluster, Owner}

  def start_link(%Cluster{name: name} = cluster) do
    GenServer.start_link(__MODULE__, cluster, name: name)
  end

  @impl true
  def init(%Cluster{} = c) do
    Process.flag(:trap_exit, true)
    # The table's owner started before this process: its table is registered (and stays
    # registered across the owner's restarts).
    {ref, _deny_events, _config} = RateLimiter.published_entry(c.local)
    {monitor, pids} = :pg.monitor(c.scope, c.name)
    state = %{cluster: %{c | ref: ref}, monitor: monitor, pids: MapSet.new(pids)}

    {:ok, state |> await_group() |> publish()}
  end

  @impl true
  def handle_info({monitor, change, _group, pids}, %{monitor: monitor} = state)
      when change in [:join, :leave] do
    {:noreply, state |> update(change, pids) |> publish()}
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(reason, state) do
    c = state.cluster

    # As for the owner of a table: a crash leaves the view in place for the restarted member.
    if Owner.clean_exit?(reason) do
      case :persistent_term.get({RateLimiter, c.name}, nil) do
        {:cluster, %Cluster{local: local}} when local == c.local ->
          :persistent_term.erase({RateLimiter, c.name})

        _ ->
          :ok
      end
    end

    :ok
  end

  defp update(state, :join, pids), do: %{state | pids: MapSet.union(state.pids, MapSet.new(pids))}

  defp update(state, :leave, pids),
    do: %{state | pids: MapSet.difference(state.pids, MapSet.new(pids))}

  defp publish(%{cluster: c, pids: pids} = state) do
    c = Cluster.with_members(c, [node() | Enum.map(pids, &node/1)])
    entry = {:cluster, c}
    key = {RateLimiter, c.name}
    if :persistent_term.get(key, nil) !== entry, do: :persistent_term.put(key, entry)
    %{state | cluster: c}
  end

  # Waits (at most the cluster timeout) until the group holds a member on every connected
  # node that reports one: `:pg` learns remote members asynchronously after it starts.
  defp await_group(state) do
    case Node.list() do
      [] -> state
      others -> await_group(state, others)
    end
  end

  defp await_group(%{cluster: c} = state, others) do
    answers = :erpc.multicall(others, :pg, :get_members, [c.scope, c.name], c.timeout)

    expected =
      for {node, {:ok, [_ | _]}} <- Enum.zip(others, answers), into: MapSet.new(), do: node

    await(state, expected, System.monotonic_time(:millisecond) + c.timeout)
  end

  defp await(state, expected, deadline) do
    nodes = MapSet.new(state.pids, &node/1)

    if MapSet.subset?(expected, nodes) do
      state
    else
      monitor = state.monitor
      wait = max(deadline - System.monotonic_time(:millisecond), 0)

      receive do
        {^monitor, change, _group, pids} when change in [:join, :leave] ->
          await(update(state, change, pids), expected, deadline)
      after
        wait -> state
      end
    end
  end
end
