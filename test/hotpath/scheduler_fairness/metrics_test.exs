defmodule Hotpath.SchedulerFairness.MetricsTest do
  # Issue 14, item 9: no Hotpath.Metrics NIF on a normal scheduler holds it for more than about
  # 1 ms, with the largest input it accepts (32 tags of 4096-byte values, the limits) and with
  # inputs it refuses (a 1 MiB tag, a 10k-atom name). Reads run on dirty schedulers: their
  # Elixir part must stay preemptible too.
  use ExUnit.Case, async: false

  alias Hotpath.{Metrics, Native, SchedulerTrace}

  @tags Enum.map(1..32, &:"t#{&1}")

  setup_all do
    name = :fairness_metrics

    {:ok, owner} =
      Metrics.start_link(
        name: name,
        telemetry: false,
        metrics: [
          Metrics.summary("fair.wide.time", tags: @tags, reporter_options: [max_series: 50]),
          Metrics.counter("fair.wide.count", tags: @tags, reporter_options: [max_series: 50]),
          Metrics.distribution("fair.many.time", tags: [:k]),
          Metrics.counter("fair.many.count", tags: [:k])
        ]
      )

    Process.unlink(owner)

    for i <- 1..2_000 do
      :ok = Metrics.record(name, "fair.many.time", i, %{k: i})
      :ok = Metrics.record(name, "fair.many.count", nil, %{k: i})
    end

    on_exit(fn -> GenServer.stop(owner) end)
    %{name: name}
  end

  # The widest tags accepted: every value at the limit, the first one varying so calls keep
  # creating series (up to the cap, then the overflow series) instead of finding one.
  defp widest do
    value = :binary.copy("v", 4096)
    base = Map.new(@tags, &{&1, value})
    fn i -> Map.put(base, :t1, binary_part("#{i}" <> value, 0, 4096)) end
  end

  defp assert_fair(fun, setup) do
    %{longest_us: us, calls: calls} = SchedulerTrace.longest_stretch(fun, setup: setup)
    assert calls > 0
    assert us < SchedulerTrace.limit_us(), "held a normal scheduler for #{us} µs"
  end

  test "record/4 with the largest tags it accepts", %{name: name} do
    assert_fair(
      fn tags_of ->
        i = :erlang.unique_integer([:positive])
        :ok = Metrics.record(name, "fair.wide.time", i, tags_of.(i))
        :ok = Metrics.record(name, "fair.wide.count", nil, tags_of.(i))
      end,
      &widest/0
    )
  end

  test "handle/3 with the largest tags it accepts", %{name: name} do
    assert_fair(
      fn tags_of ->
        h = Metrics.handle(name, "fair.wide.time", tags_of.(:erlang.unique_integer()))
        :ok = Metrics.record_handle(h, 1)
      end,
      &widest/0
    )
  end

  test "refused inputs are refused quickly: a 1 MiB tag, a long name list", %{name: name} do
    assert_fair(
      fn {big, long_name} ->
        assert_raise ArgumentError, fn ->
          Metrics.record(name, "fair.many.count", nil, %{k: big})
        end

        assert_raise ArgumentError, fn -> Metrics.handle(name, "fair.many.count", %{k: big}) end
        assert_raise ArgumentError, fn -> Metrics.record(name, long_name, 1) end
      end,
      fn -> {:binary.copy("x", 1_048_576), List.duplicate(:fair, 10_000)} end
    )
  end

  # The reads run on dirty schedulers. prometheus/1 answers one binary (off the caller's heap),
  # so it is fair end to end. snapshot/1 answers a term of the instance's size (about 300k
  # words for these 4,000 series), built in Elixir from the native read: the caller's garbage
  # collection that copies a live term that large is one stretch of a few ms (4.3 ms measured
  # here), whatever code holds it, so only its native read is traced.
  test "snapshot/1 and prometheus/1 of a large instance", %{name: name} do
    no_setup = fn -> nil end

    assert_fair(
      fn _ -> <<_, _::binary>> = IO.iodata_to_binary(Metrics.prometheus(name)) end,
      no_setup
    )

    assert_fair(
      fn _ -> [_ | _] = Native.metrics_snapshot(Metrics.Instance.registry!(name)) end,
      no_setup
    )

    assert Enum.any?(Metrics.snapshot(name), &(length(&1.series) == 2_000))
  end
end
