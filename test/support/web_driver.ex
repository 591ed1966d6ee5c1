defmodule Hotpath.Test.WebDriver do
  @moduledoc false
  # A minimal W3C WebDriver client over :httpc for the dashboard's end-to-end test: starts
  # chromedriver on a free loopback port, drives headless Chromium, reads the browser's
  # console log (goog:loggingPrefs) and takes screenshots. Nothing to install beyond
  # Debian's chromium and chromium-driver.

  alias Hotpath.Test.JSONDecoder

  # Headless Chromium as root on a machine without network: without these it hangs or
  # retries connections to the outside at every start.
  @chromium_args ~w(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
    --disable-background-networking --disable-component-update --disable-sync
    --disable-dev-shm-usage --window-size=1400,1000)

  defstruct [:port, :os_pid, :base, :session, :profile_dir]

  @doc "Paths of chromedriver and chromium, or `{:error, message}`."
  def executables do
    chromedriver = System.find_executable("chromedriver")

    chromium =
      Enum.find_value(~w(chromium chromium-browser google-chrome), &System.find_executable/1)

    case {chromedriver, chromium} do
      {nil, _} -> {:error, "chromedriver not found (scripts/bootstrap installs chromium-driver)"}
      {_, nil} -> {:error, "chromium not found (scripts/bootstrap installs chromium)"}
      found -> {:ok, found}
    end
  end

  @doc "Starts chromedriver and a browser session."
  def start! do
    {:ok, {chromedriver, chromium}} = executables()
    {:ok, _} = Application.ensure_all_started(:inets)
    port = free_port()

    driver =
      Port.open({:spawn_executable, chromedriver}, [
        :binary,
        :exit_status,
        :stderr_to_stdout,
        args: ["--port=#{port}", "--allowed-ips=127.0.0.1"]
      ])

    {:os_pid, os_pid} = Port.info(driver, :os_pid)

    profile_dir =
      Path.join(System.tmp_dir!(), "hotpath_e2e_#{System.unique_integer([:positive])}")

    wd = %__MODULE__{
      port: driver,
      os_pid: os_pid,
      base: "http://127.0.0.1:#{port}",
      profile_dir: profile_dir
    }

    wait_ready!(wd, 100)

    capabilities = %{
      "capabilities" => %{
        "alwaysMatch" => %{
          "browserName" => "chrome",
          "goog:chromeOptions" => %{
            "binary" => chromium,
            "args" => @chromium_args ++ ["--user-data-dir=#{profile_dir}"]
          },
          "goog:loggingPrefs" => %{"browser" => "ALL"}
        }
      }
    }

    %{"sessionId" => session} = request!(wd, :post, "/session", capabilities)
    %{wd | session: session}
  end

  @doc "Ends the session and stops chromedriver."
  def stop(%__MODULE__{} = wd) do
    if wd.session, do: request(wd, :delete, "/session/#{wd.session}", nil)
    System.cmd("kill", [Integer.to_string(wd.os_pid)], stderr_to_stdout: true)
    # The port closes by itself once chromedriver has exited, which may happen between a
    # Port.info/1 check and Port.close/1: closing a closed port raises ArgumentError.
    try do
      Port.close(wd.port)
    rescue
      ArgumentError -> :ok
    end

    File.rm_rf(wd.profile_dir)
    :ok
  end

  def navigate!(wd, url), do: session!(wd, :post, "/url", %{"url" => url})

  @doc "Runs `script` (a function body) in the page and returns its value."
  def execute!(wd, script),
    do: session!(wd, :post, "/execute/sync", %{"script" => script, "args" => []})

  @doc "The browser console entries since the last call: `[%{\"level\" => ..., \"message\" => ...}]`."
  def browser_log!(wd), do: session!(wd, :post, "/se/log", %{"type" => "browser"})

  @doc "A PNG screenshot of the viewport."
  def screenshot!(wd), do: wd |> session!(:get, "/screenshot", nil) |> Base.decode64!()

  defp session!(wd, method, path, body),
    do: request!(wd, method, "/session/#{wd.session}" <> path, body)

  defp request!(wd, method, path, body) do
    case request(wd, method, path, body) do
      {:ok, status, %{"value" => value}} when status in 200..299 ->
        value

      {:ok, status, response} ->
        raise "WebDriver #{method} #{path}: #{status} #{inspect(response)}"

      {:error, reason} ->
        raise "WebDriver #{method} #{path}: #{inspect(reason)}"
    end
  end

  defp request(wd, method, path, body) do
    url = String.to_charlist(wd.base <> path)

    request =
      case body do
        nil -> {url, []}
        body -> {url, [], ~c"application/json", Hotpath.JSON.encode!(body)}
      end

    case :httpc.request(method, request, [timeout: 60_000], body_format: :binary) do
      {:ok, {{_, status, _}, _headers, ""}} -> {:ok, status, %{"value" => nil}}
      {:ok, {{_, status, _}, _headers, body}} -> {:ok, status, JSONDecoder.decode!(body)}
      {:error, reason} -> {:error, reason}
    end
  end

  defp wait_ready!(_wd, 0), do: raise("chromedriver did not become ready")

  defp wait_ready!(wd, tries) do
    case request(wd, :get, "/status", nil) do
      {:ok, 200, %{"value" => %{"ready" => true}}} ->
        :ok

      _ ->
        Process.sleep(100)
        wait_ready!(wd, tries - 1)
    end
  end

  @doc "A loopback TCP port free right now (for a program that must be told its port)."
  def free_port do
    {:ok, socket} = :gen_tcp.listen(0, ip: {127, 0, 0, 1})
    {:ok, port} = :inet.port(socket)
    :gen_tcp.close(socket)
    port
  end
end
