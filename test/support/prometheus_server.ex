defmodule Hotpath.Test.PrometheusServer do
  @moduledoc false
  # Debian's Prometheus server (package `prometheus`, installed by scripts/bootstrap), started
  # on loopback with native histograms and exemplar storage, scraping one target every
  # second, with its storage in a temporary directory; queried through its HTTP API.

  defstruct [:port, :os_pid, :api, :dir, :log]

  @doc """
  Starts a server scraping `target` (`"127.0.0.1:port"`) every second. Flunks with the reason
  when the package is missing or the server does not become ready.
  """
  def start(target) do
    prometheus =
      System.find_executable("prometheus") ||
        ExUnit.Assertions.flunk(
          "the Prometheus server is not installed (scripts/bootstrap installs the Debian prometheus package)"
        )

    dir = Path.join(System.tmp_dir!(), "hotpath_prometheus_#{System.unique_integer([:positive])}")
    File.mkdir_p!(Path.join(dir, "data"))
    config = Path.join(dir, "prometheus.yml")

    File.write!(config, """
    global:
      scrape_interval: 1s
      scrape_timeout: 1s
    scrape_configs:
      - job_name: hotpath
        static_configs:
          - targets: ["#{target}"]
    """)

    api_port = Hotpath.Test.WebDriver.free_port()
    log = Path.join(dir, "prometheus.log")

    args = [
      "--config.file=#{config}",
      "--storage.tsdb.path=#{Path.join(dir, "data")}",
      "--web.listen-address=127.0.0.1:#{api_port}",
      "--enable-feature=native-histograms,exemplar-storage",
      "--log.level=info"
    ]

    port =
      Port.open({:spawn_executable, "/bin/sh"}, [
        :exit_status,
        args: ["-c", ~s(exec "$0" "$@" > "#{log}" 2>&1), prometheus | args]
      ])

    {:os_pid, os_pid} = Port.info(port, :os_pid)

    server = %__MODULE__{
      port: port,
      os_pid: os_pid,
      api: "http://127.0.0.1:#{api_port}",
      dir: dir,
      log: log
    }

    wait_ready(server, 60)
    server
  end

  @doc """
  Stops the server (SIGTERM, then SIGKILL after 10 s) and removes its directory. Works from any
  process (`on_exit/1` runs after the port's owner has exited).
  """
  def stop(%__MODULE__{os_pid: os_pid} = server) do
    pid = Integer.to_string(os_pid)
    signal("-TERM", pid)

    if not gone?(pid, 40) do
      signal("-KILL", pid)
      gone?(pid, 40)
    end

    File.rm_rf!(server.dir)
    :ok
  end

  defp signal(signal, pid), do: System.cmd("kill", [signal, pid], stderr_to_stdout: true)

  defp gone?(_pid, 0), do: false

  defp gone?(pid, tries) do
    case signal("-0", pid) do
      {_, 0} ->
        Process.sleep(250)
        gone?(pid, tries - 1)

      _ ->
        true
    end
  end

  @doc "The server's log, for failure messages."
  def log(%__MODULE__{log: log}), do: File.read!(log)

  @doc "`GET path?params` on the HTTP API: the decoded `data` of a success, else flunks."
  def api(%__MODULE__{} = server, path, params) do
    url = ~c"#{server.api}#{path}?#{URI.encode_query(params)}"

    case :httpc.request(:get, {url, []}, [timeout: 10_000], body_format: :binary) do
      {:ok, {{_, 200, _}, _headers, body}} ->
        %{"status" => "success", "data" => data} = Hotpath.Test.JSONDecoder.decode!(body)
        data

      other ->
        ExUnit.Assertions.flunk("Prometheus API #{path} #{inspect(params)}: #{inspect(other)}")
    end
  end

  @doc "An instant query's vector, as `[{labels, value}]` (`value` the sample's text)."
  def query(server, promql) do
    case api(server, "/api/v1/query", query: promql) do
      %{"resultType" => "vector", "result" => result} ->
        for %{"metric" => labels, "value" => [_ts, value]} <- result, do: {labels, value}
    end
  end

  @doc "Polls `fun` every 250 ms until it returns a truthy value; flunks after `seconds`."
  def eventually(server, seconds, what, fun) do
    Hotpath.Test.Eventually.eventually(fun, seconds * 1000,
      every: 250,
      failure: fn -> "#{what}: timed out\n--- prometheus log ---\n#{log(server)}" end
    )
  end

  defp wait_ready(server, seconds) do
    eventually(server, seconds, "the Prometheus server becoming ready", fn ->
      receive do
        {port, {:exit_status, status}} when port == server.port ->
          ExUnit.Assertions.flunk(
            "the Prometheus server exited (#{status})\n--- prometheus log ---\n#{log(server)}"
          )
      after
        0 -> :ok
      end

      match?(
        {:ok, {{_, 200, _}, _, _}},
        :httpc.request(:get, {~c"#{server.api}/-/ready", []}, [timeout: 1_000], [])
      )
    end)
  end
end
