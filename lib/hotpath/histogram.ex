defmodule Hotpath.Histogram do
  @moduledoc """
  A native, concurrent histogram with bounded relative error.

  A histogram is a reference to native memory (like `:counters` or `:atomics` references): it
  is shared by every process that holds it and freed when no process refers to it any more.
  Any number of processes record into it at once without a lock; counts are exact.

      iex> h = Hotpath.Histogram.new()
      iex> for v <- 1..1000, do: Hotpath.Histogram.record(h, v)
      iex> Hotpath.Histogram.count(h)
      1000
      iex> Hotpath.Histogram.sum(h)
      500500.0
      iex> p99 = Hotpath.Histogram.quantile(h, 0.99)
      iex> abs(p99 - 990) / 990 <= 0.01
      true

  ## How values are counted

  Values go to log-linear buckets read from the bits of the float (no logarithm is computed):
  each power of two is split into equal-width buckets, enough of them to keep every quantile
  estimate within `:relative_error` of the exact value (nearest rank). Buckets are
  upper-inclusive. Magnitudes below `:floor` count as zero; magnitudes above `:ceiling` count in
  an overflow bucket (their quantiles report the exact `max`/`min`). Negative values have
  their own buckets. The lowest and highest ranks (`quantile(h, 0)` and `quantile(h, 1)`) are
  the exact min and max.

  The sum is a compensated (Neumaier) float sum, correctly rounded: a million records of `0.1`
  sum to exactly `100000.0`. It saturates: an addition that would overflow the float range
  stops at `±1.7976931348623157e308` (the BEAM has no infinite floats), so every read answers
  finite numbers (`1.0e308` recorded twice sums to `1.7976931348623157e308`; recording
  `-1.0e308` after that subtracts from it). Memory is allocated per octave actually seen and is bounded by the
  options; see `memory/1`.

  ## Classic buckets

  With `buckets: [0.1, 0.5, 1]` every value is also counted in the first bucket whose upper
  bound is greater than or equal to it, exactly as Prometheus `le` means: a value equal to a
  bound belongs to that bound's bucket.

  ## Sliding window

  With `window: {60_000, 6}` the histogram also keeps the last 60 s in 6 slots of 10 s, so
  "p99 over the last minute" is a read: `quantile(h, 0.99, view: :window)`. The window covers
  the current slot and the 5 before it (between 50 and 60 s). It runs on a monotonic clock;
  `clock: :manual` gives a clock that only `advance/2` moves, for tests.

  ## Errors

  Bad arguments raise `ArgumentError` (options that are not a keyword list, improper lists,
  numbers out of range, a term that is not a histogram); `merge/2` and `from_binary/1` return
  `{:error, {:incompatible | :malformed, message}}` for histograms of another layout and for
  binaries that are not a histogram (including one whose sum is not finite).

  ## Limits and schedulers

  At most 1,024 classic bounds, 2^20 log buckets per sign, 3,600 window slots, 64 shards.
  A histogram decoded by `from_binary/1` holds the decoded sparse snapshot: its memory is at
  most 8 bytes per input byte plus 64 KiB, whatever layout the binary names (counter blocks
  are allocated only by later records). Reads, `to_binary/1`, `from_binary/1` and `new/1`
  run on a normal scheduler for small work (8 K counters walked, 256 quantiles, 8 KiB decoded,
  128 shard-slot cells) and report their time to it; beyond that they run on a dirty CPU
  scheduler. `merge/2`, `reset/1`, `info/1` and `memory/1` always do.
  """

  alias Hotpath.Native

  @opaque t :: reference()

  @typedoc "`:cumulative` (everything since creation or reset) or `:window` (recent slots)."
  @type view :: :cumulative | :window

  @type error :: {:error, {:malformed | :incompatible, String.t()}}

  @default_quantiles [0.5, 0.9, 0.99, 0.999]
  # Most classic bounds (hotpath_core MAX_BOUNDS).
  @max_bounds 1024
  # Above this many quantiles a read goes straight to a dirty scheduler (the NIF's
  # NORMAL_SCHEDULER_QUANTILES).
  @normal_quantiles 256
  # Larger binaries are decoded on a dirty scheduler (the NIF's NORMAL_SCHEDULER_DECODE_BYTES).
  @normal_decode_bytes 8_192
  @number {:custom, __MODULE__, :float_option, "a number"}
  @new_schema [
    relative_error: [
      type: @number,
      default: 0.01,
      doc:
        "Bound on the relative error of quantile estimates, in `(0, 1)` (the layout chosen " <>
          "for the default guarantees 0.78 %)"
    ],
    floor: [type: @number, default: 1.0e-9, doc: "Magnitudes below count as zero"],
    ceiling: [type: @number, default: 1.0e12, doc: "Magnitudes above count as overflow"],
    buckets: [
      type: {:custom, __MODULE__, :buckets_option, "a strictly increasing list of numbers"},
      default: [],
      doc: "Classic bucket upper bounds (inclusive), at most 1024"
    ],
    window: [
      type: {:custom, __MODULE__, :window_option, "nil or {span_ms, slots}"},
      default: nil,
      doc: "A sliding window of `slots` slots over `span_ms` (a multiple of `slots`)"
    ],
    shards: [
      type: {:or, [{:value, :auto}, {:integer, 1, 64}]},
      default: :auto,
      doc:
        "Number of single-writer shards, rounded up to a power of two (`:auto`: twice the " <>
          "number of CPUs, between 4 and 16). A shard is allocated when a thread first " <>
          "writes to it; threads beyond the shards share one atomic shard"
    ],
    clock: [
      type: {:in, [:monotonic, :manual]},
      default: :monotonic,
      doc: "`:manual`: time moves only with `advance/2`"
    ]
  ]

  @read_schema [
    view: [
      type: {:in, [:cumulative, :window]},
      default: :cumulative,
      doc: "The cumulative view or the window's (a histogram created with `:window`)"
    ]
  ]
  @snapshot_schema @read_schema ++
                     [
                       quantiles: [
                         type:
                           {:custom, __MODULE__, :quantiles_option, "a list of numbers in 0..1"},
                         default: @default_quantiles,
                         doc: "The quantiles to estimate"
                       ]
                     ]

  @doc """
  Creates a histogram.

  Options:

  #{Hotpath.Options.docs(@new_schema)}

      iex> h = Hotpath.Histogram.new(relative_error: 0.001, buckets: [1, 10], window: {60_000, 6})
      iex> Hotpath.Histogram.info(h).buckets
      [1.0, 10.0]

  """
  @spec new(keyword()) :: t()
  def new(opts \\ []) do
    opts = validate_options!(opts)

    case Native.histogram_new(opts) do
      :dirty -> Native.histogram_new_dirty(opts)
      h -> h
    end
  end

  defp validate_options!(opts) do
    opts = Hotpath.Options.validate!(opts, @new_schema, "Hotpath.Histogram.new/1")

    %{
      relative_error: opts[:relative_error],
      floor: opts[:floor],
      ceiling: opts[:ceiling],
      buckets: opts[:buckets],
      window: opts[:window],
      shards: if(opts[:shards] == :auto, do: nil, else: opts[:shards]),
      manual_clock: opts[:clock] == :manual
    }
  end

  # Types of the `new/1` schema (they raise their own messages for the details).
  @doc false
  def float_option(n) when is_number(n),
    do: {:ok, float_or(n, fn -> "a number is too large for a float, got: #{n}" end)}

  def float_option(_other), do: :error

  @doc false
  def buckets_option(list) when is_list(list), do: {:ok, buckets!(list)}
  def buckets_option(_other), do: :error

  @doc false
  def window_option(window), do: {:ok, window!(window)}

  # An integer too large for a float raises ArgumentError with `message`, not ArithmeticError.
  defp float_or(n, _message) when is_float(n), do: n

  defp float_or(n, message) do
    :erlang.float(n)
  rescue
    ArgumentError -> raise ArgumentError, message.()
  end

  @doc false
  def buckets!(nil), do: []

  def buckets!(list) when is_list(list) do
    if not proper_list?(list) do
      raise ArgumentError, "buckets must be a proper list of numbers, got: #{inspect(list)}"
    end

    if length(list) > @max_bounds do
      raise ArgumentError,
            "buckets: at most #{@max_bounds} bounds, got #{length(list)}"
    end

    floats =
      Enum.map(list, fn
        n when is_number(n) ->
          float_or(n, fn -> "buckets: bound #{n} is too large for a float" end)

        other ->
          raise ArgumentError, "buckets must be a list of numbers, got: #{inspect(other)}"
      end)

    if Enum.sort(floats) != floats or length(Enum.uniq(floats)) != length(floats) do
      raise ArgumentError, "buckets must be strictly increasing, got: #{inspect(list)}"
    end

    floats
  end

  def buckets!(other),
    do: raise(ArgumentError, "buckets must be a list of numbers, got: #{inspect(other)}")

  @doc false
  def window!(nil), do: nil

  def window!({span, slots} = w)
      when is_integer(span) and span > 0 and is_integer(slots) and slots > 0 do
    if rem(span, slots) != 0 do
      raise ArgumentError,
            "window: the span (#{span} ms) must be divisible by the number of slots (#{slots}), " <>
              "got: #{inspect(w)}"
    end

    w
  end

  def window!(other) do
    raise ArgumentError,
          "window must be nil or {span_ms, slots} with positive integers, e.g. {60_000, 6}, " <>
            "got: #{inspect(other)}"
  end

  @doc """
  Records one value (an integer or a float). Returns `:ok`.

  This is the hot path: one NIF call that allocates nothing.

      iex> h = Hotpath.Histogram.new()
      iex> Hotpath.Histogram.record(h, 12.5)
      :ok
  """
  @spec record(t(), number()) :: :ok
  def record(h, value) when is_float(value), do: Native.histogram_record(h, value)
  def record(h, value) when is_integer(value), do: Native.histogram_record(h, to_float!(value))
  def record(_h, value), do: raise(ArgumentError, not_a_number(value))

  @doc """
  Records `value` `count` times (`count` an integer in `1..4_294_967_295`).

      iex> h = Hotpath.Histogram.new()
      iex> Hotpath.Histogram.record(h, 2, 3)
      iex> {Hotpath.Histogram.count(h), Hotpath.Histogram.sum(h)}
      {3, 6.0}
  """
  @spec record(t(), number(), pos_integer()) :: :ok
  def record(h, value, count) when is_float(value), do: Native.histogram_record_n(h, value, count)

  def record(h, value, count) when is_integer(value),
    do: Native.histogram_record_n(h, to_float!(value), count)

  def record(_h, value, _count), do: raise(ArgumentError, not_a_number(value))

  defp to_float!(int) do
    :erlang.float(int)
  rescue
    ArgumentError ->
      raise ArgumentError, "value #{Hotpath.Options.describe(int)} is too large to record"
  end

  defp not_a_number(value), do: "value must be an integer or a float, got: #{inspect(value)}"

  @doc """
  Number of values recorded. Options: `view: :cumulative | :window`.
  """
  @spec count(t(), keyword()) :: non_neg_integer()
  def count(h, opts \\ []), do: read(h, opts, []).count

  @doc "Sum of the values recorded (compensated, correctly rounded), `0.0` when empty."
  @spec sum(t(), keyword()) :: float()
  def sum(h, opts \\ []), do: read(h, opts, []).sum

  @doc "Smallest value recorded, exact; `nil` when empty."
  @spec min(t(), keyword()) :: float() | nil
  def min(h, opts \\ []), do: read(h, opts, []).min

  @doc "Largest value recorded, exact; `nil` when empty."
  @spec max(t(), keyword()) :: float() | nil
  def max(h, opts \\ []), do: read(h, opts, []).max

  @doc "Mean of the values recorded; `nil` when empty."
  @spec mean(t(), keyword()) :: float() | nil
  def mean(h, opts \\ []), do: read(h, opts, []).mean

  @doc """
  Estimate of the `q`-quantile (`q` in `0..1`), within the relative error of the exact
  nearest-rank quantile; `nil` when empty. Options: `view: :cumulative | :window`.

      iex> h = Hotpath.Histogram.new()
      iex> Hotpath.Histogram.quantile(h, 0.5)
      nil
      iex> Enum.each(1..100, &Hotpath.Histogram.record(h, &1))
      iex> Hotpath.Histogram.quantile(h, 1.0)
      100.0
  """
  @spec quantile(t(), number(), keyword()) :: float() | nil
  def quantile(h, q, opts \\ []) do
    [value] = read(h, opts, [quantile!(q)]).quantiles
    value
  end

  @doc """
  Several quantiles at once, as a map from each requested `q` to its estimate.

      iex> h = Hotpath.Histogram.new()
      iex> Hotpath.Histogram.record(h, 5)
      iex> Hotpath.Histogram.quantiles(h, [0.5, 0.99])
      %{0.5 => 5.0, 0.99 => 5.0}
  """
  @spec quantiles(t(), [number()], keyword()) :: %{number() => float() | nil}
  def quantiles(h, qs, opts \\ [])

  def quantiles(h, qs, opts) do
    qs = quantile_list!(qs)
    values = read(h, opts, qs).quantiles
    qs |> Enum.zip(values) |> Map.new()
  end

  defp quantile_list!(qs) do
    if not (is_list(qs) and proper_list?(qs)) do
      raise ArgumentError,
            "quantiles must be a list of numbers in 0..1, got: #{inspect(qs)}"
    end

    Enum.map(qs, &quantile!/1)
  end

  defp proper_list?([]), do: true
  defp proper_list?([_ | rest]), do: proper_list?(rest)
  defp proper_list?(_), do: false

  defp quantile!(q) when is_number(q) and q >= 0 and q <= 1, do: q / 1

  defp quantile!(q),
    do:
      raise(
        ArgumentError,
        "quantile must be a number between 0 and 1, got: #{Hotpath.Options.describe(q)}"
      )

  @typedoc """
  A read of one view. `buckets` are the classic buckets as `{upper_bound, count}` (not
  cumulative, the last bound `:infinity`), `nil` without `:buckets`.
  """
  @type snapshot :: %{
          count: non_neg_integer(),
          sum: float(),
          min: float() | nil,
          max: float() | nil,
          mean: float() | nil,
          quantiles: %{float() => float() | nil},
          buckets: [{float() | :infinity, non_neg_integer()}] | nil,
          zero_count: non_neg_integer(),
          overflow_count: non_neg_integer()
        }

  @doc """
  Everything about one view in one read. Options:

  #{Hotpath.Options.docs(@snapshot_schema)}

      iex> h = Hotpath.Histogram.new(buckets: [1, 2])
      iex> Enum.each([0.5, 1, 2, 3], &Hotpath.Histogram.record(h, &1))
      iex> s = Hotpath.Histogram.snapshot(h, quantiles: [1.0])
      iex> {s.count, s.sum, s.quantiles, s.buckets}
      {4, 6.5, %{1.0 => 3.0}, [{1.0, 2}, {2.0, 1}, {:infinity, 1}]}
  """
  @spec snapshot(t(), keyword()) :: snapshot()
  def snapshot(h, opts \\ []) do
    opts = Hotpath.Options.validate!(opts, @snapshot_schema, "Hotpath.Histogram.snapshot/2")
    qs = opts[:quantiles]
    stats = read_view(h, opts[:view], qs)

    buckets =
      stats.buckets &&
        Enum.map(stats.buckets, fn
          {nil, count} -> {:infinity, count}
          {bound, count} -> {bound, count}
        end)

    %{stats | quantiles: qs |> Enum.zip(stats.quantiles) |> Map.new(), buckets: buckets}
  end

  defp read(h, opts, qs) do
    view = Hotpath.Options.validate!(opts, @read_schema, "Hotpath.Histogram")[:view]
    read_view(h, view, qs)
  end

  defp read_view(h, view, qs) do
    if length(qs) > @normal_quantiles do
      Native.histogram_read_dirty(h, view, qs)
    else
      case Native.histogram_read(h, view, qs) do
        :dirty -> Native.histogram_read_dirty(h, view, qs)
        stats -> stats
      end
    end
  end

  @doc false
  # The `:quantiles` option of `snapshot/2` (a type of its schema), as floats.
  def quantiles_option(qs), do: {:ok, quantile_list!(qs)}

  @doc """
  Zeroes the histogram (cumulative view and window). Values recorded while a reset runs may
  partly survive it.
  """
  @spec reset(t()) :: :ok
  def reset(h), do: Native.histogram_reset(h)

  @doc """
  Adds every value of `other` (a histogram, or a binary from `to_binary/1`) into `into`'s
  cumulative view. Histograms merge only when they have the same layout (relative error, floor,
  ceiling and classic buckets).

      iex> a = Hotpath.Histogram.new()
      iex> b = Hotpath.Histogram.new()
      iex> Hotpath.Histogram.record(b, 7)
      iex> Hotpath.Histogram.merge(a, b)
      :ok
      iex> Hotpath.Histogram.count(a)
      1
      iex> {:error, {:incompatible, _}} = Hotpath.Histogram.merge(a, Hotpath.Histogram.new(buckets: [1]))
  """
  @spec merge(t(), t() | binary()) :: :ok | error()
  def merge(into, other), do: Native.histogram_merge(into, other)

  @doc """
  The cumulative view as a compact, versioned binary (the window is not included). Merge it
  elsewhere with `merge/2` or decode it with `from_binary/1`.
  """
  @spec to_binary(t()) :: binary()
  def to_binary(h) do
    case Native.histogram_to_binary(h) do
      :dirty -> Native.histogram_to_binary_dirty(h)
      binary -> binary
    end
  end

  @doc """
  A new histogram holding what `to_binary/1` encoded.

      iex> h = Hotpath.Histogram.new()
      iex> Hotpath.Histogram.record(h, 3)
      iex> {:ok, copy} = Hotpath.Histogram.from_binary(Hotpath.Histogram.to_binary(h))
      iex> Hotpath.Histogram.max(copy)
      3.0
      iex> Hotpath.Histogram.from_binary("nope")
      {:error, {:malformed, "not a Hotpath histogram (bad magic)"}}
  """
  @spec from_binary(binary()) :: {:ok, t()} | error()
  def from_binary(binary) when is_binary(binary) and byte_size(binary) > @normal_decode_bytes,
    do: Native.histogram_from_binary_dirty(binary)

  def from_binary(binary) when is_binary(binary) do
    case Native.histogram_from_binary(binary) do
      :dirty -> Native.histogram_from_binary_dirty(binary)
      result -> result
    end
  end

  def from_binary(other),
    do: raise(ArgumentError, "from_binary/1 expects a binary, got: #{inspect(other)}")

  @doc "Like `from_binary/1` but raises `ArgumentError` on a bad binary."
  @spec from_binary!(binary()) :: t()
  def from_binary!(binary) do
    case from_binary(binary) do
      {:ok, h} -> h
      {:error, {_, message}} -> raise ArgumentError, message
    end
  end

  @doc """
  Memory used now and the most the histogram can ever use, in bytes.

      iex> %{bytes: bytes, max_bytes: max} = Hotpath.Histogram.memory(Hotpath.Histogram.new())
      iex> bytes < max
      true
  """
  @spec memory(t()) :: %{bytes: non_neg_integer(), max_bytes: non_neg_integer()}
  def memory(h) do
    info = info(h)
    %{bytes: info.memory_bytes, max_bytes: info.max_memory_bytes}
  end

  @doc """
  The effective options: `relative_error` (the guaranteed bound), `floor`, `ceiling`,
  `buckets`, `window`, `shards`, `clock`, plus `memory_bytes` (used now) and
  `max_memory_bytes` (the most it can ever use).
  """
  @spec info(t()) :: map()
  def info(h) do
    {memory, info} = Map.pop(Native.histogram_info(h), :memory)
    {max_memory, info} = Map.pop(info, :max_memory)
    Map.merge(info, %{memory_bytes: memory, max_memory_bytes: max_memory})
  end

  @doc """
  Moves the clock of a histogram created with `clock: :manual` forward by `ms` milliseconds
  and returns the new time. Tests use it to slide the window without sleeping.

      iex> h = Hotpath.Histogram.new(window: {1_000, 2}, clock: :manual)
      iex> Hotpath.Histogram.record(h, 1)
      iex> Hotpath.Histogram.advance(h, 1_000)
      1000
      iex> {Hotpath.Histogram.count(h, view: :window), Hotpath.Histogram.count(h)}
      {0, 1}
  """
  @spec advance(t(), non_neg_integer()) :: non_neg_integer()
  def advance(h, ms) when is_integer(ms) and ms >= 0, do: Native.histogram_advance(h, ms)

  def advance(_h, ms),
    do:
      raise(
        ArgumentError,
        "advance/2 expects a non-negative integer, got: #{Hotpath.Options.describe(ms)}"
      )
end
