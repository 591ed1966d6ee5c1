Hotpath.FakeTelemetry.start()

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
