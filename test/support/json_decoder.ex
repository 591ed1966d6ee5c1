defmodule Hotpath.Test.JSONDecoder do
  @moduledoc false
  # The tests read the JSON Hotpath serves with the build's strict decoder (loaded by mix.exs).

  def decode!(text) when is_binary(text) do
    case Mix.HotpathNative.JSON.decode(text) do
      {:ok, value} -> value
      :error -> raise ArgumentError, "not one JSON text: #{inspect(text, limit: 20)}"
    end
  end
end
