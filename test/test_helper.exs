Hotpath.FakeTelemetry.start()
ExUnit.start()
