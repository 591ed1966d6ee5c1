defmodule Hotpath.RateLimiter.HTTPPoliciesTest do
  # Hotpath.RateLimiter.HTTP (and so the Plug) for limiters of several policies and bans.
  use ExUnit.Case, async: true

  alias Hotpath.RateLimiter.HTTP
  alias Hotpath.RateLimiter.HTTP.Result
  alias Hotpath.Test.JSONDecoder

  @policies [
    %{name: "burst", quota: 10, window: 1, id: :burst},
    %{name: "daily", quota: 10_000, window: 86_400, id: :daily}
  ]

  defp limiter!(opts) do
    name = :"http_policies_#{System.unique_integer([:positive])}"
    start_supervised!({Hotpath.RateLimiter, [name: name, sweep_every: :infinity] ++ opts})
    name
  end

  defp request, do: %{remote_ip: {203, 0, 113, 7}, req_headers: []}

  defp header(%Result{headers: headers}, name) do
    case for({^name, v} <- headers, do: v) do
      [value] -> value
      [] -> nil
    end
  end

  describe "headers/3 of several policies" do
    test "RateLimit-Policy lists every policy; RateLimit the one closest to exhaustion" do
      assert HTTP.headers({:allow, 3, 41_000_200, :daily}, @policies, :draft) == [
               {"ratelimit-policy", ~s("burst";q=10;w=1, "daily";q=10000;w=86400)},
               {"ratelimit", ~s("daily";r=3;t=41001)}
             ]

      assert HTTP.headers({:allow, 9, 100, :burst}, @policies, :draft) == [
               {"ratelimit-policy", ~s("burst";q=10;w=1, "daily";q=10000;w=86400)},
               {"ratelimit", ~s("burst";r=9;t=1)}
             ]
    end

    test "a denial reports the first refusing policy, with the wait" do
      assert [_, {"ratelimit", ~s("daily";r=0;t=2)}] =
               HTTP.headers({:deny, 1_200, 5_000, [:daily]}, @policies, :draft)

      assert [_, {"ratelimit", ~s("burst";r=0;t=60)}] =
               HTTP.headers({:deny, 60_000, 60_000, [:burst, :daily]}, @policies, :draft)

      assert [_, {"ratelimit", ~s("burst";r=0;t=5)}] =
               HTTP.headers({:deny, :infinity, 4_100, [:burst]}, @policies, :draft)

      assert [_, {"ratelimit", ~s("burst";r=0;t=30)}] =
               HTTP.headers({:deny, 30_000, 30_000, :banned}, @policies, :draft)
    end

    test "legacy headers report the most restrictive policy" do
      assert HTTP.headers({:allow, 3, 41_000_200, :daily}, @policies, :legacy) == [
               {"x-ratelimit-limit", "10000"},
               {"x-ratelimit-remaining", "3"},
               {"x-ratelimit-reset", "41001"}
             ]

      assert HTTP.headers({:deny, 400, 400, [:burst]}, @policies, :legacy) == [
               {"x-ratelimit-limit", "10"},
               {"x-ratelimit-remaining", "0"},
               {"x-ratelimit-reset", "1"}
             ]

      assert length(HTTP.headers({:allow, 1, 1, :burst}, @policies, :both)) == 5
      assert HTTP.headers({:allow, 1, 1, :burst}, @policies, :none) == []
    end
  end

  describe "problem/3 of several policies" do
    test "violated-policies lists the refusing policies" do
      body = HTTP.problem({:deny, 1_500, 9_000, [:burst, :daily]}, @policies, 429)
      decoded = JSONDecoder.decode!(body)
      assert decoded["violated-policies"] == ["burst", "daily"]
      assert decoded["status"] == 429

      assert decoded["detail"] ==
               "Quota of burst (10 requests per 1 s), daily (10000 requests per 86400 s) " <>
                 "exceeded; retry in 2 s."

      never = JSONDecoder.decode!(HTTP.problem({:deny, :infinity, 0, [:burst]}, @policies, 429))
      assert never["violated-policies"] == ["burst"]
      assert never["detail"] =~ "can never be admitted"

      banned = JSONDecoder.decode!(HTTP.problem({:deny, 30_000, 30_000, :banned}, @policies, 429))
      assert banned["violated-policies"] == []
      assert banned["detail"] == "This client is banned for 30 s after repeated denials."
    end
  end

  describe "check/2 against a running limiter of several policies" do
    test "headers, the denial and its body" do
      limiter =
        limiter!(
          policies: [
            burst: [algorithm: :fixed_window, limit: 2, period: 60_000],
            daily: [algorithm: :gcra, limit: 100, period: 86_400_000],
            # Not a multiple of a second: announced as 3 per 2 s.
            odd: [algorithm: :sliding_window, limit: 2, period: 1_500]
          ]
        )

      config = HTTP.init(limiter: limiter, problem_details: true, headers: :both)

      assert HTTP.policy(config) == [
               %{name: "burst", quota: 2, window: 60, id: :burst},
               %{name: "daily", quota: 100, window: 86_400, id: :daily},
               %{name: "odd", quota: 2, window: 2, id: :odd}
             ]

      first = HTTP.check(config, request())
      assert %Result{action: :allow, decision: {:allow, 1, _, _}} = first

      assert header(first, "ratelimit-policy") ==
               ~s("burst";q=2;w=60, "daily";q=100;w=86400, "odd";q=2;w=2)

      assert header(first, "ratelimit") =~ ~r/\A"(burst|odd)";r=1;t=\d+\z/
      assert header(first, "x-ratelimit-remaining") == "1"

      assert %Result{action: :allow} = HTTP.check(config, request())
      denied = HTTP.check(config, request())
      assert %Result{action: :deny, status: 429, decision: {:deny, retry, _, violated}} = denied
      assert :burst in violated
      assert header(denied, "retry-after") == Integer.to_string(div(retry + 999, 1000))
      assert header(denied, "content-type") == "application/problem+json"
      assert "burst" in JSONDecoder.decode!(denied.body)["violated-policies"]
    end

    test "a banned client gets the ban's wait; a single policy with bans keeps its headers" do
      limiter = limiter!(limit: 1, period: 60_000, ban: [after: 1, within: 60_000, for: 120_000])
      config = HTTP.init(limiter: limiter, policy_name: "api")
      assert %Result{action: :allow} = HTTP.check(config, request())
      assert header(HTTP.check(config, request()), "retry-after") in ["120", "119"]
      banned = HTTP.check(config, request())
      assert %Result{action: :deny, decision: {:deny, _, _}} = banned
      assert header(banned, "retry-after") in ["120", "119"]
      assert header(banned, "ratelimit-policy") == ~s("api";q=1;w=60)
    end

    test "a cluster limiter's policy comes from its config" do
      limiter = limiter!(limit: 7, period: 1_000, cluster: :local_share)

      assert HTTP.policy(HTTP.init(limiter: limiter, policy_name: "c")) ==
               %{name: "c", quota: 7, window: 1}
    end
  end
end
