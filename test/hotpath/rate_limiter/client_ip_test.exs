defmodule Hotpath.RateLimiter.HTTP.ClientIPTest do
  use ExUnit.Case, async: true

  alias Hotpath.RateLimiter.HTTP.ClientIP

  doctest ClientIP

  @trusted ClientIP.parse_cidrs!(["10.0.0.0/8", "192.168.1.1", "fd00::/8", "::1"])

  defp client(peer, headers, header \\ "x-forwarded-for"),
    do: ClientIP.client_ip(%{remote_ip: peer, req_headers: headers}, @trusted, header)

  test "CIDR membership for IPv4 and IPv6, including IPv4-mapped IPv6 peers" do
    assert ClientIP.trusted?({10, 255, 0, 1}, @trusted)
    refute ClientIP.trusted?({11, 0, 0, 1}, @trusted)
    assert ClientIP.trusted?({192, 168, 1, 1}, @trusted)
    refute ClientIP.trusted?({192, 168, 1, 2}, @trusted)
    assert ClientIP.trusted?({0xFD12, 0, 0, 0, 0, 0, 0, 9}, @trusted)
    refute ClientIP.trusted?({0xFE80, 0, 0, 0, 0, 0, 0, 9}, @trusted)
    assert ClientIP.trusted?({0, 0, 0, 0, 0, 0, 0, 1}, @trusted)
    assert ClientIP.trusted?({0, 0, 0, 0, 0, 0xFFFF, 0x0A01, 0x0203}, @trusted)
    refute ClientIP.trusted?({10, 0, 0, 1}, [])
    refute ClientIP.trusted?(:bogus, @trusted)
    # Host bits in a block are ignored; /0 matches everything of its family.
    assert ClientIP.parse_cidrs!(["10.1.2.3/8"]) == ClientIP.parse_cidrs!(["10.0.0.0/8"])
    assert ClientIP.trusted?({1, 2, 3, 4}, ClientIP.parse_cidrs!(["0.0.0.0/0"]))
    refute ClientIP.trusted?({0, 0, 0, 0, 0, 0, 0, 2}, ClientIP.parse_cidrs!(["0.0.0.0/0"]))
  end

  test "an untrusted peer is the client whatever it sends" do
    assert client({203, 0, 113, 1}, [{"x-forwarded-for", "10.0.0.5"}]) == {203, 0, 113, 1}

    assert client({203, 0, 113, 1}, [{"forwarded", "for=1.1.1.1"}], "forwarded") ==
             {203, 0, 113, 1}
  end

  test "walks the chain from the right, skipping trusted hops" do
    headers = [{"x-forwarded-for", "6.6.6.6, 198.51.100.2"}, {"x-forwarded-for", "10.0.0.3"}]
    assert client({10, 0, 0, 1}, headers) == {198, 51, 100, 2}
    # Every hop trusted: the leftmost.
    assert client({10, 0, 0, 1}, [{"x-forwarded-for", "10.0.0.9, 10.0.0.8"}]) == {10, 0, 0, 9}
    # No header: the peer itself.
    assert client({10, 0, 0, 1}, []) == {10, 0, 0, 1}
    # Ports and brackets.
    assert client({10, 0, 0, 1}, [{"x-forwarded-for", "198.51.100.2:5555"}]) == {198, 51, 100, 2}

    assert client({10, 0, 0, 1}, [{"x-forwarded-for", "[2001:db8::5]:80"}]) ==
             {0x2001, 0xDB8, 0, 0, 0, 0, 0, 5}
  end

  test "stops at an entry it cannot parse" do
    assert client({10, 0, 0, 1}, [{"x-forwarded-for", "198.51.100.2, junk, 10.0.0.2"}]) ==
             {10, 0, 0, 2}

    assert client({10, 0, 0, 1}, [{"x-forwarded-for", ""}]) == {10, 0, 0, 1}
    assert client({10, 0, 0, 1}, [{"x-forwarded-for", "[::1"}]) == {10, 0, 0, 1}
    assert client({10, 0, 0, 1}, [{"x-forwarded-for", <<0, 255>>}]) == {10, 0, 0, 1}
  end

  test "RFC 7239 forwarded elements" do
    chain = fn value ->
      ClientIP.forwarded_chain(%{req_headers: [{"forwarded", value}]}, "forwarded")
    end

    assert chain.("for=192.0.2.43") == [{192, 0, 2, 43}]

    assert chain.(~s(For="[2001:db8:cafe::17]:4711")) == [
             {0x2001, 0xDB8, 0xCAFE, 0, 0, 0, 0, 0x17}
           ]

    assert chain.("proto=https;for=192.0.2.43;by=203.0.113.43") == [{192, 0, 2, 43}]
    assert chain.("for=_hidden, for=unknown, by=1.2.3.4") == [nil, nil, nil]
    assert chain.(~s(for="unterminated)) == [nil]
    assert ClientIP.forwarded_chain(%{}, "forwarded") == []
  end

  test "peer addresses given as IPv4-mapped IPv6 are keyed as IPv4" do
    mapped = {0, 0, 0, 0, 0, 0xFFFF, 0xCB00, 0x7101}

    assert ClientIP.client_ip(%{remote_ip: mapped, req_headers: []}, [], "x-forwarded-for") ==
             {203, 0, 113, 1}
  end

  test "invalid CIDRs raise" do
    for bad <- [
          "10.0.0.0/",
          "10.0.0.0/8/8",
          "::/129",
          "10.0.0.256",
          "abc",
          42,
          {1, 2, 3},
          "1.2.3.4/x"
        ] do
      assert_raise ArgumentError, ~r/invalid trusted proxy/, fn ->
        ClientIP.parse_cidrs!([bad])
      end
    end

    assert ClientIP.parse_cidrs!([{127, 0, 0, 1}]) == [{:inet, 0x7F000001, 32}]
  end
end
