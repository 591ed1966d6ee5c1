defmodule Hotpath.RateLimiter.HTTPTest do
  use ExUnit.Case, async: true

  alias Hotpath.RateLimiter.HTTP
  alias Hotpath.RateLimiter.HTTP.Result
  alias Hotpath.Test.JSONDecoder

  doctest Hotpath.RateLimiter.HTTP
  doctest Hotpath.RateLimiter.HTTP.Config

  defp limiter!(opts) do
    name = :"http_test_#{System.unique_integer([:positive])}"
    start_supervised!({Hotpath.RateLimiter, [name: name] ++ opts})
    name
  end

  defp request(ip \\ {203, 0, 113, 7}, headers \\ []), do: %{remote_ip: ip, req_headers: headers}

  defp header(%Result{headers: headers}, name) do
    case for({^name, v} <- headers, do: v) do
      [value] -> value
      [] -> nil
    end
  end

  describe "check/2 against a running limiter" do
    test "allows up to the limit, then 429 with retry-after and draft fields" do
      limiter = limiter!(algorithm: :fixed_window, limit: 2, period: 60_000)
      config = HTTP.init(limiter: limiter, policy_name: "api")

      first = HTTP.check(config, request())
      assert %Result{action: :allow, status: nil, body: nil, key: "203.0.113.7"} = first
      assert {:allow, 1, _} = first.decision
      assert header(first, "ratelimit-policy") == ~s("api";q=2;w=60)
      assert header(first, "ratelimit") =~ ~r/\A"api";r=1;t=\d+\z/
      assert header(first, "retry-after") == nil

      assert %Result{action: :allow} = HTTP.check(config, request())
      denied = HTTP.check(config, request())

      assert %Result{action: :deny, status: 429, decision: {:deny, retry_ms, _}} = denied
      retry_after = header(denied, "retry-after")
      assert String.to_integer(retry_after) == div(retry_ms + 999, 1000)
      assert String.to_integer(retry_after) in 1..60
      assert header(denied, "ratelimit") == ~s("api";r=0;t=#{retry_after})
      assert header(denied, "content-type") == "text/plain; charset=utf-8"
      assert denied.body == "Too Many Requests\n"

      # Another client has its own key.
      assert %Result{action: :allow} = HTTP.check(config, request({198, 51, 100, 1}))
    end

    test "legacy and both header styles" do
      limiter = limiter!(limit: 10, period: 1_000)

      legacy = HTTP.check(HTTP.init(limiter: limiter, headers: :legacy), request())
      assert header(legacy, "x-ratelimit-limit") == "10"
      assert header(legacy, "x-ratelimit-remaining") == "9"
      assert header(legacy, "x-ratelimit-reset") == "1"
      assert header(legacy, "ratelimit") == nil

      both = HTTP.check(HTTP.init(limiter: limiter, headers: :both), request())
      assert header(both, "x-ratelimit-remaining") == "8"
      assert header(both, "ratelimit") =~ ~r/;r=8;t=1\z/

      assert HTTP.check(HTTP.init(limiter: limiter, headers: :none), request()).headers == []
    end

    test "the default policy name is the limiter's name and q/w come from its config" do
      limiter = limiter!(limit: 5, period: 500)
      result = HTTP.check(HTTP.init(limiter: limiter), request())
      assert header(result, "ratelimit-policy") == ~s("#{limiter}";q=10;w=1)

      overridden = HTTP.init(limiter: limiter, quota: 7, window: 3, policy_name: ~S(a"b\c))

      assert header(HTTP.check(overridden, request()), "ratelimit-policy") ==
               ~S("a\"b\\c";q=7;w=3)
    end

    test "problem+json body on a deny" do
      limiter = limiter!(limit: 1, period: 60_000)
      config = HTTP.init(limiter: limiter, problem_details: true, policy_name: "api")
      assert %Result{action: :allow} = HTTP.check(config, request())
      denied = HTTP.check(config, request())

      assert header(denied, "content-type") == "application/problem+json"
      body = JSONDecoder.decode!(denied.body)

      assert %{
               "type" => "https://iana.org/assignments/http-problem-types#quota-exceeded",
               "status" => 429,
               "violated-policies" => ["api"],
               "title" => _,
               "detail" => detail
             } = body

      assert detail =~ "retry in #{header(denied, "retry-after")} s"
    end

    test "a cost that can never fit is denied without retry-after" do
      limiter = limiter!(limit: 3, period: 1_000)
      config = HTTP.init(limiter: limiter, cost: 4, problem_details: true)
      denied = HTTP.check(config, request())

      assert %Result{action: :deny, status: 429, decision: {:deny, :infinity, _}} = denied
      assert header(denied, "retry-after") == nil
      assert header(denied, "ratelimit") =~ ~r/;r=0;t=\d+\z/
      assert JSONDecoder.decode!(denied.body)["detail"] =~ "can never be admitted"
    end

    test "a cost function of the request" do
      limiter = limiter!(limit: 10, period: 60_000)
      config = HTTP.init(limiter: limiter, cost: fn %{cost: c} -> c end)
      assert {:allow, 3, _} = HTTP.check(config, Map.put(request(), :cost, 7)).decision

      assert_raise ArgumentError, ~r/positive integer, got: 0/, fn ->
        HTTP.check(config, Map.put(request(), :cost, 0))
      end
    end

    test "custom deny status" do
      limiter = limiter!(limit: 1, period: 60_000)
      config = HTTP.init(limiter: limiter, deny_status: 503)
      HTTP.check(config, request())
      assert %Result{status: 503} = HTTP.check(config, request())
    end
  end

  describe "keys" do
    test "a function of the request, an MFA, or a fixed key" do
      limiter = limiter!(limit: 1, period: 60_000)

      by_user = HTTP.init(limiter: limiter, key: fn req -> req[:user] end)

      assert %Result{key: "u1", action: :allow} =
               HTTP.check(by_user, Map.put(request(), :user, "u1"))

      assert %Result{action: :deny} = HTTP.check(by_user, Map.put(request(), :user, "u1"))

      mfa = HTTP.init(limiter: limiter, key: {Map, :get, [:user]})
      assert %Result{key: "u2", action: :allow} = HTTP.check(mfa, Map.put(request(), :user, "u2"))

      fixed = HTTP.init(limiter: limiter, key: {:fixed, :everyone})
      assert %Result{key: :everyone, action: :allow} = HTTP.check(fixed, request())
      assert %Result{action: :deny} = HTTP.check(fixed, request({1, 2, 3, 4}))
    end

    test "nil keys: allow (default), deny, or a shared key" do
      limiter = limiter!(limit: 1, period: 60_000)
      nil_key = fn _ -> nil end

      allow = HTTP.init(limiter: limiter, key: nil_key)

      assert %Result{action: :allow, headers: [], decision: :no_key} =
               HTTP.check(allow, request())

      assert %Result{action: :allow} = HTTP.check(allow, request())

      deny = HTTP.init(limiter: limiter, key: nil_key, on_nil_key: :deny)
      assert %Result{action: :deny, status: 429, decision: :no_key} = HTTP.check(deny, request())

      shared = HTTP.init(limiter: limiter, key: nil_key, on_nil_key: {:key, :anonymous})
      assert %Result{action: :allow, key: :anonymous} = HTTP.check(shared, request())
      assert %Result{action: :deny, key: :anonymous} = HTTP.check(shared, request({9, 9, 9, 9}))

      # The shared key is charged the request's cost.
      costly = HTTP.init(limiter: limiter, key: nil_key, on_nil_key: {:key, :k2}, cost: 2)
      assert %Result{decision: {:deny, :infinity, _}} = HTTP.check(costly, request())
    end

    test "a request without remote_ip has a nil key" do
      limiter = limiter!(limit: 1, period: 60_000)
      config = HTTP.init(limiter: limiter, on_nil_key: :deny)
      assert %Result{decision: :no_key} = HTTP.check(config, %{req_headers: []})

      assert %Result{decision: :no_key} =
               HTTP.check(config, %{remote_ip: :bogus, req_headers: []})
    end

    test "binary keys over the limiter's 4096 bytes are hashed instead of raising" do
      limiter = limiter!(limit: 1, period: 60_000)
      config = HTTP.init(limiter: limiter, key: fn req -> req.id end)
      long = String.duplicate("x", 10_000)
      assert %Result{action: :allow, key: key} = HTTP.check(config, %{id: long})
      assert byte_size(key) == 32
      assert %Result{action: :deny} = HTTP.check(config, %{id: long})
    end

    test "a key the limiter rejects while it is running raises" do
      limiter = limiter!(limit: 1, period: 60_000)
      config = HTTP.init(limiter: limiter, key: fn _ -> {String.duplicate("x", 5_000)} end)
      assert_raise ArgumentError, fn -> HTTP.check(config, request()) end
    end

    test "client IP behind trusted proxies (IPv4 and IPv6)" do
      limiter = limiter!(limit: 100, period: 60_000)

      config = HTTP.init(limiter: limiter, trusted_proxies: ["10.0.0.0/8", "2001:db8:ffff::/48"])

      via = fn peer, xff -> HTTP.key(config, request(peer, [{"x-forwarded-for", xff}])) end

      assert via.({10, 1, 1, 1}, "198.51.100.4") == "198.51.100.4"
      assert via.({10, 1, 1, 1}, "1.1.1.1, 198.51.100.4, 10.2.2.2") == "198.51.100.4"

      assert via.({0x2001, 0xDB8, 0xFFFF, 0, 0, 0, 0, 1}, "2001:db8:1:2::99") ==
               "2001:db8:1:2::/64"

      # Spoofed by a client that is not a trusted proxy: ignored.
      assert via.({198, 51, 100, 4}, "1.2.3.4") == "198.51.100.4"
      assert via.({0x2001, 0xDB8, 5, 0, 0, 0, 0, 1}, "1.2.3.4") == "2001:db8:5::/64"
      # Garbage in the header: the last trusted hop.
      assert via.({10, 1, 1, 1}, "not-an-ip") == "10.1.1.1"
      assert via.({10, 1, 1, 1}, <<255, 254>>) == "10.1.1.1"
    end

    test "the forwarded header when configured, and only that header" do
      limiter = limiter!(limit: 100, period: 60_000)

      config = HTTP.init(limiter: limiter, trusted_proxies: ["127.0.0.1"], ip_header: "forwarded")

      headers = [
        {"x-forwarded-for", "6.6.6.6"},
        {"forwarded", ~s(for="[2001:db8::7]:443";proto=https, for=127.0.0.1)}
      ]

      assert HTTP.key(config, request({127, 0, 0, 1}, headers)) == "2001:db8::/64"

      full = HTTP.init(limiter: limiter, trusted_proxies: ["127.0.0.1"], ipv6_prefix: 128)

      assert HTTP.key(full, request({127, 0, 0, 1}, [{"x-forwarded-for", "2001:db8::7"}])) ==
               "2001:db8::7"
    end
  end

  describe "an unavailable limiter" do
    test "fails open by default" do
      config = HTTP.init(limiter: :http_test_not_started)

      assert %Result{action: :allow, headers: [], decision: :unavailable, key: "203.0.113.7"} =
               HTTP.check(config, request())

      # Fixed policy numbers do not make an unstarted limiter available.
      fixed = HTTP.init(limiter: :http_test_not_started, quota: 1, window: 1)
      assert %Result{decision: :unavailable} = HTTP.check(fixed, request())
    end

    test "fails closed with a 503 on request" do
      config = HTTP.init(limiter: :http_test_not_started, on_unavailable: :deny)
      result = HTTP.check(config, request())
      assert %Result{action: :deny, status: 503, decision: :unavailable} = result
      assert header(result, "retry-after") == "1"
    end

    test "a stopped limiter is unavailable" do
      limiter = limiter!(limit: 1, period: 60_000)
      config = HTTP.init(limiter: limiter, on_unavailable: :deny)
      assert %Result{action: :allow} = HTTP.check(config, request())
      stop_supervised!({Hotpath.RateLimiter, limiter})
      assert %Result{status: 503, decision: :unavailable} = HTTP.check(config, request())
    end
  end

  describe "pure helpers" do
    test "retry-after rounds up and is never 0" do
      assert HTTP.retry_after(0) == 1
      assert HTTP.retry_after(1) == 1
      assert HTTP.retry_after(1_000) == 1
      assert HTTP.retry_after(1_001) == 2
      assert HTTP.retry_after(59_999) == 60
    end

    test "header fields for each decision" do
      policy = %{name: "p", quota: 3, window: 10}

      assert HTTP.headers({:allow, 2, 0}, policy, :draft) == [
               {"ratelimit-policy", ~s("p";q=3;w=10)},
               {"ratelimit", ~s("p";r=2;t=0)}
             ]

      assert HTTP.headers({:deny, 1, 9_000}, policy, :both) == [
               {"ratelimit-policy", ~s("p";q=3;w=10)},
               {"ratelimit", ~s("p";r=0;t=1)},
               {"x-ratelimit-limit", "3"},
               {"x-ratelimit-remaining", "0"},
               {"x-ratelimit-reset", "1"}
             ]

      assert HTTP.headers({:deny, :infinity, 2_500}, policy, :legacy) == [
               {"x-ratelimit-limit", "3"},
               {"x-ratelimit-remaining", "0"},
               {"x-ratelimit-reset", "3"}
             ]
    end

    test "quota and window from sub-second and odd periods" do
      assert HTTP.quota_window(1, 1) == {1000, 1}
      assert HTTP.quota_window(1, 86_400_000) == {1, 86_400}
      assert HTTP.quota_window(3, 2_500) == {3, 3}
    end
  end

  describe "init/1" do
    test "rejects bad options with clear messages" do
      bad = [
        {[], ~r/missing required option :limiter/},
        {[limiter: "name"], ~r/:limiter must be/},
        {[limiter: :l, nope: 1], ~r/unknown options \[:nope\]/},
        {[limiter: :l, key: :ip_address], ~r/:key must be .*, got: :ip_address/},
        {[limiter: :l, key: fn -> 1 end], ~r/:key must be/},
        {[limiter: :l, cost: 0], ~r/:cost must be .*, got: 0/},
        {[limiter: :l, trusted_proxies: ["10.0.0.0/33"]],
         ~r/invalid trusted proxy "10.0.0.0\/33"/},
        {[limiter: :l, trusted_proxies: ["nonsense"]], ~r/invalid trusted proxy/},
        {[limiter: :l, trusted_proxies: "10.0.0.0/8"], ~r/must be a list/},
        {[limiter: :l, ip_header: "X-Forwarded-For"], ~r/:ip_header must be/},
        {[limiter: :l, ipv6_prefix: 0], ~r/:ipv6_prefix must be/},
        {[limiter: :l, on_nil_key: :skip], ~r/:on_nil_key must be/},
        {[limiter: :l, on_nil_key: {:key, nil}], ~r/:on_nil_key must be/},
        {[limiter: :l, on_unavailable: :open], ~r/:on_unavailable must be/},
        {[limiter: :l, headers: :fancy], ~r/:headers must be/},
        {[limiter: :l, problem_details: "yes"], ~r/:problem_details must be/},
        {[limiter: :l, deny_status: 200], ~r/:deny_status must be/},
        {[limiter: :l, policy_name: "ünï"], ~r/:policy_name must be/},
        {[limiter: :l, quota: 0], ~r/:quota must be/},
        {[limiter: :l, window: 1.5], ~r/:window must be/},
        {[limiter: :l, key: {:fixed, 1}, trusted_proxies: []], ~r/only apply with key: :ip/},
        {:not_a_list, ~r/must be a keyword list/}
      ]

      for {opts, message} <- bad do
        assert_raise ArgumentError, message, fn -> HTTP.init(opts) end
      end
    end

    test "the config holds only escapable terms for compile-time plug options" do
      config =
        HTTP.init(limiter: MyApp.Limiter, cost: &map_size/1, trusted_proxies: ["10.0.0.0/8"])

      assert Code.eval_quoted(Macro.escape(config)) |> elem(0) == config
    end
  end
end
