defmodule Hotpath.Test.Eventually do
  @moduledoc false
  # Waiting on a condition in tests: for convergence (a restarted process, a membership
  # view), never to make time pass.

  @doc """
  Polls `fun` every 5 ms until it returns a truthy value (returned) or `timeout` ms pass
  (the test fails).
  """
  def eventually(fun, timeout \\ 5_000) do
    poll(fun, System.monotonic_time(:millisecond) + timeout)
  end

  defp poll(fun, deadline) do
    case fun.() do
      result when result not in [nil, false] ->
        result

      _ ->
        if System.monotonic_time(:millisecond) > deadline do
          ExUnit.Assertions.flunk("condition not reached in time")
        else
          Process.sleep(5)
          poll(fun, deadline)
        end
    end
  end
end
