defmodule Hotpath.RateLimiter.Plug do
  @moduledoc """
  Rate-limits requests with a `Hotpath.RateLimiter`, as a Plug (Plug 1.14 or later):

      pipeline :api do
        plug :accepts, ["json"]
        plug Hotpath.RateLimiter.Plug, limiter: MyApp.ApiLimiter, trusted_proxies: ["10.0.0.0/8"]
      end

  An admitted request goes on with the rate-limit headers added to its response; a denied
  one is answered (`429`, `retry-after`, headers, body) and halted. The result of
  `Hotpath.RateLimiter.HTTP.check/2` is kept in `conn.private[:hotpath_rate_limit]`.
  Options are those of `Hotpath.RateLimiter.HTTP`; give functions as captures of named
  functions (`key: &MyAppWeb.RateKeys.user/1`), since plug options are stored at compile time.

  This module is always compiled, whether or not Plug was visible when Hotpath was built:
  Hotpath does not depend on Plug, and it calls `Plug.Conn` only when a request comes in, so
  it works in any build order. All the logic is in `Hotpath.RateLimiter.HTTP`.
  """

  # Plug is the host application's dependency, not Hotpath's: `Plug.Conn` is called only at
  # run time, and no `@behaviour Plug` (the module need not exist when this compiles).
  @compile {:no_warn_undefined, Plug.Conn}

  alias Hotpath.RateLimiter.HTTP

  @doc "Validates the options once (`Hotpath.RateLimiter.HTTP.init/1`)."
  @spec init(keyword()) :: HTTP.Config.t()
  def init(opts), do: HTTP.init(opts)

  @doc "Checks the request, adds the headers, and answers and halts a denied request."
  @spec call(conn, HTTP.Config.t()) :: conn when conn: map()
  def call(conn, config) do
    result = HTTP.check(config, conn)

    conn =
      result.headers
      |> Enum.reduce(conn, fn {k, v}, conn -> Plug.Conn.put_resp_header(conn, k, v) end)
      |> Plug.Conn.put_private(:hotpath_rate_limit, result)

    case result do
      %HTTP.Result{action: :allow} ->
        conn

      %HTTP.Result{status: status, body: body} ->
        conn |> Plug.Conn.send_resp(status, body) |> Plug.Conn.halt()
    end
  end
end
