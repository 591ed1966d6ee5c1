defmodule Hotpath.ComputeHelpers do
  @moduledoc false
  # Helpers for the compute tests: waiting on conditions without asserting speed.

  @doc "Polls `fun` every 10 ms until it returns a truthy value or `timeout` ms pass."
  def eventually(fun, timeout \\ 5_000) do
    deadline = System.monotonic_time(:millisecond) + timeout
    poll(fun, deadline)
  end

  defp poll(fun, deadline) do
    case fun.() do
      result when result not in [nil, false] ->
        result

      _ ->
        if System.monotonic_time(:millisecond) > deadline do
          raise ExUnit.AssertionError, message: "condition not met in time"
        else
          Process.sleep(10)
          poll(fun, deadline)
        end
    end
  end

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
