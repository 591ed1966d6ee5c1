defmodule Hotpath.PlugAdaptersTest do
  # Plug cannot be installed here, so `Hotpath.RateLimiter.Plug` and `Hotpath.Metrics.Plug`
  # are not compiled in this project. Their logic is tested through the pure modules
  # (Hotpath.RateLimiter.HTTP, Hotpath.Metrics.HTTP); this file checks the glue: it defines a
  # stand-in of the Plug 1.14 API they use (the `Plug` behaviour, `Plug.Conn` fields and
  # put_resp_header/3, put_private/3, send_resp/3, halt/1), compiles the adapters' source
  # files against it, drives them, and unloads everything afterwards.
  use ExUnit.Case, async: false

  # Defined at run time, below.
  @compile {:no_warn_undefined, [Hotpath.RateLimiter.Plug, Hotpath.Metrics.Plug]}

  @stand_in """
  defmodule Plug do
    @callback init(term()) :: term()
    @callback call(term(), term()) :: term()
  end

  defmodule Plug.Conn do
    defstruct remote_ip: {127, 0, 0, 1}, req_headers: [], method: "GET", request_path: "/",
              resp_headers: [], status: nil, resp_body: nil, state: :unset, halted: false,
              private: %{}

    def put_resp_header(%__MODULE__{} = conn, key, value) when is_binary(key) and is_binary(value) do
      if String.downcase(key) != key, do: raise(ArgumentError, "header key is not lowercase: " <> key)
      %{conn | resp_headers: List.keystore(conn.resp_headers, key, 0, {key, value})}
    end

    def put_private(%__MODULE__{} = conn, key, value) when is_atom(key),
      do: %{conn | private: Map.put(conn.private, key, value)}

    def send_resp(%__MODULE__{state: :unset} = conn, status, body) when is_integer(status),
      do: %{conn | status: status, resp_body: IO.iodata_to_binary(body), state: :sent}

    def halt(%__MODULE__{} = conn), do: %{conn | halted: true}
  end
  """

  @adapters ["lib/hotpath/rate_limiter/plug.ex", "lib/hotpath/metrics/plug.ex"]

  setup_all do
    refute Code.ensure_loaded?(Plug), "Plug is installed: test the real adapters instead"
    Code.compile_string(@stand_in)
    modules = Enum.flat_map(@adapters, &Code.compile_file/1) |> Enum.map(&elem(&1, 0))
    assert Hotpath.RateLimiter.Plug in modules and Hotpath.Metrics.Plug in modules

    on_exit(fn ->
      for mod <- modules ++ [Plug.Conn, Plug] do
        :code.purge(mod)
        :code.delete(mod)
      end
    end)

    :ok
  end

  defp conn(fields), do: struct(Plug.Conn, fields)

  test "RateLimiter.Plug adds headers when allowed and answers 429 + halts when denied" do
    name = :"plug_limiter_#{System.unique_integer([:positive])}"
    start_supervised!({Hotpath.RateLimiter, name: name, limit: 1, period: 60_000})
    opts = Hotpath.RateLimiter.Plug.init(limiter: name, policy_name: "api", headers: :both)

    allowed = Hotpath.RateLimiter.Plug.call(conn(remote_ip: {192, 0, 2, 1}), opts)
    refute allowed.halted
    assert allowed.state == :unset
    assert {"ratelimit", ~s("api";r=0;t=60)} in allowed.resp_headers
    assert %{action: :allow} = allowed.private.hotpath_rate_limit

    denied = Hotpath.RateLimiter.Plug.call(conn(remote_ip: {192, 0, 2, 1}), opts)
    assert denied.halted
    assert denied.status == 429
    assert denied.resp_body == "Too Many Requests\n"
    assert {"retry-after", retry} = List.keyfind(denied.resp_headers, "retry-after", 0)
    assert String.to_integer(retry) in 1..60
    assert {"x-ratelimit-remaining", "0"} in denied.resp_headers
  end

  test "RateLimiter.Plug options are validated at init" do
    assert_raise ArgumentError, ~r/invalid :headers/, fn ->
      Hotpath.RateLimiter.Plug.init(limiter: :l, headers: :fancy)
    end
  end

  test "Metrics.Plug serves the scrape and passes other requests" do
    name = :"plug_metrics_#{System.unique_integer([:positive])}"
    start_supervised!({Hotpath.Metrics, name: name, metrics: [Hotpath.Metrics.counter("a.b")]})
    opts = Hotpath.Metrics.Plug.init(metrics: name)

    scrape = Hotpath.Metrics.Plug.call(conn(request_path: "/metrics"), opts)
    assert scrape.halted and scrape.status == 200
    assert {"content-type", "text/plain; version=0.0.4; charset=utf-8"} in scrape.resp_headers
    assert scrape.resp_body =~ "# TYPE a_b_total counter"

    other = Hotpath.Metrics.Plug.call(conn(request_path: "/users"), opts)
    refute other.halted
    assert other.state == :unset
  end
end
