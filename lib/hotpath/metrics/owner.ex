defmodule Hotpath.Metrics.Owner do
  @moduledoc false
  # The process of a Hotpath.Metrics instance: publishes the registry in :persistent_term and
  # in the NIF's table of instances, attaches the telemetry handlers, prunes idle series on a
  # timer, and undoes it all in terminate/2 on a clean stop (it traps exits so a supervisor
  # shutdown runs terminate).
  #
  # The registry lives in native memory, referenced from :persistent_term and the NIF's table,
  # not from this process: after a crash (even a :kill, which skips terminate/2) everything
  # stays published, so records keep landing in the same series, and the restarted owner takes
  # the registry over when its definitions are the same (the limiter's owner does the same
  # with its table).
  use GenServer

  @compile {:no_warn_undefined, :telemetry}

  def start_link(%{name: name} = state) do
    GenServer.start_link(__MODULE__, state, name: name)
  end

  @impl true
  def init(state) do
    Process.flag(:trap_exit, true)
    registry_key = {Hotpath.Metrics, state.name}
    meta_key = {Hotpath.Metrics, state.name, :meta}

    # Take over the registry left by an owner that crashed, when it was built from the same
    # definitions; otherwise publish the new one. :persistent_term is written only when the
    # value changes (a write costs a global scan of every process).
    registry =
      case {:persistent_term.get(registry_key, nil), :persistent_term.get(meta_key, nil)} do
        {old, meta} when old != nil and meta == state.meta -> old
        _ -> state.registry
      end

    if :persistent_term.get(meta_key, nil) !== state.meta,
      do: :persistent_term.put(meta_key, state.meta)

    if :persistent_term.get(registry_key, nil) !== registry,
      do: :persistent_term.put(registry_key, registry)

    :ok = Hotpath.Native.metrics_publish(registry, state.name)
    # The module the handlers are attached with (and detached with at a clean stop).
    state = Map.merge(state, %{registry: registry, telemetry: Hotpath.Telemetry.module()})
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
  def terminate(reason, state) do
    # A clean stop removes the instance; after a crash everything stays in place for the
    # restarted owner (and for every caller meanwhile).
    if Hotpath.RateLimiter.Owner.clean_exit?(reason) do
      for id <- state.attached, do: state.telemetry.detach(id)
      Hotpath.Native.metrics_unpublish(state.registry, state.name)

      if :persistent_term.get({Hotpath.Metrics, state.name}, nil) === state.registry do
        :persistent_term.erase({Hotpath.Metrics, state.name})
        :persistent_term.erase({Hotpath.Metrics, state.name, :meta})
      end
    end

    :ok
  end

  defp schedule_prune(%{prune_every: nil}), do: :ok
  defp schedule_prune(%{prune_every: ms}), do: Process.send_after(self(), :prune, ms)

  defp attach(%{telemetry: telemetry} = state) do
    if state.attach? and telemetry != nil do
      ids =
        for {event, metrics} <- state.handlers do
          id = {Hotpath.Metrics, state.name, event}
          # The instance name, not the registry term: the NIF finds it in its own table, which
          # is cheaper than decoding a resource term copied out of ETS or :persistent_term.
          config = %{registry: state.name, metrics: metrics}
          handler = &Hotpath.Metrics.Handler.handle_event/4

          case telemetry.attach(id, event, handler, config) do
            :ok ->
              :ok

            {:error, :already_exists} ->
              # Left behind by an owner that crashed: kept when it is the same handler (so no
              # event is missed while this owner restarts), replaced otherwise.
              if not attached?(telemetry, event, id, handler, config) do
                telemetry.detach(id)
                :ok = telemetry.attach(id, event, handler, config)
              end
          end

          id
        end

      detach_stale(telemetry, state.name, ids)
      ids
    else
      []
    end
  end

  # The real :telemetry lists handlers as maps with their function and config.
  defp attached?(telemetry, event, id, handler, config) do
    function_exported?(telemetry, :list_handlers, 1) and
      Enum.any?(telemetry.list_handlers(event), fn
        %{id: ^id, event_name: ^event, function: ^handler, config: ^config} -> true
        _ -> false
      end)
  end

  # Handlers of this instance name for events the new definitions no longer have (left by an
  # owner that crashed with other definitions).
  defp detach_stale(telemetry, name, ids) do
    if function_exported?(telemetry, :list_handlers, 1) do
      for %{id: {Hotpath.Metrics, ^name, _} = id} <- telemetry.list_handlers([]),
          id not in ids,
          do: telemetry.detach(id)
    end

    :ok
  end
end
