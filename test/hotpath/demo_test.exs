defmodule Hotpath.DemoTest do
  # The demo server over real HTTP (:httpc against :inets httpd on a free loopback port).
  use ExUnit.Case, async: false

  alias Hotpath.Test.JSONDecoder

  setup_all do
    {:ok, demo} = Hotpath.Demo.start(port: 0)
    on_exit(fn -> Hotpath.Demo.stop(demo) end)
    %{url: demo.url}
  end

  defp client_id, do: "test-#{System.unique_integer([:positive])}"

  defp get(url, headers \\ []) do
    headers = for {k, v} <- headers, do: {String.to_charlist(k), String.to_charlist(v)}

    {:ok, {{_, status, _}, resp_headers, body}} =
      :httpc.request(:get, {String.to_charlist(url), headers}, [timeout: 10_000],
        body_format: :binary
      )

    {status, Map.new(resp_headers, fn {k, v} -> {List.to_string(k), List.to_string(v)} end), body}
  end

  defp post_form(url, form, id) do
    {:ok, {{_, status, _}, resp_headers, body}} =
      :httpc.request(
        :post,
        {String.to_charlist(url), [{~c"x-client-id", String.to_charlist(id)}],
         ~c"application/x-www-form-urlencoded", form},
        [timeout: 10_000],
        body_format: :binary
      )

    {status, Map.new(resp_headers, fn {k, v} -> {List.to_string(k), List.to_string(v)} end), body}
  end

  test "GET /api/items: 200 with rate-limit headers, then 429 with retry-after past the burst", %{
    url: url
  } do
    id = client_id()
    {200, headers, body} = get(url <> "/api/items", [{"x-client-id", id}])
    assert headers["ratelimit-policy"] == ~s("api";q=10;w=1)
    assert headers["ratelimit"] =~ ~r/\A"api";r=19;t=\d+\z/
    assert headers["x-ratelimit-limit"] == "10"
    assert headers["x-ratelimit-remaining"] == "19"
    assert %{"items" => [_ | _]} = JSONDecoder.decode!(body)

    # The burst is 20: keep asking until refused (GCRA refills 1 per 100 ms meanwhile).
    {status, headers, body} =
      Enum.reduce_while(1..200, nil, fn _, _ ->
        case get(url <> "/api/items", [{"x-client-id", id}]) do
          {429, _, _} = denied -> {:halt, denied}
          _ -> {:cont, nil}
        end
      end)

    assert status == 429
    assert String.to_integer(headers["retry-after"]) >= 1
    assert headers["ratelimit"] == ~s("api";r=0;t=#{headers["retry-after"]})
    assert headers["x-ratelimit-remaining"] == "0"
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert body == "Too Many Requests\n"

    # Another client is not affected.
    assert {200, _, _} = get(url <> "/api/items", [{"x-client-id", client_id()}])
  end

  test "GET /metrics: Prometheus text that passes promtool check metrics", %{url: url} do
    get(url <> "/api/items", [{"x-client-id", client_id()}])
    Hotpath.Demo.Stats.sample_now()
    {200, headers, body} = get(url <> "/metrics")
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert body =~ ~s(demo_http_requests_total{route="/api/items",outcome="ok"})
    assert body =~ "# TYPE demo_api_request_duration_seconds summary"
    assert body =~ "vm_memory_total_bytes "
    {output, status} = Hotpath.Test.Promtool.check(body)
    assert status == 0, "promtool:\n#{output}"
  end

  test "GET /api/stats: the dashboard's JSON", %{url: url} do
    get(url <> "/api/items", [{"x-client-id", client_id()}])
    Hotpath.Demo.Stats.sample_now()
    {200, headers, body} = get(url <> "/api/stats")
    assert headers["content-type"] == "application/json"

    assert %{
             "uptime_s" => uptime,
             "tick_ms" => 1000,
             "samples" => [_ | _] = samples,
             "totals" => totals
           } = JSONDecoder.decode!(body)

    assert is_integer(uptime)

    for sample <- samples do
      assert Map.keys(sample) |> Enum.sort() ==
               ~w(allowed compute_queued compute_rejected compute_running denied heartbeat_gap_ms overloaded p50_ms p99_ms requests t)

      assert Enum.all?(Map.delete(sample, "p50_ms") |> Map.delete("p99_ms"), fn {_, v} ->
               is_number(v)
             end)
    end

    assert %{
             "requests" => n,
             "outcomes" => %{"ok" => _},
             "heartbeat_worst_ms" => _,
             "compute_completed" => _,
             "compute_rejected" => _
           } = totals

    assert n >= 1
  end

  test "GET / serves the dashboard page", %{url: url} do
    {200, headers, body} = get(url <> "/")
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert body =~ "<canvas id=\"rate\""
    assert body =~ "/api/stats"
    refute body =~ ~r{(src|href)="https?://}, "the dashboard must not load external URLs"
  end

  test "POST /api/login: argon2 through the compute pool, limited per client", %{url: url} do
    {user, password} = Hotpath.Demo.credentials()
    id = client_id()
    good = URI.encode_query(%{"user" => user, "password" => password})

    {200, headers, body} = post_form(url <> "/api/login", good, id)
    assert JSONDecoder.decode!(body) == %{"ok" => true, "user" => user}
    assert headers["ratelimit-policy"] == ~s("login";q=5;w=10)

    bad = URI.encode_query(%{"user" => user, "password" => "wrong"})
    assert {401, _, body} = post_form(url <> "/api/login", bad, id)
    assert JSONDecoder.decode!(body) == %{"ok" => false}

    unknown = URI.encode_query(%{"user" => "nobody", "password" => password})
    assert {401, _, _} = post_form(url <> "/api/login", unknown, id)

    assert {400, _, _} = post_form(url <> "/api/login", "user=only", id)
    assert {400, _, _} = post_form(url <> "/api/login", "%zz", id)

    # Five per 10 s per client: the sixth is refused with a problem+json body.
    {429, headers, body} = post_form(url <> "/api/login", good, id)
    assert headers["content-type"] == "application/problem+json"
    assert String.to_integer(headers["retry-after"]) in 1..10

    assert %{
             "type" => "https://iana.org/assignments/http-problem-types#quota-exceeded",
             "violated-policies" => ["login"]
           } = JSONDecoder.decode!(body)

    assert Hotpath.Compute.info(Hotpath.Demo.names().compute).completed >= 3
  end

  test "unknown paths and methods", %{url: url} do
    assert {404, _, _} = get(url <> "/nope")
    assert {405, _, _} = get(url <> "/api/login")
    assert {405, %{"allow" => "GET, HEAD"}, _} = post_form(url <> "/metrics", "", client_id())
  end

  test "a client id longer than 64 bytes is cut, not an error", %{url: url} do
    assert {200, _, _} = get(url <> "/api/items", [{"x-client-id", String.duplicate("x", 5_000)}])
  end
end

defmodule Hotpath.DemoLifecycleTest do
  use ExUnit.Case, async: false

  import ExUnit.CaptureIO

  test "a port in use is reported, and nothing is left running" do
    {:ok, socket} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
    {:ok, port} = :inet.port(socket)
    on_exit(fn -> :gen_tcp.close(socket) end)

    assert Hotpath.Demo.start(port: port) == {:error, {:port_in_use, port}}
    assert Process.whereis(Hotpath.Demo.Supervisor) == nil
    assert Process.whereis(Hotpath.Demo.ApiLimiter) == nil

    assert_raise Mix.Error, ~r/port #{port} is already in use.*--port/, fn ->
      capture_io(fn -> Mix.Tasks.Hotpath.Demo.run(["--port", "#{port}", "--duration", "0"]) end)
    end
  end

  test "stop/1 shuts the server and every process down" do
    {:ok, demo} = Hotpath.Demo.start(port: 0)
    assert {:error, :already_started} = Hotpath.Demo.start(port: 0)
    httpd_before = length(:inets.services_info())
    :ok = Hotpath.Demo.stop(demo)

    assert {:error, :econnrefused} = :gen_tcp.connect({127, 0, 0, 1}, demo.port, [], 1_000)
    assert Process.whereis(Hotpath.Demo.Supervisor) == nil
    assert Process.whereis(Hotpath.Demo.Stats) == nil
    assert length(:inets.services_info()) == httpd_before - 1
  end

  test "mix hotpath.demo runs load and prints progress and a summary" do
    output =
      capture_io(fn ->
        Mix.Tasks.Hotpath.Demo.run(~w(--port 0 --duration 2 --clients 3 --abusive 1))
      end)

    assert output =~ ~r/\[  1s\] .* req\/s \| allowed/
    assert output =~ ~r/well-behaved\s+3\s+\d+/
    assert output =~ ~r/abusive\s+1\s+\d+/
    assert output =~ "worst scheduler heartbeat gap"
    assert output =~ "Demo stopped cleanly."
    assert Process.whereis(Hotpath.Demo.Supervisor) == nil
  end

  test "bad arguments" do
    assert_raise Mix.Error, ~r/unexpected arguments/, fn ->
      Mix.Tasks.Hotpath.Demo.run(["--nope"])
    end

    assert_raise Mix.Error, ~r/--port must be/, fn ->
      Mix.Tasks.Hotpath.Demo.run(["--port", "70000"])
    end

    assert_raise ArgumentError, ~r/port must be/, fn -> Hotpath.Demo.start(port: -1) end
  end
end
