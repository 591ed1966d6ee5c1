defmodule Hotpath.Demo.Stats do
  @moduledoc false
  # Samples the demo once a second into a ring of the last @keep samples, for the dashboard
  # (`GET /api/stats`) and the load generator's progress line: request rate and outcomes
  # (from the Hotpath.Metrics counter), p50/p99 server latency over the summary's 2 s
  # window, the compute pool's queue, and the worst scheduler heartbeat gap.
  #
  # The heartbeat is its own process: a 10 ms timer on a normal scheduler, whose lateness
  # is what any process waiting for a scheduler would suffer.

  use GenServer

  alias Hotpath.Demo

  @tick 1_000
  @beat 10
  @keep 300

  def start_link(_opts), do: GenServer.start_link(__MODULE__, nil, name: __MODULE__)

  @doc "The dashboard's document: recent samples and running totals."
  def json, do: GenServer.call(__MODULE__, :json)

  @doc "The latest sample (nil before the first tick)."
  def latest, do: GenServer.call(__MODULE__, :latest)

  @doc "Totals since start: outcomes, the worst heartbeat gap, compute counters."
  def totals, do: GenServer.call(__MODULE__, :totals)

  @doc "Takes a sample now (besides the one a second); returns it. For tests."
  def sample_now, do: GenServer.call(__MODULE__, :sample_now)

  @impl true
  def init(nil) do
    gaps = :atomics.new(2, signed: false)
    heartbeat = spawn_link(fn -> heartbeat(gaps, System.monotonic_time(:microsecond)) end)
    Process.send_after(self(), :tick, @tick)

    {:ok,
     %{
       started: System.monotonic_time(:millisecond),
       gaps: gaps,
       heartbeat: heartbeat,
       samples: :queue.new(),
       count: 0,
       last_outcomes: %{},
       last_rejected: 0,
       totals: %{}
     }}
  end

  @impl true
  def handle_call(:json, _from, state) do
    {:reply,
     %{
       uptime_s: div(System.monotonic_time(:millisecond) - state.started, 1000),
       tick_ms: @tick,
       samples: :queue.to_list(state.samples),
       totals: state.totals
     }, state}
  end

  def handle_call(:latest, _from, state) do
    latest =
      case :queue.peek_r(state.samples) do
        {:value, sample} -> sample
        :empty -> nil
      end

    {:reply, latest, state}
  end

  def handle_call(:totals, _from, state), do: {:reply, state.totals, state}

  def handle_call(:sample_now, _from, state) do
    state = sample(state)
    {:value, latest} = :queue.peek_r(state.samples)
    {:reply, latest, state}
  end

  @impl true
  def handle_info(:tick, state) do
    Process.send_after(self(), :tick, @tick)
    {:noreply, sample(state)}
  end

  defp sample(state) do
    # What telemetry_poller would send for Hotpath.Metrics.Recipes.vm/0.
    Demo.Metrics.vm()
    snapshot = Hotpath.Metrics.snapshot(Demo.Metrics)
    outcomes = outcomes(snapshot)
    delta = Map.new(outcomes, fn {k, v} -> {k, v - Map.get(state.last_outcomes, k, 0)} end)
    compute = Hotpath.Compute.info(Demo.names().compute)
    gap_us = :atomics.exchange(state.gaps, 1, 0)
    worst_us = :atomics.get(state.gaps, 2)
    {p50, p99} = window_quantiles(snapshot)
    t = div(System.monotonic_time(:millisecond) - state.started, 1000)

    sample = %{
      t: t,
      requests: delta |> Map.values() |> Enum.sum(),
      # Admitted by the rate limiter: answered, whatever the login's verdict.
      allowed: Map.get(delta, "ok", 0) + Map.get(delta, "unauthorized", 0),
      denied: Map.get(delta, "denied", 0),
      overloaded: Map.get(delta, "overloaded", 0),
      p50_ms: p50,
      p99_ms: p99,
      compute_queued: compute.queued,
      compute_running: compute.running,
      compute_rejected: compute.rejected - state.last_rejected,
      heartbeat_gap_ms: gap_us / 1000
    }

    samples = :queue.in(sample, state.samples)
    samples = if state.count >= @keep, do: :queue.drop(samples), else: samples

    totals = %{
      requests: outcomes |> Map.values() |> Enum.sum(),
      outcomes: outcomes,
      compute_completed: compute.completed,
      compute_rejected: compute.rejected,
      heartbeat_worst_ms: worst_us / 1000
    }

    %{
      state
      | samples: samples,
        count: min(state.count + 1, @keep),
        last_outcomes: outcomes,
        last_rejected: compute.rejected,
        totals: totals
    }
  end

  # Requests per outcome (all routes but the dashboard's own polling and scrapes).
  defp outcomes(snapshot) do
    for %{name: [:demo, :http, :requests], series: series} <- snapshot,
        %{tags: %{route: route, outcome: outcome}, value: n} <- series,
        route in ["/api/items", "/api/login"],
        reduce: %{} do
      acc -> Map.update(acc, outcome, n, &(&1 + n))
    end
  end

  # p50 and p99 (ms) of the API routes over the summary's last window.
  defp window_quantiles(snapshot) do
    case for(
           %{name: [:demo, :api, :request, :duration], series: [series]} <- snapshot,
           do: series
         ) do
      [%{window: %{count: count, quantiles: q}}] when count > 0 -> {ms(q[0.5]), ms(q[0.99])}
      _ -> {nil, nil}
    end
  end

  defp ms(seconds) when is_number(seconds), do: Float.round(seconds * 1000, 3)
  defp ms(_), do: nil

  defp heartbeat(gaps, expected) do
    receive do
    after
      @beat -> :ok
    end

    now = System.monotonic_time(:microsecond)
    gap = max(0, now - expected - @beat * 1000)
    if gap > :atomics.get(gaps, 1), do: :atomics.put(gaps, 1, gap)
    if gap > :atomics.get(gaps, 2), do: :atomics.put(gaps, 2, gap)
    heartbeat(gaps, now)
  end
end
