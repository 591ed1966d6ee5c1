defmodule Hotpath.Metrics.Plug do
  @moduledoc """
  Serves a `Hotpath.Metrics` instance to Prometheus, as a Plug (Plug 1.14 or later). Put it
  in your endpoint, before the router:

      plug Hotpath.Metrics.Plug, metrics: MyAppWeb.Metrics, path: "/metrics"

  Requests to other paths pass through untouched. Options and responses are those of
  `Hotpath.Metrics.HTTP`: OpenMetrics text when the request's `accept` header asks for it
  (the Prometheus server's does), the Prometheus text format otherwise.

  This module is always compiled, whether or not Plug was visible when Hotpath was built:
  Hotpath does not depend on Plug, and it calls `Plug.Conn` only when a request comes in.
  """

  # Plug is the host application's dependency, not Hotpath's (see Hotpath.RateLimiter.Plug).
  @compile {:no_warn_undefined, Plug.Conn}

  @doc "Validates the options once (`Hotpath.Metrics.HTTP.init/1`)."
  @spec init(keyword()) :: Hotpath.Metrics.HTTP.t()
  def init(opts), do: Hotpath.Metrics.HTTP.init(opts)

  @doc "Answers a scrape of the configured path and halts; passes any other request on."
  @spec call(conn, Hotpath.Metrics.HTTP.t()) :: conn when conn: map()
  def call(conn, config) do
    case Hotpath.Metrics.HTTP.response(config, conn) do
      :pass ->
        conn

      {status, headers, body} ->
        headers
        |> Enum.reduce(conn, fn {k, v}, conn -> Plug.Conn.put_resp_header(conn, k, v) end)
        |> Plug.Conn.send_resp(status, body)
        |> Plug.Conn.halt()
    end
  end
end
