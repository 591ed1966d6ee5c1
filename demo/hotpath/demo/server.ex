defmodule Hotpath.Demo.Server do
  @moduledoc false
  # The demo's HTTP server: an :inets httpd instance whose one module (this one, `do/1`)
  # routes every request. Responses are written to the socket here (status line included:
  # OTP 25's httpd has no reason phrase for 429).

  require Logger
  require Record

  alias Hotpath.Demo
  alias Hotpath.RateLimiter.HTTP

  Record.defrecordp(:mod, Record.extract(:mod, from_lib: "inets/include/httpd.hrl"))
  Record.defrecordp(:init_data, Record.extract(:init_data, from_lib: "inets/include/httpd.hrl"))

  @max_client_id 64

  # What a Phoenix router would give Hotpath.RateLimiter.Plug, validated at compile time.
  @api_policy HTTP.init(
                limiter: Hotpath.Demo.ApiLimiter,
                key: &__MODULE__.client_key/1,
                policy_name: "api",
                headers: :both
              )
  @login_policy HTTP.init(
                  limiter: Hotpath.Demo.LoginLimiter,
                  key: &__MODULE__.client_key/1,
                  policy_name: "login",
                  problem_details: true
                )
  @metrics_http Hotpath.Metrics.HTTP.init(metrics: Hotpath.Demo.Metrics)

  @dashboard_path Path.expand("../../assets/dashboard.html", __DIR__)
  @external_resource @dashboard_path
  @dashboard File.read!(@dashboard_path)

  # -- the httpd instance's owner ---------------------------------------------------
  #
  # A GenServer owns the httpd instance: it starts it under :inets (so :httpd.info/1 can
  # tell the port when port 0 was asked for) and stops it when the demo stops.

  use GenServer

  @doc "Starts the owner and its httpd instance; `{:error, reason}` if httpd cannot start."
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @doc "The port the running demo server listens on."
  def port, do: GenServer.call(__MODULE__, :port)

  @impl GenServer
  def init(opts) do
    Process.flag(:trap_exit, true)
    dir = String.to_charlist(System.tmp_dir!())

    config = [
      port: Keyword.fetch!(opts, :port),
      bind_address: Keyword.fetch!(opts, :ip),
      ipfamily: :inet,
      server_name: ~c"hotpath-demo",
      server_root: dir,
      document_root: dir,
      modules: [__MODULE__],
      max_clients: 1_000,
      max_body_size: 65_536,
      keep_alive: true,
      keep_alive_timeout: 30
    ]

    case :inets.start(:httpd, config) do
      {:ok, httpd} -> {:ok, %{httpd: httpd, port: :httpd.info(httpd)[:port]}}
      {:error, reason} -> {:stop, reason}
    end
  end

  @impl GenServer
  def handle_call(:port, _from, state), do: {:reply, state.port, state}

  @impl GenServer
  def terminate(_reason, %{httpd: httpd}), do: :inets.stop(:httpd, httpd)

  @doc """
  The rate-limit key of a request: its `x-client-id` header (at most 64 bytes), else its
  address. Demo only: a client-chosen header is no identity in a real application.
  """
  def client_key(%{req_headers: headers, remote_ip: ip}) do
    case List.keyfind(headers, "x-client-id", 0) do
      {_, id} when id != "" -> "client:" <> binary_slice_prefix(id)
      _ -> ip && "ip:" <> List.to_string(:inet.ntoa(ip))
    end
  end

  defp binary_slice_prefix(id) when byte_size(id) <= @max_client_id, do: id
  defp binary_slice_prefix(id), do: binary_part(id, 0, @max_client_id)

  # -- httpd callback ----------------------------------------------------------------

  @doc false
  def unquote(:do)(mod_data) do
    started = System.monotonic_time()
    request = request(mod_data)

    {status, headers, body, route, outcome} =
      try do
        handle(request)
      rescue
        e ->
          Logger.error("demo request failed: " <> Exception.format(:error, e, __STACKTRACE__))

          {500, [{"content-type", "text/plain; charset=utf-8"}], "Internal Server Error\n",
           "other", "error"}
      end

    body = if request.method == "HEAD", do: "", else: IO.iodata_to_binary(body)
    length = byte_size(body)
    send_response(mod_data, status, headers, body, request.method == "HEAD")

    seconds = (System.monotonic_time() - started) / System.convert_time_unit(1, :second, :native)
    Demo.Metrics.request(route, outcome, seconds)
    {:proceed, [{:response, {:already_sent, status, length}}]}
  end

  defp request(mod_data) do
    {_port, peer} = init_data(mod(mod_data, :init_data), :peername)
    uri = to_binary(mod(mod_data, :request_uri))
    [path | _] = String.split(uri, "?", parts: 2)

    %{
      method: to_binary(mod(mod_data, :method)),
      request_path: path,
      remote_ip:
        case :inet.parse_address(peer) do
          {:ok, ip} -> ip
          {:error, _} -> nil
        end,
      req_headers:
        for(
          {name, value} <- mod(mod_data, :parsed_header),
          do: {to_binary(name), to_binary(value)}
        ),
      body: to_binary(mod(mod_data, :entity_body))
    }
  end

  defp to_binary(list) when is_list(list), do: :erlang.list_to_binary(list)
  defp to_binary(binary) when is_binary(binary), do: binary
  defp to_binary(_), do: ""

  # -- routes: {status, headers, body, route label, outcome label} ---------------------

  defp handle(%{method: method, request_path: "/"}) when method in ["GET", "HEAD"],
    do:
      {200, [{"content-type", "text/html; charset=utf-8"}, {"cache-control", "no-store"}],
       @dashboard, "/", "ok"}

  defp handle(%{method: method, request_path: "/api/stats"}) when method in ["GET", "HEAD"] do
    {200, [{"content-type", "application/json"}, {"cache-control", "no-store"}],
     Hotpath.JSON.encode(Demo.Stats.json()), "/api/stats", "ok"}
  end

  defp handle(%{request_path: "/metrics"} = request) do
    {status, headers, body} = Hotpath.Metrics.HTTP.response(@metrics_http, request)
    {status, headers, body, "/metrics", outcome(status)}
  end

  defp handle(%{method: "GET", request_path: "/api/items"} = request) do
    limited(@api_policy, request, "/api/items", fn ->
      items = for i <- 1..5, do: %{id: i, name: "item #{i}"}
      {200, [{"content-type", "application/json"}], Hotpath.JSON.encode(%{items: items})}
    end)
  end

  defp handle(%{method: "POST", request_path: "/api/login"} = request) do
    limited(@login_policy, request, "/api/login", fn -> login(request) end)
  end

  defp handle(%{request_path: "/favicon.ico"}), do: {204, [], "", "other", "ok"}

  defp handle(%{request_path: path}) when path in ["/api/items", "/api/login", "/api/stats", "/"],
    do:
      {405, [{"content-type", "text/plain; charset=utf-8"}], "Method Not Allowed\n", "other",
       "error"}

  defp handle(_request),
    do:
      {404, [{"content-type", "text/plain; charset=utf-8"}], "Not Found\n", "other", "not_found"}

  # Hotpath.RateLimiter.HTTP exactly as Hotpath.RateLimiter.Plug uses it.
  defp limited(policy, request, route, fun) do
    case HTTP.check(policy, request) do
      %HTTP.Result{action: :allow, headers: limit_headers} ->
        {status, headers, body} = fun.()
        {status, limit_headers ++ headers, body, route, outcome(status)}

      %HTTP.Result{status: status, headers: headers, body: body} ->
        {status, headers, body, route, "denied"}
    end
  end

  defp login(%{body: body}) do
    with {:ok, %{"user" => user, "password" => password}} <- form(body) do
      verify(user, password)
    else
      _ ->
        {400, [{"content-type", "application/json"}],
         Hotpath.JSON.encode(%{error: "expected a form body user=...&password=..."})}
    end
  end

  defp form(body) do
    {:ok, URI.decode_query(body)}
  rescue
    ArgumentError -> :error
  end

  defp verify(user, password) do
    {_known, hash} = Demo.Users.lookup(user)
    names = Demo.names()
    started = System.monotonic_time()
    result = Hotpath.Password.verify(password, hash, compute: names.compute, timeout: 2_000)

    Demo.Metrics.verify(
      (System.monotonic_time() - started) / System.convert_time_unit(1, :second, :native)
    )

    case result do
      {:ok, true} ->
        {200, [{"content-type", "application/json"}],
         Hotpath.JSON.encode(%{ok: true, user: user})}

      {:ok, false} ->
        {401, [{"content-type", "application/json"}], Hotpath.JSON.encode(%{ok: false})}

      # No retry-after on these 503s: OTP's :httpc retries a 503 that carries a short one by
      # itself, which would hide every shed login from the load generator.
      {:error, :overloaded} ->
        {503, [{"content-type", "application/json"}],
         Hotpath.JSON.encode(%{error: "login service overloaded, retry later"})}

      {:error, reason} ->
        {503, [{"content-type", "application/json"}],
         Hotpath.JSON.encode(%{error: inspect(reason)})}
    end
  end

  defp outcome(status) when status in 200..299, do: "ok"
  defp outcome(401), do: "unauthorized"
  defp outcome(429), do: "denied"
  defp outcome(503), do: "overloaded"
  defp outcome(_), do: "error"

  # -- the response on the wire ------------------------------------------------------

  defp send_response(mod_data, status, headers, body, head?) do
    head = [
      "HTTP/1.1 ",
      Integer.to_string(status),
      " ",
      reason(status),
      "\r\n",
      "date: ",
      :httpd_util.rfc1123_date(),
      "\r\nserver: hotpath-demo\r\ncontent-length: ",
      Integer.to_string(if head?, do: 0, else: byte_size(body)),
      "\r\n",
      Enum.map(headers, fn {k, v} -> [k, ": ", v, "\r\n"] end),
      "\r\n"
    ]

    :httpd_socket.deliver(mod(mod_data, :socket_type), mod(mod_data, :socket), [head, body])
  end

  defp reason(200), do: "OK"
  defp reason(204), do: "No Content"
  defp reason(400), do: "Bad Request"
  defp reason(401), do: "Unauthorized"
  defp reason(404), do: "Not Found"
  defp reason(405), do: "Method Not Allowed"
  defp reason(429), do: "Too Many Requests"
  defp reason(503), do: "Service Unavailable"
  defp reason(_), do: "Internal Server Error"
end
