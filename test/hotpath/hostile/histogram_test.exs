defmodule Hotpath.Hostile.HistogramTest do
  # Issue 14: generated hostile terms (bignums, ±0.0, ±1.0e308, binaries, improper lists,
  # tuples, maps, pids, refs, funs) fed to every public Hotpath.Histogram function. Each call
  # answers a documented value, `{:error, _}` or raises ArgumentError; nothing else.
  use ExUnit.Case, async: true

  alias Hotpath.Histogram

  @compile {:no_warn_undefined, [:proper, :proper_types]}
  no_proper = if Code.ensure_loaded?(:proper), do: false, else: "PropEr is not available"
  @moduletag skip: no_proper

  defp check(property, n \\ 300) do
    result = :proper.quickcheck(property, [{:numtests, n}, :quiet])
    assert result == true, "counterexample: #{inspect(:proper.counterexample())}"
  end

  defp t, do: :proper_types

  defp scalar do
    t().union([
      t().integer(),
      t().integer(-(2 ** 70), 2 ** 70),
      t().exactly(2 ** 1100),
      t().exactly(-(2 ** 1100)),
      t().float(),
      t().exactly(0.0),
      t().exactly(-0.0),
      t().exactly(1.0e308),
      t().exactly(-1.0e308),
      t().exactly(1.7976931348623157e308),
      t().exactly(5.0e-324),
      t().exactly(0.5),
      t().exactly(1),
      t().atom(),
      t().exactly(nil),
      t().exactly(:cumulative),
      t().exactly(:window),
      t().binary(),
      t().exactly(self()),
      t().exactly(make_ref()),
      t().exactly(&Function.identity/1)
    ])
  end

  defp hostile do
    t().union([
      scalar(),
      t().list(scalar()),
      t().bind(t().list(scalar()), fn l -> l ++ :tail end, false),
      t().bind(t().list(scalar()), &List.to_tuple/1, false),
      t().bind(t().list(t().tuple([scalar(), scalar()])), &Map.new/1, false),
      t().tuple([scalar(), scalar()]),
      options()
    ])
  end

  @keys [:relative_error, :floor, :ceiling, :buckets, :window, :shards, :clock, :view, :quantiles]

  # Keyword lists with the real keys and hostile values, sometimes improper.
  defp options do
    pair =
      t().tuple([
        t().oneof(Enum.map(@keys, &:proper_types.exactly/1)),
        t().union([scalar(), t().list(scalar()), t().tuple([scalar(), scalar()])])
      ])

    t().union([t().list(pair), t().bind(t().list(pair), fn l -> l ++ :x end, false)])
  end

  defp ok_or_argument_error(fun) do
    try do
      fun.()
      true
    rescue
      ArgumentError -> true
    end
  end

  defp histograms do
    h = Histogram.new(window: {1_000, 2}, clock: :manual, buckets: [1, 10])
    Histogram.record(h, 1.0e308)
    Histogram.record(h, 1.0e308)
    Histogram.record(h, -3)
    [h, Histogram.new()]
  end

  # Every public function with one hostile argument in each position; a good histogram in
  # the others.
  defp calls(x, h) do
    [
      fn -> Histogram.new(x) end,
      fn -> Histogram.record(h, x) end,
      fn -> Histogram.record(x, 1.0) end,
      fn -> Histogram.record(h, x, 2) end,
      fn -> Histogram.record(h, 1.0, x) end,
      fn -> Histogram.count(x) end,
      fn -> Histogram.count(h, x) end,
      fn -> Histogram.sum(h, x) end,
      fn -> Histogram.min(h, x) end,
      fn -> Histogram.max(h, x) end,
      fn -> Histogram.mean(h, x) end,
      fn -> Histogram.quantile(h, x) end,
      fn -> Histogram.quantile(x, 0.5) end,
      fn -> Histogram.quantile(h, 0.5, x) end,
      fn -> Histogram.quantiles(h, x) end,
      fn -> Histogram.quantiles(h, [0.5], x) end,
      fn -> Histogram.snapshot(h, x) end,
      fn -> Histogram.snapshot(x) end,
      fn -> Histogram.reset(x) end,
      fn -> Histogram.merge(h, x) end,
      fn -> Histogram.merge(x, h) end,
      fn -> Histogram.to_binary(x) end,
      fn -> Histogram.from_binary(x) end,
      fn -> Histogram.from_binary!(x) end,
      fn -> Histogram.memory(x) end,
      fn -> Histogram.info(x) end,
      fn -> Histogram.advance(h, x) end,
      fn -> Histogram.advance(x, 1) end
    ]
  end

  test "every public function answers hostile terms with a value, {:error, _} or ArgumentError" do
    hs = histograms()

    check(
      :proper.forall(hostile(), fn x ->
        x = Hotpath.Opaque.value(x)

        Enum.all?(hs, fn h ->
          Enum.all?(calls(x, h), &ok_or_argument_error/1) and reads_are_sane(h)
        end)
      end)
    )
  end

  test "what a read answers is documented: finite floats, integers, nil" do
    for h <- histograms() do
      assert reads_are_sane(h)
      s = Histogram.snapshot(h, quantiles: [0.0, 0.5, 1.0])
      assert is_integer(s.count) and is_float(s.sum)
      assert Enum.all?(Map.values(s.quantiles), &(is_nil(&1) or is_float(&1)))
    end
  end

  test "hostile binaries: random, truncated, bit-flipped, crafted maximum layouts" do
    good = fn ->
      h = Histogram.new(buckets: [1, 10])
      for v <- [0.5, 3, 1.0e308, 1.0e308, -7, 0], do: Histogram.record(h, v)
      Histogram.to_binary(h)
    end

    bases = [good.(), crafted_max_layout(200)]

    bin =
      t().union([
        t().binary(),
        t().bind(t().binary(), &("HPH" <> <<1>> <> &1), false),
        t().bind(
          t().tuple([
            t().oneof(Enum.map(bases, &:proper_types.exactly/1)),
            t().list(t().tuple([t().non_neg_integer(), t().integer(0, 255)])),
            t().non_neg_integer()
          ]),
          fn {b, flips, cut} ->
            flipped =
              Enum.reduce(flips, b, fn {at, byte}, acc ->
                i = rem(at, byte_size(acc))
                old = :binary.at(acc, i)

                binary_part(acc, 0, i) <>
                  <<Bitwise.bxor(old, byte)>> <> binary_part(acc, i + 1, byte_size(acc) - i - 1)
              end)

            binary_part(flipped, 0, byte_size(flipped) - rem(cut, byte_size(flipped) + 1))
          end,
          false
        )
      ])

    check(
      :proper.forall(bin, fn b ->
        case Histogram.from_binary(b) do
          {:ok, h} ->
            reads_are_sane(h) and Histogram.memory(h).bytes <= 8 * byte_size(b) + 65_536

          {:error, {:malformed, message}} ->
            is_binary(message)
        end and
          match?(r when r == :ok or elem(r, 0) == :error, Histogram.merge(Histogram.new(), b))
      end),
      500
    )
  end

  # The largest layout an encoding may name, with 1,024 classic bounds (test/support).
  defp crafted_max_layout(per_side),
    do: Hotpath.HistogramFixtures.max_layout(per_side, Enum.map(0..1023, &(&1 / 1)))

  defp reads_are_sane(h) do
    s = Histogram.snapshot(h)

    is_integer(s.count) and is_float(s.sum) and (is_nil(s.mean) or is_float(s.mean)) and
      (is_nil(s.min) or is_float(s.min)) and is_integer(Histogram.count(h))
  end
end
