defmodule Hotpath.Metrics.Owner do
  @moduledoc false
  # The process of a Hotpath.Metrics instance: publishes the registry in :persistent_term,
  # attaches the telemetry handlers, prunes idle series on a timer, and undoes it all in
  # terminate/2 (it traps exits so a supervisor shutdown runs terminate).
  use GenServer

  @compile {:no_warn_undefined, :telemetry}

  def start_link(%{name: name} = state) do
    GenServer.start_link(__MODULE__, state, name: name)
  end

  @impl true
  def init(state) do
    Process.flag(:trap_exit, true)
    :persistent_term.put({Hotpath.Metrics, state.name}, state.registry)
    :persistent_term.put({Hotpath.Metrics, state.name, :meta}, state.meta)
    :ok = Hotpath.Native.metrics_publish(state.registry, state.name)
    state = Map.put(state, :attached, attach(state))
    schedule_prune(state)
    {:ok, state}
  end

  @impl true
  def handle_info(:prune, state) do
    Hotpath.Native.metrics_prune(state.registry)
    schedule_prune(state)
    {:noreply, state}
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    telemetry = state.telemetry_module
    for id <- state.attached, do: telemetry.detach(id)
    Hotpath.Native.metrics_unpublish(state.registry, state.name)
    :persistent_term.erase({Hotpath.Metrics, state.name})
    :persistent_term.erase({Hotpath.Metrics, state.name, :meta})
    :ok
  end

  defp schedule_prune(%{prune_every: nil}), do: :ok
  defp schedule_prune(%{prune_every: ms}), do: Process.send_after(self(), :prune, ms)

  defp attach(%{telemetry_module: telemetry} = state) do
    if state.attach? and Code.ensure_loaded?(telemetry) do
      for {event, metrics} <- state.handlers do
        id = {Hotpath.Metrics, state.name, event}
        # The instance name, not the registry term: the NIF finds it in its own table, which is
        # cheaper than decoding a resource term copied out of ETS or :persistent_term.
        config = %{registry: state.name, metrics: metrics}
        handler = &Hotpath.Metrics.Handler.handle_event/4

        case telemetry.attach(id, event, handler, config) do
          :ok ->
            :ok

          {:error, :already_exists} ->
            # Left behind by an owner that was killed before terminate/2 could run.
            telemetry.detach(id)
            :ok = telemetry.attach(id, event, handler, config)
        end

        id
      end
    else
      []
    end
  end
end
