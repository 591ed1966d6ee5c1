defmodule Hotpath.Demo do
  @moduledoc """
  The demo behind `mix hotpath.demo`: a real HTTP server on OTP's `:inets` httpd using every
  Hotpath area, as a Phoenix app would.

    * `GET /api/items` - rate-limited per client by `Hotpath.RateLimiter` through
      `Hotpath.RateLimiter.HTTP` (GCRA, 10 requests/s, bursts of 20), draft
      `RateLimit` headers, `429` with `retry-after`;
    * `POST /api/login` - `user=...&password=...`, rate-limited per client (5 per 10 s),
      verified with `Hotpath.Password` (argon2id, cheap demo costs) behind a bounded
      `Hotpath.Compute` pool that answers `503` when its queue is full;
    * `GET /metrics` - the Prometheus text of `Hotpath.Metrics` (`Hotpath.Metrics.HTTP`);
    * `GET /api/stats` - the per-second samples the dashboard draws;
    * `GET /` - the dashboard.

  Clients are told apart by an `x-client-id` header (else their address), so one machine can
  play many clients over loopback. **That is a demo shortcut**: a real application keys by
  an authenticated identity or by the client address behind `trusted_proxies`.

  Everything runs under one supervisor with fixed names, so one demo runs per VM.
  """

  alias Hotpath.Demo

  @api_limiter Demo.ApiLimiter
  @login_limiter Demo.LoginLimiter
  @metrics Demo.Metrics
  @compute Demo.Compute
  @supervisor Demo.Supervisor

  # Argon2id costs for the demo: 4 MiB, t=2, about 5 ms a hash, so one dirty scheduler
  # verifies ~200 logins a second and a flood visibly fills the pool's queue. (Production
  # defaults are 19 MiB, t=2: see Hotpath.Password.)
  @password_opts [m_cost: 4096, t_cost: 2]
  @user "demo"
  @password "correct horse battery staple"

  @doc false
  def names,
    do: %{
      api_limiter: @api_limiter,
      login_limiter: @login_limiter,
      metrics: @metrics,
      compute: @compute,
      supervisor: @supervisor
    }

  @doc "The demo user's name and password (the load generator logs in with them)."
  @spec credentials() :: {String.t(), String.t()}
  def credentials, do: {@user, @password}

  @doc false
  def password_opts, do: @password_opts

  @doc """
  Starts the demo: limiters, metrics, compute pool, stats sampler and the HTTP server on
  `127.0.0.1`. Options: `:port` (default 4040; 0 picks a free port), `:ip` (default
  `{127, 0, 0, 1}`).

  Returns `{:ok, %{pid: supervisor, port: port, url: url}}`, or `{:error, {:port_in_use, port}}`,
  `{:error, :already_started}` or `{:error, reason}`.
  """
  @spec start(keyword()) :: {:ok, map()} | {:error, term()}
  def start(opts \\ []) do
    Hotpath.Options.known!(opts, [port: [], ip: []], "Hotpath.Demo.start/1")
    port = Keyword.get(opts, :port, 4040)
    ip = Keyword.get(opts, :ip, {127, 0, 0, 1})

    if not (is_integer(port) and port in 0..65_535) do
      raise ArgumentError, "port must be an integer in 0..65535, got: #{inspect(port)}"
    end

    with {:ok, _} <- Application.ensure_all_started(:inets),
         {:ok, pid} <- start_supervisor(port, ip) do
      port = Demo.Server.port()
      {:ok, %{pid: pid, port: port, url: "http://#{:inet.ntoa(ip)}:#{port}"}}
    end
  end

  defp start_supervisor(port, ip) do
    # Supervisor.start_link links the caller; a failed start must not take it down.
    previous = Process.flag(:trap_exit, true)

    try do
      case Supervisor.start_link(children(port, ip), strategy: :one_for_all, name: @supervisor) do
        {:ok, pid} ->
          {:ok, pid}

        {:error, {:already_started, _}} ->
          {:error, :already_started}

        {:error, reason} ->
          # The failed supervisor exits with the same reason; drop that exit signal.
          receive do
            {:EXIT, _, ^reason} -> :ok
          after
            1_000 -> :ok
          end

          if eaddrinuse?(reason), do: {:error, {:port_in_use, port}}, else: {:error, reason}
      end
    after
      Process.flag(:trap_exit, previous)
    end
  end

  defp eaddrinuse?(:eaddrinuse), do: true
  defp eaddrinuse?({:already_started, _}), do: true
  defp eaddrinuse?(tuple) when is_tuple(tuple), do: tuple |> Tuple.to_list() |> eaddrinuse?()
  defp eaddrinuse?(list) when is_list(list), do: Enum.any?(list, &eaddrinuse?/1)
  defp eaddrinuse?(_), do: false

  @doc "Stops a demo started with `start/1` (its HTTP server included)."
  @spec stop(map()) :: :ok
  def stop(%{pid: pid}) do
    if Process.alive?(pid) do
      ref = Process.monitor(pid)
      Process.unlink(pid)
      Process.exit(pid, :shutdown)

      receive do
        {:DOWN, ^ref, :process, _, _} -> :ok
      end
    end

    :ok
  end

  defp children(port, ip) do
    [
      {Hotpath.RateLimiter,
       name: @api_limiter, algorithm: :gcra, limit: 10, period: 1_000, burst: 20},
      {Hotpath.RateLimiter, name: @login_limiter, algorithm: :gcra, limit: 5, period: 10_000},
      {Hotpath.Metrics, name: @metrics, metrics: Demo.Metrics.definitions(), telemetry: false},
      {Hotpath.Compute, name: @compute, max_concurrency: 1, max_queue: 4},
      Demo.Stats,
      {Demo.Users, @password_opts},
      {Demo.Server, port: port, ip: ip}
    ]
  end
end
