defmodule Hotpath.Test.JSONDecoder do
  @moduledoc false
  # A strict, small JSON decoder for tests (objects become maps with string keys).

  def decode!(text) when is_binary(text) do
    {value, rest} = value(skip(text))

    case skip(rest) do
      "" -> value
      extra -> raise ArgumentError, "trailing data after JSON value: #{inspect(extra)}"
    end
  end

  defp value("{" <> rest), do: object(skip(rest), %{})
  defp value("[" <> rest), do: array(skip(rest), [])
  defp value("\"" <> rest), do: string(rest, [])
  defp value("true" <> rest), do: {true, rest}
  defp value("false" <> rest), do: {false, rest}
  defp value("null" <> rest), do: {nil, rest}
  defp value(text), do: number(text)

  defp object("}" <> rest, acc), do: {acc, rest}

  defp object("\"" <> rest, acc) do
    {key, rest} = string(rest, [])
    ":" <> rest = skip(rest)
    {value, rest} = value(skip(rest))
    acc = Map.put(acc, key, value)

    case skip(rest) do
      "," <> rest -> object(skip(rest), acc)
      "}" <> rest -> {acc, rest}
    end
  end

  defp array("]" <> rest, []), do: {[], rest}

  defp array(text, acc) do
    {value, rest} = value(text)

    case skip(rest) do
      "," <> rest -> array(skip(rest), [value | acc])
      "]" <> rest -> {Enum.reverse([value | acc]), rest}
    end
  end

  defp string("\"" <> rest, acc), do: {acc |> Enum.reverse() |> IO.iodata_to_binary(), rest}
  defp string("\\\"" <> rest, acc), do: string(rest, ["\"" | acc])
  defp string("\\\\" <> rest, acc), do: string(rest, ["\\" | acc])
  defp string("\\/" <> rest, acc), do: string(rest, ["/" | acc])
  defp string("\\n" <> rest, acc), do: string(rest, ["\n" | acc])
  defp string("\\r" <> rest, acc), do: string(rest, ["\r" | acc])
  defp string("\\t" <> rest, acc), do: string(rest, ["\t" | acc])
  defp string("\\b" <> rest, acc), do: string(rest, ["\b" | acc])
  defp string("\\f" <> rest, acc), do: string(rest, ["\f" | acc])

  defp string("\\u" <> <<hex::binary-size(4), rest::binary>>, acc) do
    code = String.to_integer(hex, 16)

    case {code, rest} do
      {hi, "\\u" <> <<lo_hex::binary-size(4), rest2::binary>>} when hi in 0xD800..0xDBFF ->
        lo = String.to_integer(lo_hex, 16)
        string(rest2, [<<0x10000 + (hi - 0xD800) * 0x400 + (lo - 0xDC00)::utf8>> | acc])

      _ ->
        string(rest, [<<code::utf8>> | acc])
    end
  end

  defp string(<<c::utf8, rest::binary>>, acc) when c >= 0x20,
    do: string(rest, [<<c::utf8>> | acc])

  defp number(text) do
    [literal | _] = Regex.run(~r/\A-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?/, text)
    rest = binary_part(text, byte_size(literal), byte_size(text) - byte_size(literal))

    value =
      if literal =~ ~r/[.eE]/,
        do: elem(Float.parse(literal), 0),
        else: String.to_integer(literal)

    {value, rest}
  end

  defp skip(<<c, rest::binary>>) when c in [?\s, ?\t, ?\n, ?\r], do: skip(rest)
  defp skip(text), do: text
end
