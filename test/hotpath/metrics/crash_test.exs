defmodule Hotpath.Metrics.CrashTest do
  # Issue 14, item 7: an owner crash loses nothing. The registry lives in native memory and
  # stays published while the owner restarts; the restarted owner takes it over.
  use ExUnit.Case, async: false

  alias Hotpath.{FakeTelemetry, Metrics}
  import Hotpath.Test.Eventually

  defp definitions do
    [
      # Recorded with record/4 (their event is never emitted).
      Metrics.counter("crash.direct.count", tags: [:worker]),
      Metrics.summary("crash.direct.time",
        tags: [:worker],
        reporter_options: [window: {60_000, 6}]
      ),
      Metrics.distribution("crash.direct.time",
        reporter_options: [buckets: [1, 10], prometheus_name: "crash_direct_time_dist"]
      ),
      # Recorded by the telemetry handler.
      Metrics.sum("crash.job.value"),
      Metrics.counter("crash.event.count")
    ]
  end

  defp start_supervised_instance(name, metrics \\ definitions()) do
    start_supervised!(%{
      id: {:metrics_sup, name},
      type: :supervisor,
      start:
        {Supervisor, :start_link,
         [
           [{Metrics, name: name, metrics: metrics}],
           [strategy: :one_for_one, max_restarts: 1_000, max_seconds: 1]
         ]}
    })
  end

  defp find(snapshot, name, kind), do: Enum.find(snapshot, &(&1.name == name and &1.kind == kind))

  test "record once, kill the owner: the series are still there" do
    name = :"crash_once_#{System.unique_integer([:positive])}"
    start_supervised_instance(name)
    :ok = Metrics.record(name, "crash.direct.count", nil, %{worker: "a"})
    owner = Process.whereis(name)
    Process.exit(owner, :kill)
    eventually(fn -> (pid = Process.whereis(name)) && pid != owner end)

    snap = Metrics.snapshot(name)

    assert [%{tags: %{worker: "a"}, value: 1}] =
             find(snap, [:crash, :direct, :count], :counter).series

    # The restarted owner republished the same registry: records keep adding up.
    :ok = Metrics.record(name, "crash.direct.count", nil, %{worker: "a"})

    assert [%{value: 2}] =
             find(Metrics.snapshot(name), [:crash, :direct, :count], :counter).series
  end

  @tag :capture_log
  test "an owner that crashes with an exception keeps the registry too; a clean stop removes it" do
    name = :"crash_raise_#{System.unique_integer([:positive])}"
    start_supervised_instance(name)
    :ok = Metrics.record(name, "crash.event.count", nil)
    owner = Process.whereis(name)
    GenServer.stop(owner, :boom)
    eventually(fn -> (pid = Process.whereis(name)) && pid != owner end)
    assert [%{value: 1}] = find(Metrics.snapshot(name), [:crash, :event, :count], :counter).series

    stop_supervised!({:metrics_sup, name})

    assert_raise Hotpath.NotRunningError, ~r/no Hotpath.Metrics named/, fn ->
      Metrics.record(name, "crash.event.count", nil)
    end

    assert FakeTelemetry.handler_ids([:crash]) == []
  end

  test "a restart with other definitions starts a new registry and detaches stale handlers" do
    name = :"crash_redefine_#{System.unique_integer([:positive])}"

    {:ok, pid} =
      GenServer.start(
        Hotpath.Metrics.Owner,
        Metrics.Spec.build!(name: name, metrics: definitions())
      )

    :ok = Metrics.record(name, "crash.event.count", nil)
    Process.exit(pid, :kill)

    {:ok, pid} =
      GenServer.start(
        Hotpath.Metrics.Owner,
        Metrics.Spec.build!(name: name, metrics: [Metrics.counter("crash.event.count")])
      )

    assert [%{series: []}] = Metrics.snapshot(name)
    assert FakeTelemetry.handler_ids([:crash]) == [{Metrics, name, [:crash, :event]}]
    GenServer.stop(pid)
    assert FakeTelemetry.handler_ids([:crash]) == []
  end

  test "8 recorders under load while the owner is killed every 50 ms for 3 s lose nothing" do
    name = :"crash_load_#{System.unique_integer([:positive])}"
    start_supervised_instance(name)
    parent = self()

    # Half the recorders call record/4, half emit telemetry events (the handler's path); each
    # counts its successful calls, and separately any call that raised.
    recorders =
      for i <- 1..8 do
        worker = "w#{rem(i, 2)}"

        spawn_link(fn ->
          send(parent, {:counted, self(), record_loop(name, i, worker, 0, 0)})
        end)
      end

    deadline = System.monotonic_time(:millisecond) + 3_000
    kills = kill_loop(name, deadline, 0)
    for pid <- recorders, do: send(pid, :stop)

    counts =
      for pid <- recorders do
        receive do
          {:counted, ^pid, counts} -> counts
        after
          30_000 -> flunk("recorder did not finish")
        end
      end

    assert kills >= 40
    assert Enum.all?(counts, fn {_ok, raised} -> raised == 0 end), inspect(counts)

    by_path = fn parity ->
      counts |> Enum.with_index(1) |> Enum.filter(fn {_, i} -> rem(i, 2) == parity end)
    end

    direct = by_path.(1) |> Enum.map(fn {{ok, _}, _} -> ok end) |> Enum.sum()
    emitted = by_path.(0) |> Enum.map(fn {{ok, _}, _} -> ok end) |> Enum.sum()
    assert direct > 0 and emitted > 0

    snap = Metrics.snapshot(name)

    counter = find(snap, [:crash, :direct, :count], :counter)
    assert Enum.sum(for s <- counter.series, do: s.value) == direct
    assert Enum.sort(for s <- counter.series, do: s.tags.worker) == ["w1"]

    sum = find(snap, [:crash, :job, :value], :sum)
    assert Enum.sum(for s <- sum.series, do: s.value) == emitted * 2.0

    summary = find(snap, [:crash, :direct, :time], :summary)
    assert Enum.sum(for s <- summary.series, do: s.count) == direct
    assert Enum.sum(for s <- summary.series, do: s.window.count) == direct
    assert Enum.sum(for s <- summary.series, do: s.sum) == direct * 3.0

    dist = find(snap, [:crash, :direct, :time], :distribution)
    assert [%{count: ^direct}] = dist.series

    events = find(snap, [:crash, :event, :count], :counter)
    assert [%{value: ^emitted}] = events.series
    assert Enum.all?(snap, &(&1.dropped == 0))
  end

  # Odd recorders record directly ("crash.direct.count" and "crash.direct.time"), even ones
  # emit [:crash, :job] and [:crash, :event] through the telemetry handler.
  defp record_loop(name, i, worker, ok, raised) do
    receive do
      :stop -> {ok, raised}
    after
      0 ->
        try do
          if rem(i, 2) == 1 do
            :ok = Metrics.record(name, "crash.direct.count", nil, %{worker: worker})
            :ok = Metrics.record(name, [:crash, :direct, :time], 3, %{worker: worker})
          else
            :ok = FakeTelemetry.execute([:crash, :job], %{value: 2}, %{worker: worker})
            :ok = FakeTelemetry.execute([:crash, :event], %{}, %{})
          end

          :ok
        rescue
          ArgumentError -> :raised
        end
        |> case do
          :ok -> record_loop(name, i, worker, ok + 1, raised)
          :raised -> record_loop(name, i, worker, ok, raised + 1)
        end
    end
  end

  # Kills the owner every 50 ms until the deadline has passed and at least 40 kills were
  # made (on a loaded machine the restarts take longer: the loop runs on, it does not kill less).
  defp kill_loop(name, deadline, kills) do
    if System.monotonic_time(:millisecond) >= deadline and kills >= 40 do
      kills
    else
      Process.sleep(50)

      case Process.whereis(name) do
        nil ->
          kill_loop(name, deadline, kills)

        pid ->
          Process.exit(pid, :kill)
          kill_loop(name, deadline, kills + 1)
      end
    end
  end
end
