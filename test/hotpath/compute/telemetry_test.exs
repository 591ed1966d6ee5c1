defmodule Hotpath.Compute.TelemetryTest do
  use ExUnit.Case, async: true

  alias Hotpath.Compute.Telemetry

  doctest Telemetry

  test "start events carry saturation and queue sizes" do
    {name, m, meta} =
      Telemetry.event(:start, %{
        pool: P,
        system_time: 1,
        monotonic_time: 10,
        queue_time: 3,
        running: 1,
        queued: 4,
        max_concurrency: 2,
        max_queue: 9
      })

    assert name == [:hotpath, :compute, :job, :start]

    assert m == %{
             system_time: 1,
             monotonic_time: 10,
             queue_time: 3,
             running: 1,
             queued: 4,
             saturation: 0.5
           }

    assert meta == %{pool: P, max_concurrency: 2, max_queue: 9}
  end

  test "stop and exception events carry durations" do
    data = %{pool: P, monotonic_time: 50, started_at: 20, queue_time: 5}

    assert Telemetry.event(:stop, Map.put(data, :result, {:ok, 1})) ==
             {[:hotpath, :compute, :job, :stop],
              %{duration: 30, queue_time: 5, monotonic_time: 50},
              %{pool: P, status: :ok, error: nil}}

    assert {_, _, %{status: :error, error: :why}} =
             Telemetry.event(:stop, Map.put(data, :result, {:error, :why}))

    assert Telemetry.event(:exception, Map.merge(data, %{kind: :panic, reason: "m"})) ==
             {[:hotpath, :compute, :job, :exception],
              %{duration: 30, queue_time: 5, monotonic_time: 50},
              %{pool: P, kind: :panic, reason: "m"}}
  end

  test "emit/3 without a telemetry module does nothing; a failing module never raises" do
    assert Telemetry.emit(nil, :overloaded, %{}) == :ok
    defmodule Raising, do: def(execute(_, _, _), do: raise("handler bug"))
    data = %{pool: P, running: 1, queued: 1, max_concurrency: 1, max_queue: 1}
    assert Telemetry.emit(Raising, :overloaded, data) == :ok
  end

  test "the default module is :telemetry only when it is loaded" do
    expected = if Code.ensure_loaded?(:telemetry), do: :telemetry, else: nil
    assert Telemetry.default_module() == expected
  end
end
