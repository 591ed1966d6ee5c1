defmodule Hotpath.RateLimiter.Cluster.Presence do
  @moduledoc false
  # This node's entry in a cluster limiter's `:pg` group: the process other nodes see as the
  # member here. It is not `Hotpath.RateLimiter.Cluster.Member` itself because that process
  # monitors the group, and `:pg` before OTP 26.2 crashes when one process both joins and
  # monitors and then exits abnormally (erlang/otp#7625).

  use GenServer

  def start_link({scope, group}), do: GenServer.start_link(__MODULE__, {scope, group})

  @impl true
  def init({scope, group}) do
    Process.flag(:trap_exit, true)
    :ok = :pg.join(scope, group, self())
    {:ok, {scope, group}}
  end

  @impl true
  def handle_info(_message, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, {scope, group}) do
    # Leaving explicitly tells the other nodes at once (pg would also notice the exit).
    :pg.leave(scope, group, self())
    :ok
  end
end
