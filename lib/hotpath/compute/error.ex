defmodule Hotpath.Compute.Error do
  @moduledoc """
  Raised by functions with a fixed return type (such as `Hotpath.Password.hash_pwd_salt/2`)
  when the `Hotpath.Compute` pool they run in answers with an error: `:overloaded`,
  `:timeout`, `{:panic, message}`, ...
  """
  defexception [:reason, :pool]

  @impl true
  def message(%__MODULE__{reason: reason, pool: pool}) do
    "Hotpath.Compute pool #{inspect(pool)} could not run the job: #{inspect(reason)}"
  end
end
