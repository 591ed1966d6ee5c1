defmodule Hotpath.Opaque do
  @moduledoc false
  # Tests pass wrong arguments on purpose. Elixir 1.20's type checker sees some of them at
  # compile time and warns; a value that went through `value/1` has a type the checker cannot
  # know, so the call is checked at run time, as a user's bad input would be.

  @spec value(term()) :: term()
  def value(term), do: :erlang.binary_to_term(:erlang.term_to_binary(term))
end
