Hotpath.FakeTelemetry.start()

# The cluster tests (tag :cluster) run real peer nodes: this VM must be a distributed node.
exclude =
  case Hotpath.ClusterCase.start_distribution() do
    :ok ->
      []

    {:error, reason} ->
      IO.puts(:stderr, "\n[hotpath] skipping the :cluster tests: #{reason}\n")
      [:cluster]
  end

ExUnit.start(exclude: exclude)
