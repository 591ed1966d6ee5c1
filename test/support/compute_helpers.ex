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

    unless first.steps == second.steps and first.bytes == second.bytes do
      raise ExUnit.AssertionError,
        message: "native job still moving: #{inspect(first)} then #{inspect(second)}"
    end

    second
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
