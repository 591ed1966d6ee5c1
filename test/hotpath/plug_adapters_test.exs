defmodule Hotpath.PlugAdaptersTest do
  # Plug cannot be installed here. `Hotpath.RateLimiter.Plug` and `Hotpath.Metrics.Plug` are
  # compiled in every build anyway (they call Plug.Conn only at run time), so this file checks
  # that they exist without Plug, then loads the stand-in of the Plug API they use
  # (test/fixtures/plug, the same one scripts/package_check.exs builds consumer apps with),
  # drives the adapters through it, and unloads it afterwards. Their logic is tested through
  # the pure modules (Hotpath.RateLimiter.HTTP, Hotpath.Metrics.HTTP).
  use ExUnit.Case, async: false

  @stand_in ["test/fixtures/plug/lib/plug.ex", "test/fixtures/plug/lib/plug/conn.ex"]

  # Loaded at run time, in setup_all.
  @compile {:no_warn_undefined, Plug.Conn}

  test "both adapters are compiled into the build although Plug was not there" do
    for adapter <- [Hotpath.RateLimiter.Plug, Hotpath.Metrics.Plug] do
      assert Code.ensure_loaded?(adapter)
      assert function_exported?(adapter, :init, 1) and function_exported?(adapter, :call, 2)
      assert adapter |> :code.which() |> List.to_string() |> File.regular?()
    end
  end

  setup_all do
    refute Code.ensure_loaded?(Plug), "Plug is installed: test the real adapters instead"
    modules = Enum.flat_map(@stand_in, &Code.compile_file/1) |> Enum.map(&elem(&1, 0))

    on_exit(fn ->
      for mod <- modules do
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
    assert_raise ArgumentError, ~r/:headers must be one of/, fn ->
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
