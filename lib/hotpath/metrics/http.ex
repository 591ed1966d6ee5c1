defmodule Hotpath.Metrics.HTTP do
  @schema [
    metrics: [type: :name, required: true, doc: "The `Hotpath.Metrics` instance"],
    path: [
      type: {:custom, __MODULE__, :path, ~s(nil or a string starting with "/")},
      default: "/metrics",
      doc:
        "The path served, or `nil` to answer every request that reaches it (for example " <>
          "behind a router's `forward`)"
    ]
  ]

  @moduledoc """
  Serving a `Hotpath.Metrics` instance to a Prometheus scraper over HTTP, without Plug: which
  requests are scrapes and what they get. `Hotpath.Metrics.Plug` is a few lines over it, and
  so is the `:inets` demo.

      config = Hotpath.Metrics.HTTP.init(metrics: MyApp.Metrics)

      case Hotpath.Metrics.HTTP.response(config, %{method: "GET", request_path: "/metrics"}) do
        {status, headers, body} -> # send it
        :pass -> # not a scrape: serve the request as usual
      end

  A request is a map with `:method`, `:request_path` and optionally `:req_headers`, a list of
  `{lowercase_name, value}` (a `Plug.Conn` is one). The body is `Hotpath.Metrics.prometheus/2`
  in the format the `accept` header prefers (see `negotiate/1`): the Prometheus protobuf
  format with native histograms when it asks for it first (as a Prometheus server with native
  histograms enabled does), OpenMetrics 1.0 text when it asks for
  `application/openmetrics-text` (as the Prometheus server does by default), else the
  Prometheus text format 0.0.4, each with its `content-type` (Prometheus 3 refuses a scrape
  without a valid one) and `vary: accept`.

  Options:

  #{Hotpath.Options.docs(@schema)}
  """

  @enforce_keys [:metrics]
  defstruct [:metrics, path: "/metrics"]

  @type t :: %__MODULE__{metrics: Hotpath.Metrics.instance(), path: String.t() | nil}

  @doc """
  Validates the options. Raises `ArgumentError` on an invalid one.

      iex> Hotpath.Metrics.HTTP.init(metrics: MyApp.Metrics)
      %Hotpath.Metrics.HTTP{metrics: MyApp.Metrics, path: "/metrics"}
      iex> Hotpath.Metrics.HTTP.init(metrics: MyApp.Metrics, path: "metrics")
      ** (ArgumentError) :path must be nil or a string starting with "/", got: "metrics" (Hotpath.Metrics.HTTP)
  """
  @spec init(keyword()) :: t()
  def init(opts),
    do: struct!(__MODULE__, Hotpath.Options.validate!(opts, @schema, inspect(__MODULE__)))

  @doc false
  # The `:path` option (a type of the options schema).
  def path(nil), do: {:ok, nil}
  def path("/" <> _ = path), do: {:ok, path}
  def path(_other), do: :error

  @doc """
  `:pass` when `request` is not a scrape (another path or method), else
  `{status, headers, body}`: `200` with the exposition (an empty body for `HEAD`), `405`
  for other methods on the path, `503` when the instance is not running.
  """
  @spec response(t(), map()) :: :pass | {pos_integer(), [{String.t(), String.t()}], iodata()}
  def response(%__MODULE__{path: path} = config, %{request_path: request_path} = request)
      when path == nil or path == request_path do
    case Map.get(request, :method) do
      method when method in ["GET", "HEAD"] ->
        scrape(config.metrics, method, negotiate(accept(request)))

      _ ->
        {405, [{"allow", "GET, HEAD"}, {"content-type", "text/plain; charset=utf-8"}],
         "Method Not Allowed\n"}
    end
  end

  def response(%__MODULE__{}, _request), do: :pass

  @doc """
  The format to answer a request whose `accept` header is `accept` (`nil` when it sent none):
  the acceptable range with the highest `q` (the first on a tie) among
  `application/vnd.google.protobuf` (with `proto=io.prometheus.client.MetricFamily` and
  `encoding=delimited`), `application/openmetrics-text` (version 1.0.0 or none),
  `text/plain` (version 0.0.4 or none), `text/*`, `application/*` and `*/*`. Anything else
  (other versions or encodings, `q=0`) is skipped; when nothing is left the answer is the
  Prometheus format, which every scraper reads.

      iex> Hotpath.Metrics.HTTP.negotiate(nil)
      :prometheus
      iex> Hotpath.Metrics.HTTP.negotiate("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.1")
      :openmetrics
      iex> Hotpath.Metrics.HTTP.negotiate("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8")
      :protobuf
      iex> Hotpath.Metrics.HTTP.negotiate("application/openmetrics-text;version=0.0.1,text/plain")
      :prometheus
  """
  @spec negotiate(String.t() | nil) :: :prometheus | :openmetrics | :protobuf
  def negotiate(nil), do: :prometheus

  def negotiate(accept) when is_binary(accept) do
    accept
    |> String.split(",")
    |> Enum.with_index()
    |> Enum.flat_map(fn {range, index} ->
      case media_range(range) do
        {format, q} when q > 0 -> [{format, q, index}]
        _ -> []
      end
    end)
    |> Enum.min_by(fn {_format, q, index} -> {-q, index} end, fn -> {:prometheus, 1, 0} end)
    |> elem(0)
  end

  # `{format, q}` of one media range, or nil for a range no format of ours satisfies.
  defp media_range(range) do
    [type | params] = range |> String.split(";") |> Enum.map(&String.trim/1)
    params = Map.new(params, &param/1)
    q = quality(Map.get(params, "q", "1"))

    case {String.downcase(type), Map.get(params, "version")} do
      {"application/vnd.google.protobuf", _} ->
        if Map.get(params, "proto") == "io.prometheus.client.MetricFamily" and
             Map.get(params, "encoding") == "delimited",
           do: {:protobuf, q}

      {"application/openmetrics-text", version} when version in [nil, "1.0.0"] ->
        {:openmetrics, q}

      {"text/plain", version} when version in [nil, "0.0.4"] ->
        {:prometheus, q}

      {wildcard, _} when wildcard in ["*/*", "text/*"] ->
        {:prometheus, q}

      {"application/*", _} ->
        {:openmetrics, q}

      _ ->
        nil
    end
  end

  defp param(text) do
    case String.split(text, "=", parts: 2) do
      [name, value] -> {String.downcase(String.trim(name)), String.trim(String.trim(value), "\"")}
      [name] -> {String.downcase(name), ""}
    end
  end

  # A malformed q counts as 0 (not acceptable), as RFC 9110 leaves it to the server.
  defp quality(text) do
    case Float.parse(text) do
      {q, ""} when q >= 0 and q <= 1 -> q
      _ -> 0
    end
  end

  defp accept(%{req_headers: headers}) when is_list(headers) do
    Enum.find_value(headers, fn
      {"accept", value} when is_binary(value) -> value
      _ -> nil
    end)
  end

  defp accept(_request), do: nil

  defp scrape(metrics, method, format) do
    body = Hotpath.Metrics.prometheus(metrics, format: format)

    {200, [{"content-type", Hotpath.Metrics.content_type(format)}, {"vary", "accept"}],
     if(method == "HEAD", do: "", else: body)}
  rescue
    # The instance is not running (yet, or any more).
    Hotpath.NotRunningError ->
      {503, [{"content-type", "text/plain; charset=utf-8"}, {"retry-after", "1"}],
       "metrics instance #{inspect(metrics)} is not running\n"}
  end
end
