defmodule Hotpath.Test.Eventually do
  @moduledoc false
  # Waiting on a condition in tests: for convergence (a restarted process, a membership
  # view), never to make time pass.

  @doc """
  Polls `fun` every 5 ms until it returns a truthy value (returned) or `timeout` ms pass
  (the test fails). Options: `:every` (ms between polls) and `:failure` (a function giving
  the failure message, for context read only when it fails).
  """
  def eventually(fun, timeout \\ 5_000, opts \\ []) do
    every = Keyword.get(opts, :every, 5)
    failure = Keyword.get(opts, :failure, fn -> "condition not reached in time" end)
    poll(fun, System.monotonic_time(:millisecond) + timeout, every, failure)
  end

  defp poll(fun, deadline, every, failure) do
    case fun.() do
      result when result not in [nil, false] ->
        result

      _ ->
        if System.monotonic_time(:millisecond) > deadline do
          ExUnit.Assertions.flunk(failure.())
        else
          Process.sleep(every)
          poll(fun, deadline, every, failure)
        end
    end
  end
end
