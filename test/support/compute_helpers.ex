defmodule Hotpath.ComputeHelpers do
  @moduledoc false
  # Helpers for the compute tests: waiting on conditions without asserting speed.

  import ExUnit.Assertions

  defdelegate eventually(fun, timeout \\ 5_000), to: Hotpath.Test.Eventually

  @doc """
  Waits until a cancelled native job has no step running (`state: :cancelled, busy: false`;
  a step that was running when it was cancelled may still finish and count), then asserts
  that its counters are final: a step called now is refused and counts nothing.
  """
  def assert_stopped(job) do
    info =
      eventually(fn ->
        match?(%{state: :cancelled, busy: false}, info = job_info(job)) && info
      end)

    assert {:error, :cancelled} = step(job)
    assert job_info(job) == info
    info
  end

  defp job_info(job), do: Hotpath.Compute.job_info(job)

  # One more step, as the process driving the job would call it. Any job refuses a step once
  # cancelled; a spin job whose state does not show its cancellation yet refuses digest input
  # as the wrong kind, and gets a spin step.
  defp step(job) do
    Hotpath.Native.compute_digest_update(job, <<0>>, 0)
  rescue
    ArgumentError -> Hotpath.Native.compute_spin_step(job)
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
