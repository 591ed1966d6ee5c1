Hotpath.FakeTelemetry.start()
# The end-to-end browser test runs with `make e2e` (mix test --only e2e).
ExUnit.start(exclude: [:e2e])
