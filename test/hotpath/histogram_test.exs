defmodule Hotpath.HistogramTest do
  use ExUnit.Case, async: true

  alias Hotpath.Histogram

  doctest Hotpath.Histogram

  describe "new/1" do
    test "defaults meet 1% relative error over 1e-9..1e12" do
      info = Histogram.info(Histogram.new())
      assert info.relative_error <= 0.01
      assert info.floor <= 1.0e-9 and info.ceiling >= 1.0e12
      assert info.buckets == [] and info.window == nil and info.clock == :monotonic
    end

    test "bad options raise ArgumentError naming the valid choices" do
      for {opts, message} <- [
            {[bogus: 1], ~r/unknown options \[:bogus\], valid options are/},
            {[relative_error: "x"], ~r/relative_error must be a number/},
            {[relative_error: 0], ~r/relative_error must be a number between 0 and 1/},
            {[relative_error: 1.0e-9], ~r/relative_error must be at least/},
            {[floor: -1], ~r/floor must be a number >=/},
            {[ceiling: 1.0e-12], ~r/ceiling must be a number > floor/},
            {[floor: 1.0e-300, ceiling: 1.0e300, relative_error: 0.0002], ~r/buckets, more than/},
            {[buckets: [2, 1]], ~r/strictly increasing/},
            {[buckets: [1, 1]], ~r/strictly increasing/},
            {[buckets: [:a]], ~r/list of numbers/},
            {[buckets: 5], ~r/list of numbers/},
            {[buckets: Enum.to_list(1..1025)], ~r/at most 1024 bounds/},
            {[window: 60], ~r/window must be nil or \{span_ms, slots\}/},
            {[window: {60_001, 6}], ~r/divisible/},
            {[window: {0, 6}], ~r/window must be/},
            {[window: {3_600_000 * 2, 7200}], ~r/window slots must be between 1 and 3600/},
            {[shards: 0], ~r/shards must be :auto or an integer in 1..64/},
            {[clock: :wall], ~r/clock must be one of :monotonic, :manual/}
          ] do
        assert_raise ArgumentError, message, fn -> Histogram.new(opts) end
      end

      assert_raise ArgumentError, ~r/keyword list/, fn -> Histogram.new(:nope) end
      assert_raise ArgumentError, ~r/keyword list/, fn -> Histogram.new([1, 2]) end
    end
  end

  describe "record" do
    test "integers and floats, negatives and zero" do
      h = Histogram.new()
      for v <- [1, 2.5, -3, 0, 0.0, -0.0, 1.0e-20, 1.0e15], do: :ok = Histogram.record(h, v)
      assert Histogram.count(h) == 8
      assert Histogram.min(h) == -3.0
      assert Histogram.max(h) == 1.0e15
      assert Histogram.sum(h) == 1.0e15 + 0.5
      assert Histogram.snapshot(h).zero_count == 4
      assert Histogram.snapshot(h).overflow_count == 1
    end

    test "big integers are recorded as floats" do
      h = Histogram.new()
      Histogram.record(h, 2 ** 70)
      assert Histogram.max(h) == :math.pow(2, 70)
    end

    test "the sum is exact for sub-unit floats" do
      h = Histogram.new()
      for _ <- 1..100_000, do: Histogram.record(h, 0.1)
      assert Histogram.sum(h) == 10_000.0
      Histogram.record(h, 0.1, 900_000)
      assert Histogram.sum(h) == 100_000.0
    end

    test "bad inputs raise ArgumentError" do
      h = Histogram.new()

      for bad <- [nil, :a, "1", [1], {1}] do
        assert_raise ArgumentError, ~r/value must be an integer or a float/, fn ->
          Histogram.record(h, bad)
        end

        assert_raise ArgumentError, fn -> Histogram.record(h, bad, 1) end
      end

      assert_raise ArgumentError, ~r/too large/, fn -> Histogram.record(h, 10 ** 400) end

      for bad_count <- [0, -1, 2 ** 32, 2 ** 70, 1.5, :a] do
        assert_raise ArgumentError, ~r/count must be an integer between 1 and/, fn ->
          Histogram.record(h, 1, bad_count)
        end
      end

      for not_h <- [make_ref(), :h, nil, self(), Hotpath.Native.noop()] do
        assert_raise ArgumentError, ~r/expected a histogram/, fn -> Histogram.record(not_h, 1) end
        assert_raise ArgumentError, fn -> Histogram.record(not_h, 1, 2) end
        assert_raise ArgumentError, fn -> Histogram.count(not_h) end
        assert_raise ArgumentError, fn -> Histogram.reset(not_h) end
        assert_raise ArgumentError, fn -> Histogram.to_binary(not_h) end
        assert_raise ArgumentError, fn -> Histogram.memory(not_h) end
        assert_raise ArgumentError, fn -> Histogram.info(not_h) end
        assert_raise ArgumentError, fn -> Histogram.quantile(not_h, 0.5) end
        assert_raise ArgumentError, fn -> Histogram.snapshot(not_h) end
        assert_raise ArgumentError, fn -> Histogram.merge(not_h, h) end
        assert_raise ArgumentError, fn -> Histogram.merge(h, not_h) end
      end

      assert Histogram.count(h) == 0
    end
  end

  describe "reads" do
    test "empty histogram" do
      h = Histogram.new()
      assert {Histogram.count(h), Histogram.sum(h)} == {0, 0.0}
      assert {Histogram.min(h), Histogram.max(h), Histogram.mean(h)} == {nil, nil, nil}
      assert Histogram.quantile(h, 0.5) == nil
      assert Histogram.quantiles(h, [0.5]) == %{0.5 => nil}
    end

    test "quantile arguments are validated" do
      h = Histogram.new()

      for bad <- [-0.1, 1.1, :a, nil] do
        assert_raise ArgumentError, ~r/quantile must be a number between 0 and 1/, fn ->
          Histogram.quantile(h, bad)
        end

        assert_raise ArgumentError, fn -> Histogram.quantiles(h, [bad]) end
        assert_raise ArgumentError, fn -> Histogram.snapshot(h, quantiles: [bad]) end
      end

      assert_raise ArgumentError, ~r/quantiles must be a list/, fn ->
        Histogram.quantiles(h, Hotpath.Opaque.value(0.5))
      end

      assert_raise ArgumentError, ~r/view must be/, fn -> Histogram.count(h, view: :last) end

      assert_raise ArgumentError,
                   ~r/unknown options \[:quantiles\], valid options are: \[:view\]/,
                   fn ->
                     Histogram.count(h, quantiles: [0.5])
                   end

      assert_raise ArgumentError, ~r/unknown options \[:bogus\]/, fn ->
        Histogram.snapshot(h, bogus: 1)
      end

      assert_raise ArgumentError, ~r/needs a histogram created with window/, fn ->
        Histogram.count(h, view: :window)
      end

      assert_raise ArgumentError, ~r/keyword list/, fn ->
        Histogram.count(h, Hotpath.Opaque.value(:x))
      end
    end

    test "classic buckets have inclusive upper bounds" do
      h = Histogram.new(buckets: [0.005, 0.01, 1, 10])

      for v <- [0.005, 0.005, 0.01, 0.0100001, 1, 1.0, 10, 10.0000001, -1],
          do: Histogram.record(h, v)

      assert Histogram.snapshot(h).buckets ==
               [{0.005, 3}, {0.01, 1}, {1.0, 3}, {10.0, 1}, {:infinity, 1}]
    end

    test "large layouts are read on a dirty scheduler transparently" do
      h = Histogram.new(relative_error: 0.001, floor: 1.0e-300, ceiling: 1.0e300, shards: 64)
      Histogram.record(h, 1.0)
      assert Histogram.count(h) == 1
      assert {:ok, copy} = Histogram.from_binary(Histogram.to_binary(h))
      assert Histogram.count(copy) == 1
    end
  end

  describe "window" do
    test "slides with a manual clock" do
      h = Histogram.new(window: {60_000, 6}, clock: :manual)
      Histogram.record(h, 100)
      Histogram.advance(h, 30_000)
      Histogram.record(h, 1, 9)
      assert Histogram.count(h, view: :window) == 10
      assert Histogram.quantile(h, 1.0, view: :window) == 100.0
      Histogram.advance(h, 30_000)
      assert Histogram.count(h, view: :window) == 9
      assert Histogram.max(h, view: :window) == 1.0
      assert Histogram.count(h) == 10
      Histogram.advance(h, 60_000)
      assert Histogram.snapshot(h, view: :window).count == 0
    end

    test "advance needs a manual clock and a non-negative integer" do
      assert_raise ArgumentError, ~r/clock: :manual/, fn ->
        Histogram.advance(Histogram.new(window: {1000, 1}), 5)
      end

      assert_raise ArgumentError, fn -> Histogram.advance(Histogram.new(clock: :manual), -1) end
    end

    test "errors name a huge integer by its size instead of printing it" do
      h = Histogram.new()
      huge = Bitwise.bsl(1, 4_000_000)

      for call <- [
            fn -> Histogram.record(h, huge) end,
            fn -> Histogram.record(h, -huge) end,
            fn -> Histogram.quantile(h, huge) end,
            fn -> Histogram.advance(Histogram.new(clock: :manual), -huge) end,
            fn -> Histogram.new(shards: huge) end
          ] do
        # (In decimal, 1.2 million digits: minutes of a scheduler's time to print.)
        error = assert_raise ArgumentError, call
        assert Exception.message(error) =~ "an integer of 4000008 bits"
      end
    end

    test "advance stops at the end of time instead of wrapping to an earlier one" do
      h = Histogram.new(window: {1000, 2}, clock: :manual)
      max = 18_446_744_073_709_551_615
      assert Histogram.advance(h, max - 5_000) == max - 5_000
      Histogram.record(h, 5)
      assert Histogram.advance(h, 10_000) == max
      assert Histogram.advance(h, 0) == max
      Histogram.record(h, 9)
      assert Histogram.count(h, view: :window) == 1
      assert Histogram.count(h) == 2
    end
  end

  describe "merge, to_binary and from_binary" do
    test "roundtrip preserves every statistic" do
      h = Histogram.new(buckets: [1, 10])
      for v <- [0.5, 3, 3, 12, -7, 0], do: Histogram.record(h, v)
      {:ok, copy} = Histogram.from_binary(Histogram.to_binary(h))
      assert Histogram.snapshot(copy) == Histogram.snapshot(h)
      assert Histogram.to_binary(copy) == Histogram.to_binary(h)
    end

    test "merging a histogram or its binary adds everything" do
      a = Histogram.new()
      b = Histogram.new()
      Histogram.record(a, 1)
      Histogram.record(b, 2)
      assert :ok = Histogram.merge(a, b)
      assert :ok = Histogram.merge(a, Histogram.to_binary(b))
      assert {Histogram.count(a), Histogram.sum(a), Histogram.max(a)} == {3, 5.0, 2.0}
    end

    test "different layouts are refused" do
      a = Histogram.new()

      assert {:error, {:incompatible, message}} =
               Histogram.merge(a, Histogram.new(relative_error: 0.05))

      assert message =~ "different relative errors"
      assert {:error, {:incompatible, _}} = Histogram.merge(a, Histogram.new(floor: 1.0e-3))
    end

    test "garbage binaries are {:error, {:malformed, _}}, never a crash" do
      good = Histogram.to_binary(Histogram.new())

      for bad <-
            [<<>>, "garbage", <<"HPH", 2>>, good <> <<0>>, binary_part(good, 0, 10)] ++
              for(_ <- 1..200, do: :crypto.strong_rand_bytes(:rand.uniform(64))) ++
              for(i <- 0..(byte_size(good) - 1), do: flip(good, i)) do
        case Histogram.from_binary(bad) do
          {:ok, h} -> assert is_integer(Histogram.count(h))
          {:error, {:malformed, message}} -> assert is_binary(message)
        end

        assert match?(:ok, Histogram.merge(Histogram.new(), bad)) or
                 match?({:error, {_, _}}, Histogram.merge(Histogram.new(), bad))
      end

      assert {:error, {:malformed, _}} = Histogram.from_binary(<<"HPH", 9>>)
      assert_raise ArgumentError, fn -> Histogram.from_binary!("nope") end
      assert_raise ArgumentError, ~r/expects a binary/, fn -> Histogram.from_binary(:nope) end
    end
  end

  describe "issue 14" do
    test "an overflowing sum saturates at the largest float and every read still answers" do
      h = Histogram.new()
      Histogram.record(h, 1.0e308)
      Histogram.record(h, 1.0e308)
      assert Histogram.count(h) == 2
      assert Histogram.sum(h) == 1.7976931348623157e308
      assert Histogram.max(h) == 1.0e308
      assert is_float(Histogram.mean(h))
      assert %{count: 2, sum: 1.7976931348623157e308} = Histogram.snapshot(h)

      # A merge carries the saturated (finite) sum, never a poison.
      target = Histogram.new()
      assert :ok = Histogram.merge(target, h)
      assert :ok = Histogram.merge(target, Histogram.to_binary(h))
      assert Histogram.count(target) == 4
      assert Histogram.sum(target) == 1.7976931348623157e308

      assert {:ok, copy} = Histogram.from_binary(Histogram.to_binary(h))
      assert Histogram.sum(copy) == 1.7976931348623157e308

      neg = Histogram.new()
      Histogram.record(neg, -1.0e308, 10)
      assert Histogram.sum(neg) == -1.7976931348623157e308
    end

    test "from_binary refuses an encoding whose sum is not finite" do
      h = Histogram.new()
      Histogram.record(h, 1.0)
      Histogram.record(h, 2.0)
      good = Histogram.to_binary(h)
      three = <<3.0::float-little-64>>
      [{at, 8}] = :binary.matches(good, three)

      for inf <- [<<0, 0, 0, 0, 0, 0, 0xF0, 0x7F>>, <<0, 0, 0, 0, 0, 0, 0xF0, 0xFF>>],
          pos <- [at, at + 8] do
        bad =
          binary_part(good, 0, pos) <>
            inf <> binary_part(good, pos + 8, byte_size(good) - pos - 8)

        assert {:error, {:malformed, message}} = Histogram.from_binary(bad)
        assert message =~ "sum"
        assert {:error, {:malformed, _}} = Histogram.merge(Histogram.new(), bad)
      end
    end

    test "quantiles near the ends of the range stay within the relative error" do
      h = Histogram.new(ceiling: 1.0e300)
      for v <- [1.0e154, 2.0e154, 3.0e154], do: Histogram.record(h, v)
      median = Histogram.quantile(h, 0.5)
      assert abs(median - 2.0e154) / 2.0e154 <= Histogram.info(h).relative_error

      h = Histogram.new(floor: 1.0e-300)
      for v <- [1.0e-170, 2.0e-170, 3.0e-170], do: Histogram.record(h, v)
      median = Histogram.quantile(h, 0.5)
      assert abs(median - 2.0e-170) / 2.0e-170 <= Histogram.info(h).relative_error
    end

    test "non-keyword options and improper lists raise ArgumentError" do
      h = Histogram.new()
      Histogram.record(h, 1)

      for {fun, message} <- [
            {fn -> Histogram.snapshot(h, Hotpath.Opaque.value(:x)) end, ~r/keyword list/},
            {fn -> Histogram.snapshot(h, Hotpath.Opaque.value([:x])) end, ~r/keyword list/},
            {fn -> Histogram.snapshot(h, Hotpath.Opaque.value([{:view, :cumulative} | :x])) end,
             ~r/keyword list/},
            {fn -> Histogram.snapshot(h, quantiles: Hotpath.Opaque.value([0.5 | :x])) end,
             ~r/quantiles must be a list/},
            {fn -> Histogram.quantiles(h, Hotpath.Opaque.value([0.5 | 0.9])) end,
             ~r/quantiles must be a list/},
            {fn -> Histogram.count(h, Hotpath.Opaque.value([{:view, :cumulative} | :x])) end,
             ~r/keyword list/},
            {fn -> Histogram.new(Hotpath.Opaque.value([{:floor, 1.0} | :x])) end,
             ~r/keyword list/},
            {fn -> Histogram.new(buckets: Hotpath.Opaque.value([1, 2 | 3])) end,
             ~r/buckets must be a proper list/}
          ] do
        assert_raise ArgumentError, message, fun
      end
    end

    test "many quantiles at once and large creations answer through the dirty twins" do
      h = Histogram.new()
      for v <- 1..100, do: Histogram.record(h, v)
      qs = for i <- 0..10_000, do: i / 10_000
      result = Histogram.quantiles(h, qs)
      assert map_size(result) == 10_001
      assert result[1.0] == 100.0

      big = Histogram.new(shards: 64, window: {3_600_000, 3600}, buckets: Enum.to_list(1..1024))
      assert Histogram.info(big).shards == 64
    end

    test "a crafted maximum layout decodes into memory proportional to its size" do
      bin = crafted_max_layout(13_500)
      assert byte_size(bin) < 64 * 1024
      assert {:ok, h} = Histogram.from_binary(bin)
      assert Histogram.count(h) == 27_000
      # Before: 13.7 MiB of counter blocks.
      assert Histogram.memory(h).bytes <= 8 * byte_size(bin) + 65_536

      small = crafted_max_layout(100)
      assert byte_size(small) < 16_384
      assert {:ok, h} = Histogram.from_binary(small)
      assert Histogram.memory(h).bytes <= 8 * byte_size(small) + 65_536
    end
  end

  # The largest layout an encoding may name, with 1,024 classic bounds (test/support).
  defp crafted_max_layout(per_side),
    do: Hotpath.HistogramFixtures.max_layout(per_side, Enum.map(0..1023, &(&1 / 1)))

  test "reset and memory" do
    h = Histogram.new()
    before = Histogram.memory(h)
    for v <- 1..1000, do: Histogram.record(h, v)
    used = Histogram.memory(h)
    assert used.bytes > before.bytes and used.bytes <= used.max_bytes
    assert :ok = Histogram.reset(h)
    assert Histogram.count(h) == 0
  end

  test "exact totals from many processes recording concurrently" do
    h = Histogram.new(buckets: [10, 100])
    procs = System.schedulers_online() * 4

    1..procs
    |> Enum.map(fn p ->
      Task.async(fn -> for i <- 1..5_000, do: Histogram.record(h, rem(i, 200) + p) end)
    end)
    |> Task.await_many(60_000)

    s = Histogram.snapshot(h)
    assert s.count == procs * 5_000
    assert Enum.sum(for {_, c} <- s.buckets, do: c) == procs * 5_000

    expected = Enum.sum(for p <- 1..procs, i <- 1..5_000, do: rem(i, 200) + p)
    assert s.sum == expected / 1
    assert s.min == 1.0
  end

  describe "quantile error on 1M samples" do
    @n 1_000_000
    @qs [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999]

    for {name, gen} <- [
          uniform: quote(do: fn -> :rand.uniform() * 1000 end),
          log_normal: quote(do: fn -> :math.exp(:rand.normal(3.0, 2.0)) end),
          bimodal:
            quote(
              do: fn ->
                if :rand.uniform() < 0.7,
                  do: abs(:rand.normal(5, 1)),
                  else: abs(:rand.normal(500, 50))
              end
            ),
          constant: quote(do: fn -> 42.42 end),
          zero_heavy:
            quote(do: fn -> if :rand.uniform() < 0.8, do: 0.0, else: :rand.uniform() end)
        ] do
      test "#{name}" do
        :rand.seed(:exsss, {1, 2, 3})
        gen = unquote(gen)
        h = Histogram.new()
        values = for _ <- 1..@n, do: gen.()
        Enum.each(values, &Histogram.record(h, &1))
        sorted = values |> Enum.sort() |> List.to_tuple()
        estimates = Histogram.quantiles(h, @qs)
        bound = Histogram.info(h).relative_error

        for q <- @qs do
          exact = elem(sorted, max(ceil(q * @n), 1) - 1)
          error = abs(estimates[q] - exact)
          assert error <= bound * abs(exact) + 1.0e-9, "q=#{q} exact=#{exact} got=#{estimates[q]}"
        end
      end
    end
  end

  defp flip(bin, i) do
    flipped = Bitwise.bxor(:binary.at(bin, i), 0xFF)
    binary_part(bin, 0, i) <> <<flipped>> <> binary_part(bin, i + 1, byte_size(bin) - i - 1)
  end
end
