defmodule Hotpath.Metrics.Instance do
  @moduledoc false
  # A running instance as callers find it: its registry and metadata, published in
  # :persistent_term by its owner (`Hotpath.Metrics.Owner`) under the instance name.

  @doc false
  def not_running!(instance) when is_atom(instance),
    do: raise(Hotpath.NotRunningError, module: Hotpath.Metrics, name: instance)

  def not_running!(other) do
    raise ArgumentError,
          "a Hotpath.Metrics instance is named by an atom, got: #{inspect(other, limit: 10)}"
  end

  @doc false
  def registry!(instance) do
    case :persistent_term.get({Hotpath.Metrics, instance}, nil) do
      nil ->
        not_running!(instance)

      registry ->
        registry
    end
  end

  @doc false
  def meta!(instance) do
    case :persistent_term.get({Hotpath.Metrics, instance, :meta}, nil) do
      nil ->
        not_running!(instance)

      meta ->
        meta
    end
  end
end
