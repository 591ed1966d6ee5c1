defmodule Hotpath.HistogramFixtures do
  @moduledoc false
  # Hand-made histogram encodings (the wire format of Hotpath.Histogram.to_binary/1) for the
  # tests of hostile and maximum-size input.

  @doc """
  An encoding of the largest layout one may name: 12 sub-bucket bits, 2^20 buckets per sign,
  the given classic `bounds` (floats), and `per_side` sparse entries per sign, one per
  64-counter block, each counting 1.
  """
  def max_layout(per_side, bounds) do
    key_min = Bitwise.bsr(0x0010_0000_0000_0000 - 1, 40)
    nbounds = length(bounds)
    encoded_bounds = for b <- bounds, into: <<>>, do: <<b::float-little-64>>
    entries = for i <- 0..(per_side - 1), into: <<>>, do: <<if(i == 0, do: 0, else: 63), 1>>
    total = 2 * per_side

    "HPH" <>
      <<1, 12>> <>
      varint(key_min) <>
      varint(Bitwise.bsl(1, 20) - 1) <>
      varint(nbounds) <>
      encoded_bounds <>
      <<0, 0, 0>> <>
      <<total / 1::float-little-64, 0.0::float-little-64, 1.0::float-little-64,
        1.0::float-little-64>> <>
      varint(per_side) <>
      entries <> varint(per_side) <> entries <> varint(total) <> :binary.copy(<<0>>, nbounds)
  end

  @doc "The format's unsigned LEB128 varint."
  def varint(v) when v < 128, do: <<v>>
  def varint(v), do: <<Bitwise.bor(Bitwise.band(v, 0x7F), 0x80)>> <> varint(Bitwise.bsr(v, 7))
end
