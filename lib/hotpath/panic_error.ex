defmodule Hotpath.PanicError do
  @moduledoc """
  Raised when Hotpath's native code panics.

  A panic is a bug in Hotpath, never an expected outcome: the panic is unwound inside the
  NIF call, so the VM, the calling process's other work and every other caller go on.
  Please report it with the message.
  """
  defexception [:message]

  @impl true
  def message(%__MODULE__{message: message}), do: "native code panicked: #{message}"
end
