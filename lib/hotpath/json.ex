defmodule Hotpath.JSON do
  @moduledoc false
  # A small JSON encoder (RFC 8259) for the few documents Hotpath writes itself: problem
  # details of `Hotpath.RateLimiter.HTTP` and the demo's dashboard feed. Elixir 1.14 has no
  # `JSON` module and OTP 25 no `:json`, and Hotpath has no dependencies.
  #
  # Maps (atom or string keys), lists, binaries (valid UTF-8), integers, finite floats,
  # booleans and nil. Other atoms encode as strings. Anything else raises ArgumentError.

  @doc """
  Encodes `term` as JSON iodata.

      iex> Hotpath.JSON.encode(%{"a" => [1, 2.5, nil, true], "b" => "q\\"\\n"}) |> IO.iodata_to_binary()
      ~S({"a":[1,2.5,null,true],"b":"q\\"\\n"})
  """
  @spec encode(term()) :: iodata()
  def encode(term), do: value(term)

  @doc "Encodes `term` as a JSON binary."
  @spec encode!(term()) :: String.t()
  def encode!(term), do: term |> encode() |> IO.iodata_to_binary()

  defp value(nil), do: "null"
  defp value(true), do: "true"
  defp value(false), do: "false"
  defp value(atom) when is_atom(atom), do: string(Atom.to_string(atom))
  defp value(binary) when is_binary(binary), do: string(binary)
  defp value(int) when is_integer(int), do: Integer.to_string(int)
  defp value(float) when is_float(float), do: :erlang.float_to_binary(float, [:short])
  defp value(list) when is_list(list), do: [?[, list |> Enum.map(&value/1) |> join(), ?]]

  defp value(%{__struct__: _} = struct),
    do: raise(ArgumentError, "cannot encode #{inspect(struct)} as JSON")

  defp value(map) when is_map(map) do
    pairs = Enum.map(map, fn {k, v} -> [key(k), ?:, value(v)] end)
    [?{, join(pairs), ?}]
  end

  defp value(other), do: raise(ArgumentError, "cannot encode #{inspect(other)} as JSON")

  defp key(k) when is_binary(k), do: string(k)
  defp key(k) when is_atom(k) and k not in [nil, true, false], do: string(Atom.to_string(k))

  defp key(k),
    do: raise(ArgumentError, "JSON object keys are strings or atoms, got: #{inspect(k)}")

  defp join([]), do: []
  defp join([first | rest]), do: [first | Enum.map(rest, &[?, | &1])]

  defp string(binary) do
    if not String.valid?(binary) do
      raise ArgumentError, "cannot encode invalid UTF-8 as JSON: #{inspect(binary)}"
    end

    [?", escape(binary, []), ?"]
  end

  defp escape(<<>>, acc), do: Enum.reverse(acc)
  defp escape(<<?", rest::binary>>, acc), do: escape(rest, ["\\\"" | acc])
  defp escape(<<?\\, rest::binary>>, acc), do: escape(rest, ["\\\\" | acc])
  defp escape(<<?\n, rest::binary>>, acc), do: escape(rest, ["\\n" | acc])
  defp escape(<<?\r, rest::binary>>, acc), do: escape(rest, ["\\r" | acc])
  defp escape(<<?\t, rest::binary>>, acc), do: escape(rest, ["\\t" | acc])
  # `<`, `>` and `&` are escaped so a document can be embedded in HTML safely; U+2028/9
  # so it can be embedded in JavaScript.
  defp escape(<<c, rest::binary>>, acc) when c < 0x20 or c in [?<, ?>, ?&],
    do: escape(rest, [unicode(c) | acc])

  defp escape(<<c::utf8, rest::binary>>, acc) when c in [0x2028, 0x2029],
    do: escape(rest, [unicode(c) | acc])

  defp escape(<<c::utf8, rest::binary>>, acc), do: escape(rest, [<<c::utf8>> | acc])

  defp unicode(c), do: "\\u" <> String.pad_leading(Integer.to_string(c, 16), 4, "0")
end
