if Code.ensure_loaded?(Plug) do
  defmodule Hotpath.Metrics.Plug do
    @moduledoc """
    Serves a `Hotpath.Metrics` instance to Prometheus (defined when the host application has
    Plug 1.14 or later). Put it in your endpoint, before the router:

        plug Hotpath.Metrics.Plug, metrics: MyAppWeb.Metrics, path: "/metrics"

    Requests to other paths pass through untouched. Options and responses are those of
    `Hotpath.Metrics.HTTP`.
    """
    @behaviour Plug

    @impl Plug
    def init(opts), do: Hotpath.Metrics.HTTP.init(opts)

    @impl Plug
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
end
