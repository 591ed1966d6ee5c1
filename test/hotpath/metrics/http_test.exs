defmodule Hotpath.Metrics.HTTPTest do
  use ExUnit.Case, async: true

  alias Hotpath.Metrics
  alias Hotpath.Metrics.HTTP

  doctest HTTP

  setup do
    name = :"metrics_http_#{System.unique_integer([:positive])}"
    start_supervised!({Metrics, name: name, metrics: [Metrics.counter("demo.requests.count")]})
    Metrics.record(name, "demo.requests.count", nil)
    %{name: name}
  end

  test "serves the exposition on GET at the path, with the 0.0.4 content type", %{name: name} do
    config = HTTP.init(metrics: name)
    {200, headers, body} = HTTP.response(config, %{method: "GET", request_path: "/metrics"})
    assert headers == [{"content-type", "text/plain; version=0.0.4; charset=utf-8"}]
    body = IO.iodata_to_binary(body)
    assert body =~ "demo_requests_count_total 1\n"
    assert {_, 0} = Hotpath.Test.Promtool.check(body)
  end

  test "HEAD gets no body; other methods 405; other paths pass", %{name: name} do
    config = HTTP.init(metrics: name, path: "/internal/metrics")

    assert {200, _, ""} =
             HTTP.response(config, %{method: "HEAD", request_path: "/internal/metrics"})

    assert {405, headers, _} =
             HTTP.response(config, %{method: "POST", request_path: "/internal/metrics"})

    assert {"allow", "GET, HEAD"} in headers
    assert HTTP.response(config, %{method: "GET", request_path: "/metrics"}) == :pass
    assert HTTP.response(config, %{method: "GET"}) == :pass
  end

  test "path: nil answers every request", %{name: name} do
    config = HTTP.init(metrics: name, path: nil)
    assert {200, _, _} = HTTP.response(config, %{method: "GET", request_path: "/anything"})
  end

  test "503 when the instance is not running" do
    config = HTTP.init(metrics: :metrics_http_not_running)

    assert {503, _, body} = HTTP.response(config, %{method: "GET", request_path: "/metrics"})

    assert body =~ "not running"
  end

  test "bad options" do
    assert_raise ArgumentError, ~r/missing required option :metrics/, fn -> HTTP.init([]) end

    assert_raise ArgumentError, ~r/:metrics must be a non-nil, non-boolean atom/, fn ->
      HTTP.init(metrics: "m")
    end

    assert_raise ArgumentError, ~r/:path must be nil/, fn -> HTTP.init(metrics: :m, path: 1) end
    assert_raise ArgumentError, ~r/unknown options/, fn -> HTTP.init(metrics: :m, port: 1) end
  end
end
