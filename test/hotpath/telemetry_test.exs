defmodule Hotpath.TelemetryTest do
  # Not async: resets the module every event goes through.
  use ExUnit.Case, async: false

  test "module/0 looks for :telemetry once, at the first event, and keeps the answer" do
    on_exit(fn -> Hotpath.Telemetry.put_module(Hotpath.FakeTelemetry) end)
    Hotpath.Telemetry.put_module(:unknown)

    expected = if Code.ensure_loaded?(:telemetry), do: :telemetry, else: nil
    assert Hotpath.Telemetry.emit({[:hotpath, :test], %{}, %{}}) == :ok
    assert :persistent_term.get({Hotpath.Telemetry, :module}) == expected
    assert Hotpath.Telemetry.module() == expected
  end

  test "without a module nothing is emitted" do
    on_exit(fn -> Hotpath.Telemetry.put_module(Hotpath.FakeTelemetry) end)
    test = self()
    id = {__MODULE__, :nil_module}

    :ok =
      Hotpath.FakeTelemetry.attach(
        id,
        [:hotpath, :test],
        fn _, _, _, _ -> send(test, :got) end,
        nil
      )

    on_exit(fn -> Hotpath.FakeTelemetry.detach(id) end)

    Hotpath.Telemetry.put_module(nil)
    assert Hotpath.Telemetry.emit({[:hotpath, :test], %{}, %{}}) == :ok
    refute_received :got

    Hotpath.Telemetry.put_module(Hotpath.FakeTelemetry)
    assert Hotpath.Telemetry.emit({[:hotpath, :test], %{}, %{}}) == :ok
    assert_received :got
  end
end
