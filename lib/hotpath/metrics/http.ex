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

  A request is a map with `:method` and `:request_path` (a `Plug.Conn` is one). The body is
  the Prometheus text format 0.0.4 of `Hotpath.Metrics.prometheus/1`, served as
  `text/plain; version=0.0.4; charset=utf-8` (Prometheus 3 refuses a scrape without a valid
  content type).

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
        scrape(config.metrics, method)

      _ ->
        {405, [{"allow", "GET, HEAD"}, {"content-type", "text/plain; charset=utf-8"}],
         "Method Not Allowed\n"}
    end
  end

  def response(%__MODULE__{}, _request), do: :pass

  defp scrape(metrics, method) do
    body = Hotpath.Metrics.prometheus(metrics)

    {200, [{"content-type", Hotpath.Metrics.content_type()}],
     if(method == "HEAD", do: "", else: body)}
  rescue
    # The instance is not running (yet, or any more).
    Hotpath.NotRunningError ->
      {503, [{"content-type", "text/plain; charset=utf-8"}, {"retry-after", "1"}],
       "metrics instance #{inspect(metrics)} is not running\n"}
  end
end
