defmodule Hotpath.Metrics.PrometheusServerTest do
  # A real Prometheus server (Debian's package) scrapes a Hotpath.Metrics instance through
  # Hotpath.Metrics.HTTP, with its own `accept` header: with native histograms enabled it asks
  # for the protobuf format. Its HTTP API must then answer quantiles from the native
  # histograms within the documented bound of Hotpath's own, counts and sums exactly, and the
  # exemplars.
  use ExUnit.Case, async: false

  alias Hotpath.{FakeTelemetry, Metrics}
  alias Hotpath.Test.{PrometheusServer, ScrapeServer}

  @moduletag :prometheus_server
  @moduletag timeout: 180_000

  # 2^(2^-8) - 1: a native bucket of schema 8, the documented bound at 1 % relative error.
  @native_error :math.pow(2, :math.pow(2, -8)) - 1

  setup do
    {:ok, _} = Application.ensure_all_started(:inets)
    name = :"prometheus_server_#{System.unique_integer([:positive])}"

    start_supervised!(
      {Metrics,
       name: name,
       metrics: [
         Metrics.distribution("shop.checkout.duration",
           tags: [:route],
           reporter_options: [buckets: [0.01, 0.1, 1, 10], exemplar: :trace_id]
         ),
         Metrics.summary("shop.checkout.wait", reporter_options: [exemplar: :trace_id]),
         Metrics.counter("shop.checkout.count", reporter_options: [exemplar: :trace_id])
       ]}
    )

    # 1,001 values over four decades (the summary's cross zero), a trace id on every tenth
    # event. An odd count keeps q * count fractional for the quantiles asked, so that
    # Prometheus (which walks from the top for q >= 0.5 since 2.46) and Hotpath's nearest
    # rank pick the same value: with an integer rank the two may differ by one value.
    for i <- 1..1001 do
      duration = 0.001 * :math.pow(1.01, i)
      metadata = %{route: "/pay"}

      metadata =
        if rem(i, 10) == 0, do: Map.put(metadata, :trace_id, "trace-#{i}"), else: metadata

      FakeTelemetry.execute(
        [:shop, :checkout],
        %{duration: duration, wait: 2.0 - i / 100},
        metadata
      )
    end

    scrape = ScrapeServer.start(Metrics.HTTP.init(metrics: name))
    prometheus = PrometheusServer.start("127.0.0.1:#{elem(scrape, 1)}")

    on_exit(fn ->
      PrometheusServer.stop(prometheus)
      ScrapeServer.stop(scrape)
    end)

    %{name: name, prometheus: prometheus}
  end

  defp number(text) do
    case Float.parse(text) do
      {value, ""} -> value
      _ -> flunk("not a number: #{text}")
    end
  end

  defp hotpath_series(name, metric) do
    name |> Metrics.snapshot() |> Enum.find(&(&1.name == metric)) |> Map.fetch!(:series) |> hd()
  end

  test "quantiles from native histograms, exact counts and sums, and exemplars", %{
    name: name,
    prometheus: prometheus
  } do
    duration = hotpath_series(name, [:shop, :checkout, :duration])
    wait = hotpath_series(name, [:shop, :checkout, :wait])
    assert duration.count == 1001

    [{labels, count}] =
      PrometheusServer.eventually(prometheus, 60, "a scrape with every event", fn ->
        case PrometheusServer.query(prometheus, "histogram_count(shop_checkout_duration)") do
          [{_, "1001"}] = found -> found
          _ -> nil
        end
      end)

    assert labels["route"] == "/pay"
    assert count == "1001"

    # Native, not classic: the classic series do not exist.
    assert PrometheusServer.query(prometheus, "shop_checkout_duration_bucket") == []

    for {q, own} <- [{0.5, duration.quantiles[0.5]}, {0.99, duration.quantiles[0.99]}] do
      [{_, value}] =
        PrometheusServer.query(prometheus, "histogram_quantile(#{q}, shop_checkout_duration)")

      value = number(value)

      assert abs(value - own) <= @native_error * own,
             "q=#{q}: Prometheus #{value}, Hotpath #{own}, bound #{@native_error}"
    end

    [{_, sum}] = PrometheusServer.query(prometheus, "histogram_sum(shop_checkout_duration)")
    assert number(sum) == duration.sum

    # A summary is a native histogram in this format, negative values included.
    [{_, wait_count}] = PrometheusServer.query(prometheus, "histogram_count(shop_checkout_wait)")
    assert wait_count == "1001"
    [{_, wait_sum}] = PrometheusServer.query(prometheus, "histogram_sum(shop_checkout_wait)")
    assert_in_delta number(wait_sum), wait.sum, 1.0e-9

    [{_, median}] =
      PrometheusServer.query(prometheus, "histogram_quantile(0.5, shop_checkout_wait)")

    own = wait.quantiles[0.5]

    assert abs(number(median) - own) <= @native_error * abs(own) + 1.0e-12,
           "median: Prometheus #{median}, Hotpath #{own}"

    [{_, total}] = PrometheusServer.query(prometheus, "shop_checkout_count_total")
    assert total == "1001"

    # Exemplars: the last traced event of each classic bucket, and of the counter.
    now = System.os_time(:second)

    exemplars =
      PrometheusServer.eventually(prometheus, 30, "exemplars stored", fn ->
        data =
          PrometheusServer.api(prometheus, "/api/v1/query_exemplars",
            query: ~s({__name__=~"shop_checkout_.*"}),
            start: now - 600,
            end: now + 600
          )

        ids =
          for %{"seriesLabels" => series, "exemplars" => list} <- data,
              %{"labels" => %{"trace_id" => id}, "value" => value} <- list,
              do: {series["__name__"], id, number(value)}

        names = ids |> Enum.map(&elem(&1, 0)) |> Enum.uniq() |> Enum.sort()

        if names == ["shop_checkout_count_total", "shop_checkout_duration", "shop_checkout_wait"],
          do: ids
      end)

    # The last traced value at most 0.01 (bucket le=0.01) is event 230's: 0.001 * 1.01^230.
    assert {"shop_checkout_duration", "trace-230", value} =
             Enum.find(exemplars, fn {metric, _, v} ->
               metric == "shop_checkout_duration" and v <= 0.01
             end)

    assert_in_delta value, 0.001 * :math.pow(1.01, 230), 1.0e-12
    assert {"shop_checkout_count_total", "trace-1000", 1.0} in exemplars
    assert {"shop_checkout_wait", "trace-1000", -8.0} in exemplars
  end
end
