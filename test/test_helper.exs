# PropEr (Debian's erlang-proper) lives in the OTP lib directory, and Mix 1.15+ prunes every
# OTP application a project does not list: put it back on the code path before the property
# tests compile. Without it they are skipped with the reason, except in CI, where they must run.
proper =
  cond do
    Code.ensure_loaded?(:proper) ->
      :ok

    function_exported?(Mix, :ensure_application!, 1) ->
      try do
        Mix.ensure_application!(:proper)
        if Code.ensure_loaded?(:proper), do: :ok, else: {:error, "PropEr did not load"}
      rescue
        error -> {:error, Exception.message(error)}
      end

    true ->
      {:error, "PropEr (Debian package erlang-proper) is not installed"}
  end

case {proper, System.get_env("CI")} do
  {:ok, _} ->
    :ok

  {{:error, reason}, "true"} ->
    raise "the property tests need PropEr in CI: #{reason}"

  {{:error, reason}, _} ->
    IO.puts(:stderr, "\n[hotpath] skipping the property tests: #{reason}\n")
end

# :telemetry cannot be installed here: every event goes through its stand-in (the one test
# seam of Hotpath.Telemetry), which keeps :telemetry's handler contract.
Hotpath.FakeTelemetry.start()
Hotpath.Telemetry.put_module(Hotpath.FakeTelemetry)

# The end-to-end browser test runs with `make e2e` (mix test --only e2e). The cluster tests
# (tag :cluster) run real peer nodes: this VM must be a distributed node.
exclude =
  case Hotpath.ClusterCase.start_distribution() do
    :ok ->
      [:e2e]

    {:error, reason} ->
      IO.puts(:stderr, "\n[hotpath] skipping the :cluster tests: #{reason}\n")
      [:e2e, :cluster]
  end

ExUnit.start(exclude: exclude)
