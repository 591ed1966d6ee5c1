defmodule Hotpath.Metrics.Handler do
  @moduledoc """
  The `:telemetry` handler of `Hotpath.Metrics`: one per event, attached as
  `&Hotpath.Metrics.Handler.handle_event/4`.

  It never raises, so `:telemetry` never detaches it: an event whose measurement is missing or
  not a number, whose tags are missing, or whose `keep`/`tag_values`/measurement function
  raises, is counted as **dropped** for that metric (see `Hotpath.Metrics.snapshot/1` and the
  `hotpath_metrics_dropped_total` counter of `Hotpath.Metrics.prometheus/1`).

  The config is `%{registry: instance_name, metrics: [{index, kind, measurement, keep,
  tag_values}]}` built by `Hotpath.Metrics`; a metric that keeps exemplars has a sixth
  element, where its exemplar comes from (`{:metadata, key}` or `:opentelemetry`). An event
  without one (or whose value is not a string or integer, or too long for an exemplar) is
  recorded as any other. This module has no dependency on `:telemetry`: tests call
  `handle_event/4` directly.
  """

  alias Hotpath.Native

  # Reached only when a metric asks for `:opentelemetry` exemplars and the API was loaded.
  @compile {:no_warn_undefined, [:otel_tracer, :otel_span]}

  @doc "Records one event into every metric of the config. Always returns `:ok`."
  @spec handle_event([atom()], map(), map(), map()) :: :ok
  def handle_event(_event, measurements, metadata, %{registry: registry, metrics: metrics}) do
    record_all(metrics, registry, measurements, metadata)
  end

  def handle_event(_event, _measurements, _metadata, _config), do: :ok

  defp record_all([], _registry, _measurements, _metadata), do: :ok

  defp record_all([metric | rest], registry, measurements, metadata) do
    record(metric, registry, measurements, metadata)
    record_all(rest, registry, measurements, metadata)
  end

  defp record({index, kind, measurement, keep, tag_values}, registry, measurements, metadata) do
    if keep?(keep, metadata, measurements) do
      value = if kind == :counter, do: nil, else: measure(measurement, measurements, metadata)
      record_plain(registry, index, value, tag_values.(metadata))
    end
  catch
    _kind, _reason -> drop(registry, index)
  end

  # A metric that keeps exemplars: the event's, if it has one, goes with the value.
  defp record(
         {index, kind, measurement, keep, tag_values, source},
         registry,
         measurements,
         metadata
       ) do
    if keep?(keep, metadata, measurements) do
      value = if kind == :counter, do: nil, else: measure(measurement, measurements, metadata)
      tags = tag_values.(metadata)

      with labels when labels != nil <- exemplar(source, metadata),
           :ok <- Native.metrics_record_exemplar(registry, index, value, tags, labels) do
        :ok
      else
        # No exemplar, tags to convert or an exemplar that is not one: the plain path decides.
        _ -> record_plain(registry, index, value, tags)
      end
    end
  catch
    _kind, _reason -> drop(registry, index)
  end

  defp record_plain(registry, index, value, tags) do
    case Native.metrics_record_index(registry, index, value, tags) do
      :ok ->
        :ok

      :convert_tags ->
        case Native.metrics_record_index(
               registry,
               index,
               value,
               Hotpath.Metrics.Recording.stringify_tags(tags)
             ) do
          :ok -> :ok
          _ -> drop(registry, index)
        end

      _refused ->
        drop(registry, index)
    end
  end

  # The exemplar labels of an event, or nil: the metadata value under the metric's key (a
  # string or an integer), or the current OpenTelemetry span when it is valid.
  defp exemplar({:metadata, key}, metadata) when is_map(metadata) do
    case metadata do
      %{^key => id} when is_binary(id) -> [{"trace_id", id}]
      %{^key => id} when is_integer(id) -> [{"trace_id", Integer.to_string(id)}]
      _ -> nil
    end
  end

  defp exemplar(:opentelemetry, _metadata) do
    span = :otel_tracer.current_span_ctx()

    if span != :undefined and :otel_span.is_valid(span) do
      [{"trace_id", :otel_span.hex_trace_id(span)}, {"span_id", :otel_span.hex_span_id(span)}]
    end
  end

  defp exemplar(_source, _metadata), do: nil

  defp keep?(nil, _metadata, _measurements), do: true
  defp keep?(keep, metadata, _measurements) when is_function(keep, 1), do: keep.(metadata) == true
  defp keep?(keep, metadata, measurements), do: keep.(metadata, measurements) == true

  defp measure(fun, measurements, _metadata) when is_function(fun, 1), do: fun.(measurements)

  defp measure(fun, measurements, metadata) when is_function(fun, 2),
    do: fun.(measurements, metadata)

  defp measure(key, measurements, _metadata) when is_map(measurements),
    do: Map.get(measurements, key)

  defp measure(_key, _measurements, _metadata), do: nil

  defp drop(registry, index) do
    Native.metrics_drop(registry, index)
    :ok
  catch
    _, _ -> :ok
  end
end
