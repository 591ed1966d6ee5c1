defmodule Hotpath.HistogramPropertyTest do
  # Properties of the Elixir API through PropEr (Debian erlang-proper); the core's own
  # properties are proptests in native/hotpath_core.
  use ExUnit.Case, async: true

  alias Hotpath.Histogram

  # test_helper.exs puts PropEr on the code path (and insists on it in CI).
  @compile {:no_warn_undefined, [:proper, :proper_types]}
  no_proper = if Code.ensure_loaded?(:proper), do: false, else: "PropEr is not available"
  @moduletag skip: no_proper

  # Multiples of 1/64 in a small range: every partial sum is exact, so sums compare exactly.
  defp value_type do
    :proper_types.union([
      :proper_types.integer(-100_000, 100_000),
      :proper_types.bind(:proper_types.integer(-6_400_000, 6_400_000), &(&1 / 64), false)
    ])
  end

  defp check(property) do
    result = :proper.quickcheck(property, [{:numtests, 100}, :quiet])
    assert result == true, "counterexample: #{inspect(:proper.counterexample())}"
  end

  defp histogram_of(values) do
    h = Histogram.new(buckets: [-10, 0, 10, 1000])
    Enum.each(values, &Histogram.record(h, &1))
    h
  end

  test "merge equals recording everything into one histogram" do
    list = :proper_types.list(value_type())

    check(
      :proper.forall({list, list}, fn {a, b} ->
        merged = histogram_of(a)
        :ok = Histogram.merge(merged, histogram_of(b))
        Histogram.snapshot(merged) == Histogram.snapshot(histogram_of(a ++ b))
      end)
    )
  end

  test "from_binary(to_binary(h)) has the same statistics" do
    check(
      :proper.forall(:proper_types.list(value_type()), fn values ->
        h = histogram_of(values)
        {:ok, copy} = Histogram.from_binary(Histogram.to_binary(h))

        Histogram.snapshot(copy) == Histogram.snapshot(h) and
          Histogram.to_binary(copy) == Histogram.to_binary(h)
      end)
    )
  end

  test "count, min and max are exact; quantiles within the relative error" do
    check(
      :proper.forall(:proper_types.non_empty(:proper_types.list(value_type())), fn values ->
        h = histogram_of(values)
        sorted = Enum.sort(values)
        n = length(values)
        bound = Histogram.info(h).relative_error

        Histogram.count(h) == n and Histogram.min(h) == hd(sorted) / 1 and
          Histogram.max(h) == List.last(sorted) / 1 and
          Enum.all?([0.1, 0.5, 0.9, 0.99], fn q ->
            exact = Enum.at(sorted, max(ceil(q * n), 1) - 1)
            abs(Histogram.quantile(h, q) - exact) <= bound * abs(exact) + 1.0e-6
          end)
      end)
    )
  end
end
