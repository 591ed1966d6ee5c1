defmodule Hotpath.FakeTelemetry do
  @moduledoc false
  # The subset of the :telemetry API Hotpath.Metrics uses, with the same handler contract:
  # handlers run in the emitting process inside try/catch, and a handler that raises is
  # detached for good. Used only because the real package cannot be installed here.

  # Called from test_helper.exs, so the table belongs to a process that lives for the run.
  def start do
    if :ets.whereis(__MODULE__) == :undefined do
      :ets.new(__MODULE__, [:named_table, :public, :bag])
    end

    :ok
  end

  def attach(id, event, fun, config) when is_function(fun, 4) do
    start()

    if :ets.match_object(__MODULE__, {:_, id, :_, :_}) != [] do
      {:error, :already_exists}
    else
      :ets.insert(__MODULE__, {event, id, fun, config})
      :ok
    end
  end

  @doc """
  Sends `{tag, measurements, metadata}` to the calling process for every `event`, from the
  end of this call to the end of the test.
  """
  def forward(event, tag) do
    test = self()
    id = {__MODULE__, make_ref()}
    :ok = attach(id, event, fn _event, m, metadata, _ -> send(test, {tag, m, metadata}) end, nil)
    ExUnit.Callbacks.on_exit(fn -> detach(id) end)
  end

  def detach(id) do
    start()

    case :ets.match_object(__MODULE__, {:_, id, :_, :_}) do
      [] ->
        {:error, :not_found}

      _ ->
        :ets.match_delete(__MODULE__, {:_, id, :_, :_})
        :ok
    end
  end

  # As :telemetry's: the handlers of every event starting with `prefix`, as maps.
  def list_handlers(prefix) do
    start()

    for {event, id, fun, config} <- :ets.tab2list(__MODULE__),
        List.starts_with?(event, prefix),
        do: %{id: id, event_name: event, function: fun, config: config}
  end

  def handler_ids(prefix), do: prefix |> list_handlers() |> Enum.map(& &1.id)

  def execute(event, measurements, metadata) do
    start()

    for {^event, id, fun, config} <- :ets.lookup(__MODULE__, event) do
      try do
        fun.(event, measurements, metadata, config)
      catch
        _, _ -> detach(id)
      end
    end

    :ok
  end
end
