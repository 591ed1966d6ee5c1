defmodule Hotpath.SchedulerFairness.HistogramTest do
  # Issue 14 item 9: every histogram NIF that runs on a normal scheduler, called in a loop with
  # the largest input it accepts there, holds its scheduler under the fairness bound (scheduling
  # trace events, Hotpath.SchedulerTrace). Larger inputs go to the dirty twins, which do not
  # count. reset/1, merge/2 and info/1 (memory/1) always run on dirty schedulers.
  use ExUnit.Case, async: false

  alias Hotpath.{Histogram, Native, SchedulerTrace}

  @bounds Enum.to_list(1..1024)
  # The widest layout read on a normal scheduler with one shard: 12 sub-bucket bits (4,096
  # buckets per octave) over ~7.6 octaves, about 31,000 buckets per sign, 1,024 classic bounds.
  @wide [relative_error: 0.0002, floor: 1.0, ceiling: 200.0, shards: 1, buckets: @bounds]
  @qs for i <- 1..256, do: i / 256

  defp assert_fair(fun, opts) do
    %{longest_us: us, longest: ends} = SchedulerTrace.longest_stretch(fun, opts)
    assert us < SchedulerTrace.limit_us(), "held a normal scheduler #{us} µs (#{inspect(ends)})"
  end

  # As many buckets hold a count as a normal-scheduler read walks (allocated 64-counter blocks
  # count, not the layout's size): filled block by block until the next block would send the
  # read to the dirty twin.
  defp full_wide do
    blocks =
      Stream.iterate(1.0, &(&1 * (1 + 1 / 4096)))
      |> Stream.take_while(&(&1 <= 200.0))
      |> Stream.chunk_every(64)

    probe = Histogram.new(@wide)

    fit =
      Enum.reduce_while(blocks, 0, fn block, n ->
        Enum.each(block, &Histogram.record(probe, &1))

        if Native.histogram_read(probe, :cumulative, []) == :dirty,
          do: {:halt, n},
          else: {:cont, n + 1}
      end)

    h = Histogram.new(@wide)

    blocks
    |> Enum.take(fit)
    |> Enum.each(fn block -> Enum.each(block, &Histogram.record(h, &1)) end)

    true = Native.histogram_read(h, :cumulative, []) != :dirty
    h
  end

  # The largest binary from_binary decodes on a normal scheduler (8 KiB): the maximum layout
  # (12 sub-bucket bits, 2^20 buckets per sign) with 512 classic bounds and as many sparse
  # entries as fit.
  defp crafted_8k do
    nbounds = 512
    per_side = div(8_192 - nbounds * 8 - nbounds - 80, 4)
    bin = Hotpath.HistogramFixtures.max_layout(per_side, Enum.map(1..nbounds, &(&1 / 1)))

    true = byte_size(bin) <= 8_192 and byte_size(bin) > 7_000
    bin
  end

  test "new/1 at the largest normal-scheduler size, and the largest options through new/1" do
    # (slots + 1) * (shards + 1) = 7 * 17 = 119: the normal path's limit is 128. Each call
    # collects the caller's garbage, so the stretch holds one allocation and one free. (A
    # process that drops thousands of histograms frees them all in one garbage collection,
    # ~0.5 µs each: the VM's collection, at the size of what was dropped, not this NIF's call.)
    normal = [shards: 16, window: {6_000, 6}, buckets: @bounds]
    assert is_reference(Native.histogram_new(opts_map(normal)))

    assert_fair(
      fn opts ->
        Native.histogram_new(opts)
        :erlang.garbage_collect()
      end,
      setup: fn -> opts_map(normal) end
    )

    largest = [
      relative_error: 0.0002,
      floor: 1.0e-300,
      ceiling: 1.0e-280,
      shards: 64,
      window: {3_600_000, 3600},
      buckets: @bounds
    ]

    assert_fair(fn _ -> Histogram.new(largest) end, ms: 100)
  end

  test "record/2 and record/3 into the largest layout with a window and 1,024 bounds" do
    setup = fn ->
      Histogram.new(
        relative_error: 0.0002,
        floor: 1.0e-300,
        ceiling: 1.0e-280,
        buckets: @bounds,
        window: {2, 2}
      )
    end

    assert_fair(fn h -> for v <- [1.0e-290, 512.5, -3.0, 1.0e308], do: Histogram.record(h, v) end,
      setup: setup
    )

    assert_fair(fn h -> Histogram.record(h, 1.0e308, 4_294_967_295) end, setup: setup)
  end

  test "reads (count, quantiles, snapshot) of the widest normal-scheduler histogram" do
    h = full_wide()
    assert Native.histogram_read(h, :cumulative, @qs) != :dirty
    assert_fair(fn h -> Histogram.quantiles(h, @qs) end, setup: fn -> h end)
    assert_fair(fn h -> Histogram.snapshot(h, quantiles: @qs) end, setup: fn -> h end)
    assert_fair(fn h -> Histogram.count(h) end, setup: fn -> h end)

    # Beyond the normal path's quantile limit the read is dirty. (Not traced: the caller's own
    # garbage collection of 100k quantiles and their answers takes milliseconds in one
    # stretch, which is the caller's work, not the NIF's.)
    many = for i <- 0..100_000, do: i / 100_000
    assert Native.histogram_read(h, :cumulative, many) == :dirty
  end

  test "to_binary/1 of the widest normal-scheduler histogram" do
    h = full_wide()
    assert is_binary(Native.histogram_to_binary(h))
    assert_fair(fn h -> Histogram.to_binary(h) end, setup: fn -> h end)
  end

  test "from_binary/1 of the largest binary it decodes on a normal scheduler" do
    bin = crafted_8k()
    assert {:ok, _} = Native.histogram_from_binary(bin)

    assert Native.histogram_from_binary(bin <> :binary.copy(<<0>>, 8_193 - byte_size(bin))) ==
             :dirty

    assert_fair(fn bin -> Histogram.from_binary(bin) end, setup: fn -> bin end)

    # And the widest histogram's own encoding, normal or dirty by its size.
    wide = Histogram.to_binary(full_wide())
    assert_fair(fn bin -> {:ok, _} = Histogram.from_binary(bin) end, setup: fn -> wide end)
  end

  test "advance/2" do
    assert_fair(fn h -> Histogram.advance(h, 1) end,
      setup: fn -> Histogram.new(window: {1_000, 10}, clock: :manual) end
    )
  end

  defp opts_map(opts) do
    %{
      relative_error: 0.01,
      floor: 1.0e-9,
      ceiling: 1.0e12,
      buckets: Enum.map(Keyword.get(opts, :buckets, []), &(&1 / 1)),
      window: Keyword.get(opts, :window),
      shards: Keyword.get(opts, :shards),
      manual_clock: false
    }
  end
end
