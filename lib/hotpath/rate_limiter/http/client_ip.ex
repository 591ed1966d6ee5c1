defmodule Hotpath.RateLimiter.HTTP.ClientIP do
  @moduledoc """
  The client address of a request, honouring a forwarding header only from trusted proxies.

  A request's peer (`remote_ip`) is the client unless it is one of your trusted proxies. When
  it is, the forwarding header that your proxies append to (`x-forwarded-for` by default, or
  RFC 7239 `forwarded`) is read **from right to left**: each address a trusted proxy added is
  skipped, and the first address that is not a trusted proxy is the client. Entries further
  left were written by the client itself and are never believed, so a client cannot choose
  its own key by sending the header. Only one header is read: a proxy that appends to
  `x-forwarded-for` passes a client's `forwarded` header through untouched, so reading both
  would let clients spoof.

  If an entry cannot be parsed (`unknown`, an obfuscated RFC 7239 identifier, garbage), the
  last trusted hop before it is the answer. If every hop is trusted, the leftmost is.

      iex> alias Hotpath.RateLimiter.HTTP.ClientIP
      iex> trusted = ClientIP.parse_cidrs!(["10.0.0.0/8", "fd00::/8"])
      iex> request = %{remote_ip: {10, 0, 0, 1},
      ...>   req_headers: [{"x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.2.3"}]}
      iex> ClientIP.client_ip(request, trusted, "x-forwarded-for")
      {203, 0, 113, 9}
      iex> ClientIP.client_ip(%{request | remote_ip: {198, 51, 100, 1}}, trusted, "x-forwarded-for")
      {198, 51, 100, 1}
  """

  import Bitwise

  @typedoc "A parsed CIDR block: the address family's bit width, the prefix and its length."
  @type cidr :: {:inet | :inet6, non_neg_integer(), 0..128}

  @doc """
  Parses CIDR blocks (`"10.0.0.0/8"`, `"2001:db8::/32"`, or a single address like
  `"127.0.0.1"` or `"::1"`; address tuples are accepted too). Raises `ArgumentError` on an
  invalid entry.

      iex> Hotpath.RateLimiter.HTTP.ClientIP.parse_cidrs!(["192.168.0.0/16", "::1"])
      [{:inet, 3232235520, 16}, {:inet6, 1, 128}]
  """
  @spec parse_cidrs!([String.t() | :inet.ip_address()]) :: [cidr()]
  def parse_cidrs!(list) when is_list(list), do: Enum.map(list, &parse_cidr!/1)

  def parse_cidrs!(other),
    do:
      raise(
        ArgumentError,
        "trusted_proxies must be a list of CIDR strings, got: #{inspect(other)}"
      )

  defp parse_cidr!(ip) when is_tuple(ip) do
    case to_integer(ip) do
      {family, n} -> {family, n, bits(family)}
      nil -> invalid_cidr!(ip)
    end
  end

  defp parse_cidr!(text) when is_binary(text) do
    {address, prefix} =
      case String.split(text, "/") do
        [address] -> {address, nil}
        [address, prefix] -> {address, prefix}
        _ -> invalid_cidr!(text)
      end

    with {:ok, ip} <- :inet.parse_strict_address(String.to_charlist(address)),
         {family, n} <- to_integer(ip),
         {:ok, len} <- prefix_length(prefix, bits(family)) do
      # Host bits set in the block ("10.0.0.1/8") are ignored, as most tools do.
      {family, n &&& mask(len, bits(family)), len}
    else
      _ -> invalid_cidr!(text)
    end
  end

  defp parse_cidr!(other), do: invalid_cidr!(other)

  defp prefix_length(nil, max), do: {:ok, max}

  defp prefix_length(text, max) do
    case Integer.parse(text) do
      {len, ""} when len in 0..max//1 -> {:ok, len}
      _ -> :error
    end
  end

  defp invalid_cidr!(entry) do
    raise ArgumentError,
          "invalid trusted proxy #{inspect(entry)}: expected a CIDR block such as " <>
            ~s("10.0.0.0/8" or "fd00::/8", or an address such as "127.0.0.1")
  end

  @doc """
  True when `ip` (a tuple) is inside one of `cidrs` (from `parse_cidrs!/1`). An IPv4-mapped
  IPv6 address (`::ffff:10.0.0.1`) is compared as the IPv4 address.

      iex> alias Hotpath.RateLimiter.HTTP.ClientIP
      iex> cidrs = ClientIP.parse_cidrs!(["10.0.0.0/8"])
      iex> {ClientIP.trusted?({10, 9, 8, 7}, cidrs), ClientIP.trusted?({11, 0, 0, 1}, cidrs)}
      {true, false}
  """
  @spec trusted?(:inet.ip_address(), [cidr()]) :: boolean()
  def trusted?(_ip, []), do: false

  def trusted?(ip, cidrs) do
    case to_integer(normalize(ip)) do
      {family, n} ->
        Enum.any?(cidrs, fn {f, prefix, len} ->
          f == family and (n &&& mask(len, bits(family))) == prefix
        end)

      nil ->
        false
    end
  end

  @doc """
  The client address of `request` (a map with `:remote_ip` and `:req_headers`, such as a
  `Plug.Conn`), given the trusted proxies and the forwarding header (lowercase name).
  Returns an address tuple, or `nil` when the request has no usable `remote_ip`.
  """
  @spec client_ip(map(), [cidr()], String.t()) :: :inet.ip_address() | nil
  def client_ip(%{remote_ip: peer} = request, trusted, header) do
    case normalize(peer) do
      nil ->
        nil

      peer ->
        if trusted?(peer, trusted) do
          request |> forwarded_chain(header) |> Enum.reverse() |> walk(peer, trusted)
        else
          peer
        end
    end
  end

  def client_ip(_request, _trusted, _header), do: nil

  # `last` is the last trusted hop seen so far.
  defp walk([], last, _trusted), do: last

  defp walk([entry | rest], last, trusted) do
    case entry do
      nil ->
        last

      ip ->
        if trusted?(ip, trusted), do: walk(rest, ip, trusted), else: ip
    end
  end

  @doc """
  The addresses in `header` of `request`, left to right, `nil` for an entry that is not an
  address. Several lines of the header are joined in order, as HTTP defines.

      iex> request = %{req_headers: [{"forwarded", ~s(for=192.0.2.60;proto=http, for="[2001:db8::1]:4711", for=unknown)}]}
      iex> Hotpath.RateLimiter.HTTP.ClientIP.forwarded_chain(request, "forwarded")
      [{192, 0, 2, 60}, {8193, 3512, 0, 0, 0, 0, 0, 1}, nil]
  """
  @spec forwarded_chain(map(), String.t()) :: [:inet.ip_address() | nil]
  def forwarded_chain(%{req_headers: headers}, header) when is_list(headers) do
    for {^header, value} when is_binary(value) <- headers,
        element <- String.split(value, ","),
        do: parse_element(header, String.trim(element))
  end

  def forwarded_chain(_request, _header), do: []

  defp parse_element("forwarded", element) do
    # forwarded-element = pair *( ";" pair ); only `for=` matters here.
    element
    |> String.split(";")
    |> Enum.find_value(fn pair ->
      case String.split(String.trim(pair), "=", parts: 2) do
        [name, value] -> if String.downcase(name) == "for", do: {:for, value}
        _ -> nil
      end
    end)
    |> case do
      {:for, value} -> value |> unquote_value() |> node_address()
      nil -> nil
    end
  end

  defp parse_element(_header, element), do: node_address(element)

  defp unquote_value(<<?", rest::binary>>) do
    case String.split(rest, "\"", parts: 2) do
      [inner, ""] -> inner
      _ -> ""
    end
  end

  defp unquote_value(value), do: value

  # "192.0.2.1", "192.0.2.1:8080", "[2001:db8::1]", "[2001:db8::1]:443", "2001:db8::1".
  defp node_address(<<?[, rest::binary>>) do
    case String.split(rest, "]", parts: 2) do
      [address, port] when port == "" or binary_part(port, 0, 1) == ":" -> address(address)
      _ -> nil
    end
  end

  defp node_address(text) do
    case address(text) do
      nil ->
        case String.split(text, ":") do
          [v4, _port] -> address(v4)
          _ -> nil
        end

      ip ->
        ip
    end
  end

  defp address(text) do
    case :inet.parse_strict_address(String.to_charlist(text)) do
      {:ok, ip} -> normalize(ip)
      {:error, _} -> nil
    end
  rescue
    # Text that is not a valid charlist (invalid UTF-8).
    _ -> nil
  end

  @doc """
  An address tuple with IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) turned into IPv4;
  `nil` for anything that is not an address tuple.

      iex> Hotpath.RateLimiter.HTTP.ClientIP.normalize({0, 0, 0, 0, 0, 0xFFFF, 0x0A00, 0x0001})
      {10, 0, 0, 1}
  """
  @spec normalize(term()) :: :inet.ip_address() | nil
  def normalize({0, 0, 0, 0, 0, 0xFFFF, hi, lo}) when hi in 0..0xFFFF and lo in 0..0xFFFF,
    do: {hi >>> 8, hi &&& 0xFF, lo >>> 8, lo &&& 0xFF}

  def normalize(ip) when is_tuple(ip) do
    if to_integer(ip), do: ip, else: nil
  end

  def normalize(_), do: nil

  @doc """
  The key text of an address: IPv4 as is, IPv6 reduced to its first `ipv6_prefix` bits (a
  client usually holds a whole /64, so one IPv6 client is one key).

      iex> alias Hotpath.RateLimiter.HTTP.ClientIP
      iex> ClientIP.key({203, 0, 113, 9}, 64)
      "203.0.113.9"
      iex> ClientIP.key({0x2001, 0xDB8, 1, 2, 3, 4, 5, 6}, 64)
      "2001:db8:1:2::/64"
      iex> ClientIP.key({0x2001, 0xDB8, 1, 2, 3, 4, 5, 6}, 128)
      "2001:db8:1:2:3:4:5:6"
  """
  @spec key(:inet.ip_address(), 1..128) :: String.t()
  def key({_, _, _, _} = ip, _ipv6_prefix), do: ip |> :inet.ntoa() |> List.to_string()

  def key(ip, 128), do: ip |> :inet.ntoa() |> List.to_string()

  def key(ip, prefix) do
    {:inet6, n} = to_integer(ip)
    masked = n &&& mask(prefix, 128)
    <<a::16, b::16, c::16, d::16, e::16, f::16, g::16, h::16>> = <<masked::128>>
    List.to_string(:inet.ntoa({a, b, c, d, e, f, g, h})) <> "/" <> Integer.to_string(prefix)
  end

  defp to_integer({a, b, c, d} = ip)
       when a in 0..255 and b in 0..255 and c in 0..255 and d in 0..255,
       do: {:inet, ip |> Tuple.to_list() |> Enum.reduce(0, &((&2 <<< 8) + &1))}

  defp to_integer({_, _, _, _, _, _, _, _} = ip) do
    words = Tuple.to_list(ip)

    if Enum.all?(words, &(is_integer(&1) and &1 in 0..0xFFFF)),
      do: {:inet6, Enum.reduce(words, 0, &((&2 <<< 16) + &1))},
      else: nil
  end

  defp to_integer(_), do: nil

  defp bits(:inet), do: 32
  defp bits(:inet6), do: 128

  defp mask(len, width), do: ((1 <<< len) - 1) <<< (width - len)
end
