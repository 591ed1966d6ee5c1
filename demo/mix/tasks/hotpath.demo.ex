defmodule Mix.Tasks.Hotpath.Demo do
  @shortdoc "Runs Hotpath's live demo: an HTTP server under load, with a dashboard"
  @moduledoc """
  Runs Hotpath's demo: a real HTTP server (OTP's `:inets` httpd) that uses the rate limiter,
  metrics and compute pool the way a Phoenix app would, driven by a built-in load generator
  over real HTTP, with a live dashboard.

      mix hotpath.demo                 # ~20 s of load, then a summary
      mix hotpath.demo --duration 60   # a longer run
      mix hotpath.demo --serve         # keep serving after the load (Ctrl-C to stop)
      mix hotpath.demo --port 4041     # another port (0 picks a free one)

  While it runs, open the dashboard at http://127.0.0.1:4040/ (request rate, allowed and
  denied, p50/p99 latency, the compute queue and the scheduler heartbeat gap, live), and
  the Prometheus scrape at /metrics. See `Hotpath.Demo` for the endpoints.

  Options:

    * `--duration SECONDS` - how long the load runs (default 20; 0 for none)
    * `--port PORT` - the port on 127.0.0.1 (default 4040)
    * `--serve` - keep serving after the load and the summary, until interrupted
    * `--clients N` - well-behaved clients (default 40)
    * `--abusive N` - abusive clients (default 8)
  """
  use Mix.Task

  alias Hotpath.Demo

  @switches [
    duration: :integer,
    port: :integer,
    serve: :boolean,
    clients: :integer,
    abusive: :integer
  ]

  @impl true
  def run(args) do
    opts = parse!(args)
    Mix.Task.run("app.start")
    info = Hotpath.native_info()

    Mix.shell().info(
      "Hotpath #{Application.spec(:hotpath, :vsn)} (hotpath_nif #{info.nif_crate_version}, " <>
        "#{info.profile} build) on Erlang/OTP #{System.otp_release()}, Elixir #{System.version()}, " <>
        "#{System.schedulers_online()} schedulers, " <>
        "#{:erlang.system_info(:dirty_cpu_schedulers_online)} dirty CPU schedulers"
    )

    demo =
      case Demo.start(port: opts[:port]) do
        {:ok, demo} ->
          demo

        {:error, {:port_in_use, port}} ->
          Mix.raise(
            "port #{port} is already in use on 127.0.0.1: stop whatever listens there, or pick " <>
              "another port with --port (e.g. mix hotpath.demo --port #{port + 1}; --port 0 picks a free one)"
          )

        {:error, reason} ->
          Mix.raise("the demo could not start: #{inspect(reason)}")
      end

    try do
      Mix.shell().info("""
      Serving on #{demo.url}
        dashboard  #{demo.url}/
        metrics    #{demo.url}/metrics
        API        GET #{demo.url}/api/items, POST #{demo.url}/api/login
      """)

      if opts[:duration] > 0, do: load(demo, opts)

      if opts[:serve] do
        Mix.shell().info("Serving #{demo.url}/ until interrupted (Ctrl-C twice).")
        Process.sleep(:infinity)
      end
    after
      Demo.stop(demo)
    end

    Mix.shell().info("Demo stopped cleanly.")
  end

  defp parse!(args) do
    case OptionParser.parse(args, strict: @switches) do
      {opts, [], []} ->
        opts =
          Keyword.merge([duration: 20, port: 4040, serve: false, clients: 40, abusive: 8], opts)

        for key <- [:duration, :clients, :abusive], opts[key] < 0 do
          Mix.raise("--#{key} must not be negative")
        end

        if opts[:port] not in 0..65_535, do: Mix.raise("--port must be in 0..65535")
        opts

      {_, rest, invalid} ->
        bad = Enum.map(invalid, &elem(&1, 0)) ++ rest

        Mix.raise(
          "unexpected arguments #{inspect(bad)}; usage: mix hotpath.demo [--duration S] [--port P] [--serve] [--clients N] [--abusive N]"
        )
    end
  end

  defp load(demo, opts) do
    Mix.shell().info(
      "Load: #{opts[:clients]} well-behaved and #{opts[:abusive]} abusive clients for #{opts[:duration]} s " <>
        "(API limit: 10 requests/s per client, bursts of 20; logins: 5 per 10 s per client)"
    )

    result =
      Demo.Load.run(demo.url,
        duration_ms: opts[:duration] * 1_000,
        well_behaved: opts[:clients],
        abusive: opts[:abusive],
        on_tick: fn second ->
          Mix.shell().info(Demo.Report.progress(second, Demo.Stats.latest()))
        end
      )

    # One more sample so the totals include the last second.
    totals = Demo.Stats.totals()
    names = Demo.names()

    Mix.shell().info(
      Demo.Report.summary(
        result,
        Hotpath.Metrics.snapshot(names.metrics),
        Hotpath.Compute.info(names.compute),
        totals
      )
    )
  end
end
