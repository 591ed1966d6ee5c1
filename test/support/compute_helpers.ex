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

  # A stand-in for :telemetry that forwards events to the registered test process.
  defmodule FakeTelemetry do
    @moduledoc false
    def execute(name, measurements, metadata) do
      case :persistent_term.get({__MODULE__, metadata[:pool]}, nil) do
        nil -> :ok
        pid -> send(pid, {:telemetry, name, measurements, metadata})
      end
    end
  end
end
