defmodule Hotpath.Metrics.RecipesTest do
  use ExUnit.Case, async: true

  alias Hotpath.FakeTelemetry
  alias Hotpath.Metrics
  alias Hotpath.Metrics.Recipes

  doctest Recipes

  # :telemetry cannot be installed here: Hotpath.FakeTelemetry has its handler contract.
  defp start!(metrics) do
    name = :"recipes_#{System.unique_integer([:positive])}"

    start_supervised!({Metrics, name: name, metrics: metrics})

    name
  end

  # Snapshots come in definition order.
  defp series(name, prom_name) do
    name
    |> Metrics.snapshot()
    |> Enum.zip(Process.get(:defs))
    |> Enum.find_value(fn {snap, d} ->
      if Metrics.Definition.prometheus_name(d) == prom_name, do: snap
    end)
  end

  test "phoenix: endpoint and router events become labelled histograms and a counter" do
    defs = Recipes.phoenix()
    Process.put(:defs, defs)
    name = start!(defs)
    second = System.convert_time_unit(1, :second, :native)
    conn = %{method: "GET", status: 200, request_path: "/users/1"}

    FakeTelemetry.execute([:phoenix, :endpoint, :stop], %{duration: div(second, 50)}, %{
      conn: conn
    })

    FakeTelemetry.execute([:phoenix, :router_dispatch, :stop], %{duration: div(second, 100)}, %{
      conn: conn,
      route: "/users/:id"
    })

    FakeTelemetry.execute([:phoenix, :router_dispatch, :exception], %{duration: 1}, %{
      conn: conn,
      route: "/users/:id",
      kind: :error
    })

    # Metadata that is not what Phoenix sends is tagged "unknown", never dropped or raised.
    FakeTelemetry.execute([:phoenix, :endpoint, :stop], %{duration: 1}, %{})

    endpoint = series(name, "phoenix_endpoint_duration_seconds")
    assert endpoint.dropped == 0

    assert [
             %{tags: %{method: "GET", status: "200"}, count: 1, sum: sum},
             %{tags: %{method: "unknown"}}
           ] = Enum.sort_by(endpoint.series, & &1.tags.method)

    assert_in_delta sum, 0.02, 1.0e-6

    assert [%{tags: %{route: "/users/:id", status: "200", method: "GET"}, count: 1}] =
             series(name, "phoenix_router_dispatch_duration_seconds").series

    assert [%{tags: %{kind: "error", route: "/users/:id"}, value: 1}] =
             series(name, "phoenix_router_dispatch_exceptions_total").series

    assert_lint_clean(name)
  end

  test "phoenix: a custom endpoint prefix" do
    [endpoint | _] = Recipes.phoenix(endpoint_prefix: [:my_app, :endpoint])
    assert endpoint.event_name == [:my_app, :endpoint, :stop]
  end

  test "ecto: query timings per source, optional parts recorded only when present" do
    defs = Recipes.ecto(repo: [:my_app, :repo])
    Process.put(:defs, defs)
    name = start!(defs)
    ms = System.convert_time_unit(1, :millisecond, :native)

    FakeTelemetry.execute(
      [:my_app, :repo, :query],
      %{total_time: 3 * ms, query_time: 2 * ms, decode_time: ms},
      %{source: "users", result: {:ok, %{}}}
    )

    FakeTelemetry.execute([:my_app, :repo, :query], %{total_time: ms, queue_time: ms}, %{
      source: nil,
      result: {:error, :boom}
    })

    total = series(name, "my_app_repo_query_total_time_seconds")
    assert total.dropped == 0
    assert Enum.map(total.series, & &1.tags.source) |> Enum.sort() == ["unknown", "users"]

    for {part, count} <- [queue_time: 1, query_time: 1, decode_time: 1] do
      snap = series(name, "my_app_repo_query_#{part}_seconds")
      assert snap.dropped == 0
      assert [%{count: ^count}] = snap.series
    end

    assert [%{tags: %{result: "error"}, value: 1}, %{tags: %{result: "ok"}, value: 1}] =
             Enum.sort_by(series(name, "my_app_repo_queries_total").series, & &1.tags.result)

    assert_lint_clean(name)
  end

  test "vm: telemetry_poller's measurements as gauges" do
    defs = Recipes.vm()
    Process.put(:defs, defs)
    name = start!(defs)

    memory = Map.new(:erlang.memory())
    FakeTelemetry.execute([:vm, :memory], memory, %{})
    FakeTelemetry.execute([:vm, :total_run_queue_lengths], %{total: 3, cpu: 2, io: 1}, %{})

    FakeTelemetry.execute(
      [:vm, :system_counts],
      %{process_count: 100, atom_count: 2000, port_count: 5},
      %{}
    )

    assert [%{value: total}] = series(name, "vm_memory_total_bytes").series
    assert total == memory.total
    assert [%{value: 2.0}] = series(name, "vm_cpu_run_queue_length").series
    assert [%{value: 100.0}] = series(name, "vm_processes").series
    assert Enum.all?(Metrics.snapshot(name), &(&1.dropped == 0))

    assert_lint_clean(name)
  end

  test "bad options" do
    assert_raise ArgumentError, ~r/missing required option :repo/, fn -> Recipes.ecto([]) end

    assert_raise ArgumentError, ~r/:repo must be a non-empty list/, fn ->
      Recipes.ecto(repo: "repo")
    end

    assert_raise ArgumentError, ~r/:endpoint_prefix must be/, fn ->
      Recipes.phoenix(endpoint_prefix: [])
    end

    assert_raise ArgumentError, ~r/unknown options/, fn -> Recipes.vm(period: 1) end
    assert_raise ArgumentError, ~r/unknown options/, fn -> Recipes.phoenix(repo: 1) end
  end

  defp assert_lint_clean(name) do
    text = name |> Metrics.prometheus() |> IO.iodata_to_binary()
    {output, status} = Hotpath.Test.Promtool.check(text)
    assert status == 0, "promtool:\n#{output}\n#{text}"
  end
end
