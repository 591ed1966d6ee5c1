defmodule Hotpath.Metrics.Snapshot do
  @moduledoc false
  # A registry's native snapshot, shaped as `Hotpath.Metrics.snapshot/1` answers it.

  alias Hotpath.Native

  @doc false
  def of(registry, meta) do
    registry
    |> Native.metrics_snapshot()
    |> Enum.zip(meta)
    |> Enum.map(fn {{dropped, series}, m} ->
      %{
        name: m.name,
        kind: m.kind,
        dropped: dropped,
        series: Enum.map(series, &series_snapshot(&1, m))
      }
    end)
  end

  defp series_snapshot({labels, read}, m) do
    tags = m.tags |> Enum.zip(labels) |> Map.new()

    case read do
      {:counter, n} -> %{tags: tags, value: n}
      {:sum, s} -> %{tags: tags, value: s}
      {:last_value, v} -> %{tags: tags, value: v}
      {:histogram, c, w} -> Map.merge(stats(c, m), %{tags: tags, window: w && stats(w, m)})
    end
  end

  defp stats(s, m) do
    buckets =
      s.buckets &&
        Enum.map(s.buckets, fn
          {nil, c} -> {:infinity, c}
          bucket -> bucket
        end)

    %{s | quantiles: m.quantiles |> Enum.zip(s.quantiles) |> Map.new(), buckets: buckets}
  end
end
