defmodule Hotpath.NotRunningError do
  @moduledoc """
  Raised when a function needs a named Hotpath process or instance that is not running: a
  `Hotpath.RateLimiter`, a `Hotpath.Metrics` instance or a `Hotpath.Compute` pool that was
  never started under that name, or has stopped.

  `:module` is the module of what is missing and `:name` the name (or pid) it was asked
  by. Functions that return `{:error, reason}` answer `{:error, :not_running}` instead
  (`Hotpath.Compute.run/3`); arguments that cannot name anything at all are an
  `ArgumentError`.

      iex> Hotpath.RateLimiter.info(:no_such_limiter)
      ** (Hotpath.NotRunningError) no Hotpath.RateLimiter named :no_such_limiter is running; start it in your supervision tree: {Hotpath.RateLimiter, name: :no_such_limiter, ...}
  """
  defexception [:module, :name]

  @type t :: %__MODULE__{module: module(), name: term()}

  @impl true
  def message(%__MODULE__{module: module, name: name}) when is_pid(name) do
    "the #{inspect(module)} process #{inspect(name)} is not running"
  end

  def message(%__MODULE__{module: module, name: name}) do
    "no #{inspect(module)} named #{inspect(name)} is running; start it in your supervision " <>
      "tree: {#{inspect(module)}, name: #{inspect(name)}, ...}"
  end
end
