defmodule Hotpath.Compute.EventsTest do
  use ExUnit.Case, async: true

  alias Hotpath.Compute.Events

  doctest Events

  test "start events carry saturation and queue sizes" do
    {name, m, meta} =
      Events.event(:start, %{
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

    assert Events.event(:stop, Map.put(data, :result, {:ok, 1})) ==
             {[:hotpath, :compute, :job, :stop],
              %{duration: 30, queue_time: 5, monotonic_time: 50},
              %{pool: P, status: :ok, error: nil}}

    assert {_, _, %{status: :error, error: :why}} =
             Events.event(:stop, Map.put(data, :result, {:error, :why}))

    assert Events.event(:exception, Map.merge(data, %{kind: :panic, reason: "m"})) ==
             {[:hotpath, :compute, :job, :exception],
              %{duration: 30, queue_time: 5, monotonic_time: 50},
              %{pool: P, kind: :panic, reason: "m"}}
  end

  test "events go through the module Hotpath.Telemetry found, once; a failing one never raises" do
    # test_helper.exs set the stand-in (Hotpath.FakeTelemetry): the seam is kept as it is.
    assert Hotpath.Telemetry.module() == Hotpath.FakeTelemetry
    data = %{pool: P, running: 1, queued: 1, max_concurrency: 1, max_queue: 1}
    assert Events.emit(:overloaded, data) == :ok

    id = {__MODULE__, :raising}
    handler = fn _, _, _, _ -> raise "handler bug" end
    :ok = Hotpath.FakeTelemetry.attach(id, [:hotpath, :compute, :pool, :overloaded], handler, nil)
    assert Events.emit(:overloaded, data) == :ok
    Hotpath.FakeTelemetry.detach(id)
  end
end
