defmodule Mix.HotpathNative.JSON do
  @moduledoc false
  # A small, strict JSON decoder (RFC 8259; objects become maps with string keys): Elixir 1.14
  # has no JSON module and Hotpath depends on no Hex package. It reads cargo's JSON messages
  # for the source build, and the tests read the JSON Hotpath serves with it.
  #
  # Loaded by mix.exs (Code.require_file), never compiled into the :hotpath application.

  @doc "Decodes one JSON text: `{:ok, term}` (objects as maps with string keys) or `:error`."
  def decode(text) do
    {value, rest} = value(skip(text))
    if skip(rest) == "", do: {:ok, value}, else: :error
  catch
    :error -> :error
  end

  defp value("{" <> rest), do: members(skip(rest), %{})
  defp value("[" <> rest), do: elements(skip(rest), [])
  defp value("\"" <> rest), do: string(rest, [])
  defp value("true" <> rest), do: {true, rest}
  defp value("false" <> rest), do: {false, rest}
  defp value("null" <> rest), do: {nil, rest}
  defp value(text), do: number(text)

  defp members("}" <> rest, acc) when acc == %{}, do: {acc, rest}

  defp members("\"" <> rest, acc) do
    {key, rest} = string(rest, [])
    {value, rest} = value(skip(colon(skip(rest))))
    acc = Map.put(acc, key, value)

    case skip(rest) do
      "," <> rest -> members(skip(rest), acc)
      "}" <> rest -> {acc, rest}
      _ -> throw(:error)
    end
  end

  defp members(_, _), do: throw(:error)

  defp elements("]" <> rest, []), do: {[], rest}

  defp elements(text, acc) do
    {value, rest} = value(text)

    case skip(rest) do
      "," <> rest -> elements(skip(rest), [value | acc])
      "]" <> rest -> {Enum.reverse([value | acc]), rest}
      _ -> throw(:error)
    end
  end

  defp string("\"" <> rest, acc), do: {IO.iodata_to_binary(Enum.reverse(acc)), rest}
  defp string("\\u" <> <<hex::binary-4, rest::binary>>, acc), do: unicode(hex, rest, acc)
  defp string("\\" <> <<c, rest::binary>>, acc), do: string(rest, [escape(c) | acc])
  defp string(<<c, rest::binary>>, acc) when c >= 0x20, do: string(rest, [c | acc])
  defp string(_, _), do: throw(:error)

  defp escape(?"), do: ?"
  defp escape(?\\), do: ?\\
  defp escape(?/), do: ?/
  defp escape(?b), do: ?\b
  defp escape(?f), do: ?\f
  defp escape(?n), do: ?\n
  defp escape(?r), do: ?\r
  defp escape(?t), do: ?\t
  defp escape(_), do: throw(:error)

  # \uXXXX, with UTF-16 surrogate pairs for characters beyond the BMP.
  defp unicode(hex, rest, acc) do
    case {hex4(hex), rest} do
      {high, "\\u" <> <<low::binary-4, rest::binary>>} when high in 0xD800..0xDBFF ->
        low = hex4(low)
        if low not in 0xDC00..0xDFFF, do: throw(:error)
        code = 0x10000 + Bitwise.bsl(high - 0xD800, 10) + (low - 0xDC00)
        string(rest, [<<code::utf8>> | acc])

      {code, _} when code in 0xD800..0xDFFF ->
        throw(:error)

      {code, rest} ->
        string(rest, [<<code::utf8>> | acc])
    end
  end

  defp hex4(hex) do
    case Integer.parse(hex, 16) do
      {code, ""} -> code
      _ -> throw(:error)
    end
  end

  defp number(text) do
    case Regex.run(~r/\A-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/, text) do
      [literal | parts] ->
        rest = binary_part(text, byte_size(literal), byte_size(text) - byte_size(literal))

        if Enum.any?(Enum.drop(parts, 1), &(&1 != "")),
          do: {float(literal), rest},
          else: {String.to_integer(literal), rest}

      nil ->
        throw(:error)
    end
  end

  # "1e5" has no fraction, which Float.parse accepts but String.to_float does not.
  defp float(literal), do: literal |> Float.parse() |> elem(0)

  defp colon(":" <> rest), do: rest
  defp colon(_), do: throw(:error)

  defp skip(<<c, rest::binary>>) when c in [?\s, ?\t, ?\n, ?\r], do: skip(rest)
  defp skip(text), do: text
end
