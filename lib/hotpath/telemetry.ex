defmodule Hotpath.Telemetry do
  @moduledoc false
  # Emits `:telemetry` events when the host application has `:telemetry`; Hotpath does not
  # depend on it. Event contents are built by pure functions in each area so they are tested
  # without the package.

  @compile {:no_warn_undefined, :telemetry}

  @doc "True when `:telemetry` is available in this VM."
  @spec available?() :: boolean()
  def available?, do: Code.ensure_loaded?(:telemetry)

  @doc "Emits `{event, measurements, metadata}` through `:telemetry` if it is available."
  @spec emit({[atom()], map(), map()}) :: :ok
  def emit({event, measurements, metadata}) do
    if available?(), do: :telemetry.execute(event, measurements, metadata)
    :ok
  end
end
