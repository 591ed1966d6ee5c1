defmodule Hotpath.Demo.Metrics do
  @moduledoc false
  # The demo's metric definitions: what a Phoenix app would get from
  # Hotpath.Metrics.Recipes, recorded directly (the demo has no :telemetry).

  alias Hotpath.Metrics

  @name Hotpath.Demo.Metrics
  # Dashboard quantiles come from a short sliding window: the last 2 s in 1 s slots.
  @window {2_000, 2}

  def definitions do
    [
      Metrics.summary("demo.http.request.duration",
        tags: [:route],
        description: "Server time to answer a request (seconds)",
        reporter_options: [
          window: @window,
          quantiles: [0.5, 0.9, 0.99],
          prometheus_name: "demo_http_request_duration_seconds"
        ]
      ),
      Metrics.summary("demo.api.request.duration",
        description: "Server time to answer the API routes, /api/items and /api/login (seconds)",
        reporter_options: [
          window: @window,
          quantiles: [0.5, 0.9, 0.99],
          prometheus_name: "demo_api_request_duration_seconds"
        ]
      ),
      Metrics.counter("demo.http.requests",
        tags: [:route, :outcome],
        description: "Requests by route and outcome (allowed, denied, overloaded, ...)"
      ),
      Metrics.summary("demo.client.request.duration",
        tags: [:class],
        description: "Request latency seen by the load generator's clients (seconds)",
        reporter_options: [
          window: @window,
          quantiles: [0.5, 0.9, 0.99],
          prometheus_name: "demo_client_request_duration_seconds"
        ]
      ),
      Metrics.summary("demo.login.verify.duration",
        description: "Time to verify a password through the compute pool (seconds)",
        reporter_options: [window: @window, prometheus_name: "demo_login_verify_duration_seconds"]
      )
    ] ++ Metrics.Recipes.vm()
  end

  @doc "Records one request the server answered."
  def request(route, outcome, seconds) do
    Metrics.record(@name, "demo.http.request.duration", seconds, %{route: route})
    Metrics.record(@name, "demo.http.requests", nil, %{route: route, outcome: outcome})

    if route in ["/api/items", "/api/login"],
      do: Metrics.record(@name, "demo.api.request.duration", seconds, %{})

    :ok
  end

  @doc "Records a request's latency as a load-generator client saw it."
  def client(class, seconds),
    do: Metrics.record(@name, "demo.client.request.duration", seconds, %{class: class})

  def verify(seconds), do: Metrics.record(@name, "demo.login.verify.duration", seconds, %{})

  @doc "The VM measurements of Hotpath.Metrics.Recipes.vm/0, as telemetry_poller would send."
  def vm do
    for {kind, bytes} <- :erlang.memory(),
        kind in [:total, :processes, :system, :atom, :binary, :code, :ets],
        do: Metrics.record(@name, [:vm, :memory, kind], bytes)

    total = :erlang.statistics(:total_run_queue_lengths_all)
    cpu = :erlang.statistics(:total_run_queue_lengths)
    Metrics.record(@name, [:vm, :total_run_queue_lengths, :total], total)
    Metrics.record(@name, [:vm, :total_run_queue_lengths, :cpu], cpu)
    Metrics.record(@name, [:vm, :total_run_queue_lengths, :io], total - cpu)

    Metrics.record(
      @name,
      [:vm, :system_counts, :process_count],
      :erlang.system_info(:process_count)
    )

    Metrics.record(@name, [:vm, :system_counts, :atom_count], :erlang.system_info(:atom_count))
    Metrics.record(@name, [:vm, :system_counts, :port_count], :erlang.system_info(:port_count))
    :ok
  end
end
