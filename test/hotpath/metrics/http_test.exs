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

    assert headers == [
             {"content-type", "text/plain; version=0.0.4; charset=utf-8"},
             {"vary", "accept"}
           ]

    body = IO.iodata_to_binary(body)
    assert body =~ "demo_requests_count_total 1\n"
    assert {_, 0} = Hotpath.Test.Promtool.check(body)
  end

  # What Prometheus servers send (2.x's default scrape protocols, then 3.x's).
  @prometheus_2 "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
  @prometheus_3 "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
  @protobuf "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.9,text/plain;version=0.0.4;q=0.5"

  test "serves OpenMetrics to a scraper that asks for it, as the Prometheus server does", %{
    name: name
  } do
    config = HTTP.init(metrics: name)

    for accept <- [@prometheus_2, @prometheus_3] do
      request = %{method: "GET", request_path: "/metrics", req_headers: [{"accept", accept}]}
      {200, headers, body} = HTTP.response(config, request)

      assert {"content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8"} in headers

      body = IO.iodata_to_binary(body)
      assert body =~ "# TYPE demo_requests_count counter\ndemo_requests_count_total 1\n"
      assert String.ends_with?(body, "# EOF\n")
      assert {:ok, _samples} = Hotpath.Test.OpenMetricsParser.parse(body)
    end

    request = %{method: "GET", request_path: "/metrics", req_headers: [{"accept", @protobuf}]}
    assert {200, headers, body} = HTTP.response(config, request)
    assert {"content-type", Hotpath.Metrics.content_type(:protobuf)} in headers
    assert IO.iodata_to_binary(body) == Hotpath.Metrics.prometheus(name, format: :protobuf)
  end

  test "negotiate/1 takes the highest q, the first on a tie, and skips what it cannot serve" do
    for {accept, format} <- [
          {nil, :prometheus},
          {"", :prometheus},
          {"text/plain", :prometheus},
          {"application/openmetrics-text", :openmetrics},
          {"Application/OpenMetrics-Text; Version=1.0.0", :openmetrics},
          {"text/plain;q=0.4,application/openmetrics-text;q=0.5", :openmetrics},
          {"application/openmetrics-text;q=0.5,text/plain;q=0.5", :openmetrics},
          {"text/plain;q=0.5,application/openmetrics-text;q=0.5", :prometheus},
          {"application/openmetrics-text;q=0,text/plain;q=0.1", :prometheus},
          {"application/openmetrics-text;version=0.0.1", :prometheus},
          {"application/openmetrics-text;version=\"1.0.0\"", :openmetrics},
          {"application/openmetrics-text;q=bad,text/plain;q=0.1", :prometheus},
          {"application/json", :prometheus},
          {"application/*;q=0.9,text/plain;q=0.5", :openmetrics},
          {@prometheus_2, :openmetrics},
          {@prometheus_3, :openmetrics},
          {@protobuf, :protobuf},
          {"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text,text/plain;q=0.1",
           :prometheus},
          {"application/vnd.google.protobuf;encoding=delimited", :prometheus},
          {"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.4,application/openmetrics-text;q=0.5",
           :openmetrics}
        ] do
      assert HTTP.negotiate(accept) == format, "#{inspect(accept)}"
    end
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
