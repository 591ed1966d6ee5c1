defmodule Hotpath.Metrics.Recording do
  @moduledoc false
  # The slow path of `Hotpath.Metrics.record/4` and `handle/3`: what to do when the NIF's
  # fast path refuses (tags to convert to label text, an integer beyond 64 bits), and the
  # errors of what cannot be recorded.

  alias Hotpath.Metrics.{Definition, Instance}
  alias Hotpath.Native

  # The longest label value, in bytes (the core's MAX_LABEL_BYTES).
  @max_label_bytes 4096
  @max_label_int Integer.pow(10, @max_label_bytes)

  @doc false
  # Records again after the fast path refused with `refused`, or raises.
  def retry(refused, instance, name, value, tags),
    do: retry(refused, Instance.registry!(instance), instance, name, value, tags)

  defp retry(:convert_tags, registry, instance, name, value, tags) do
    case Native.metrics_record(registry, name, value, stringify_tags(tags)) do
      :ok -> :ok
      refused -> retry(refused, registry, instance, name, value, tags)
    end
  end

  defp retry(:bad_value, _registry, instance, name, value, tags) when is_integer(value) do
    # Integers beyond 64 bits: record them as floats.
    Hotpath.Metrics.record(instance, name, to_float!(value), tags)
  end

  defp retry(refused, _registry, instance, name, value, tags),
    do: refuse!(refused, instance, name, value, tags)

  @doc false
  def to_float!(int) do
    :erlang.float(int)
  rescue
    ArgumentError ->
      reraise ArgumentError,
              "value #{Hotpath.Options.describe(int)} is too large to record",
              __STACKTRACE__
  end

  @doc false
  def refuse!(:unknown_instance, instance, _name, _value, _tags),
    do: Instance.not_running!(instance)

  def refuse!(:bad_value, _instance, name, value, _tags),
    do: raise(ArgumentError, "#{inspect(name)}: value must be a number, got: #{inspect(value)}")

  def refuse!(:label_too_long, _instance, name, _value, _tags) do
    raise ArgumentError,
          "#{inspect(name, limit: 10)}: a tag value is longer than #{@max_label_bytes} bytes " <>
            "(label values are at most #{@max_label_bytes} bytes of text)"
  end

  def refuse!(:convert_tags, _instance, _name, _value, tags),
    do: raise(ArgumentError, "tag values could not be converted: #{inspect(tags)}")

  def refuse!(:missing_tag, instance, name, _value, tags) do
    needed =
      for m <- Instance.meta!(instance),
          m.name == Definition.name!(name),
          tag <- m.tags,
          uniq: true,
          do: tag

    raise ArgumentError,
          "#{inspect(name)} needs the tags #{inspect(needed)}, got: #{inspect(tags)}"
  end

  def refuse!(:unknown_metric, instance, name, _value, _tags) do
    known = instance |> Instance.meta!() |> Enum.map(&Enum.join(&1.name, ".")) |> Enum.uniq()

    raise ArgumentError,
          "no metric named #{inspect(name)} in #{inspect(instance)}; known metrics: #{inspect(known)}"
  end

  @doc false
  # The tags with every value as label text (the NIF's slow path asked for it). Raises
  # ArgumentError for a value whose text is longer than the label limit; nothing long is
  # converted (a long binary is refused by its size, a large term by `inspect/1`'s limits).
  def stringify_tags(tags) when is_map(tags) do
    Map.new(tags, fn {k, v} -> {k, label_text(v)} end)
  end

  def stringify_tags(tags), do: raise(ArgumentError, "tags must be a map, got: #{inspect(tags)}")

  defp label_text(v) when is_binary(v) and byte_size(v) > @max_label_bytes, do: too_long!()
  defp label_text(v) when is_binary(v), do: if(String.valid?(v), do: v, else: checked(inspect(v)))
  defp label_text(v) when is_atom(v), do: Atom.to_string(v)
  # Integers beyond 64 bits: longer than the limit when they have more digits than it allows
  # (compared before any conversion, which costs time in the number's size).
  defp label_text(v) when is_integer(v) and abs(v) >= @max_label_int, do: too_long!()
  defp label_text(v) when is_integer(v), do: checked(Integer.to_string(v))
  defp label_text(v), do: checked(inspect(v))

  defp checked(text) when byte_size(text) > @max_label_bytes, do: too_long!()
  defp checked(text), do: text

  defp too_long!,
    do: raise(ArgumentError, "a tag value is longer than #{@max_label_bytes} bytes as text")
end
