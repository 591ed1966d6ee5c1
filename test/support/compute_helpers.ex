defmodule Hotpath.ComputeHelpers do
  @moduledoc false
  # Helpers for the compute tests: waiting on conditions without asserting speed.

  defdelegate eventually(fun, timeout \\ 5_000), to: Hotpath.Test.Eventually

  @doc """
  Asserts a native job's step counter has stopped: equal readings `gap_ms` apart (generous:
  a running step job makes a step every few ms).
  """
  def assert_stopped(job, gap_ms \\ 150) do
    # A step that was already running when the job was cancelled may still finish and count:
    # cancellation takes effect within one step. Let it, then watch the counter.
    Process.sleep(gap_ms)
    first = Hotpath.Compute.job_info(job)
    Process.sleep(gap_ms)
    second = Hotpath.Compute.job_info(job)

    if not (first.steps == second.steps and first.bytes == second.bytes) do
      raise ExUnit.AssertionError,
        message: "native job still moving: #{inspect(first)} then #{inspect(second)}"
    end

    second
  end

  @compute_events [
    [:hotpath, :compute, :job, :start],
    [:hotpath, :compute, :job, :stop],
    [:hotpath, :compute, :job, :exception],
    [:hotpath, :compute, :pool, :overloaded]
  ]

  # Sends the compute events of `pool` to `test` as `{:telemetry, name, measurements,
  # metadata}`, through the stand-in for :telemetry every test emits through
  # (Hotpath.FakeTelemetry, set in test_helper.exs). Returns the handler ids.
  def forward_compute_events(pool, test \\ self()) do
    for event <- @compute_events do
      id = {__MODULE__, pool, event}

      :ok =
        Hotpath.FakeTelemetry.attach(id, event, &__MODULE__.forward/4, %{pool: pool, to: test})

      id
    end
  end

  @doc false
  def forward(name, measurements, %{pool: pool} = metadata, %{pool: pool, to: test}),
    do: send(test, {:telemetry, name, measurements, metadata})

  def forward(_name, _measurements, _metadata, _config), do: :ok
end
