defmodule Hotpath.Demo.Report do
  @moduledoc false
  # The load generator's progress line and final summary table.

  @doc "One line per second from the latest stats sample."
  def progress(second, nil), do: "[#{pad(second, 3)}s] warming up"

  def progress(second, s) do
    "[#{pad(second, 3)}s] #{pad(s.requests, 5)} req/s | allowed #{pad(s.allowed, 4)} | " <>
      "denied #{pad(s.denied, 5)} | overloaded #{pad(s.overloaded, 3)} | " <>
      "p50 #{num(s.p50_ms)} ms | p99 #{num(s.p99_ms)} ms | " <>
      "compute queue #{s.compute_queued + s.compute_running} | heartbeat gap #{num(s.heartbeat_gap_ms)} ms"
  end

  @doc "The final summary: a table per client class and the server-side numbers."
  def summary(load, snapshot, compute, totals) do
    client = series_by(snapshot, [:demo, :client, :request, :duration], :class)
    [api] = series_of(snapshot, [:demo, :api, :request, :duration])
    [verify] = series_of(snapshot, [:demo, :login, :verify, :duration])

    header = [
      "class",
      "clients",
      "requests",
      "allowed",
      "denied 429",
      "shed 503",
      "logins",
      "p50 ms",
      "p90 ms",
      "p99 ms"
    ]

    rows =
      for {class, label} <- [well_behaved: "well-behaved", abusive: "abusive"] do
        c = load.classes[class]
        q = quantiles(client[Atom.to_string(class)])

        [
          label,
          c.clients,
          c.requests,
          c.ok + c.unauthorized,
          c.denied,
          c.overloaded,
          c.logins,
          q.p50,
          q.p90,
          q.p99
        ]
      end

    seconds = load.elapsed_ms / 1000
    requests = Enum.sum(for {_, c} <- load.classes, do: c.requests)
    errors = Enum.sum(for {_, c} <- load.classes, do: c.errors)
    api_q = quantiles(api)
    verify_q = quantiles(verify)

    """

    Summary: #{requests} requests in #{:erlang.float_to_binary(seconds, decimals: 1)} s over real HTTP (#{round(requests / max(seconds, 0.001))} req/s), #{errors} transport errors

    #{table([header | rows])}
    (allowed = admitted by the rate limiter; latencies as the clients saw them, from Hotpath.Metrics)

    server, from Hotpath.Metrics:  API latency p50 #{api_q.p50} ms, p90 #{api_q.p90} ms, p99 #{api_q.p99} ms (#{api.count} requests)
    logins, Hotpath.Compute + Hotpath.Password (argon2id): #{compute.completed} jobs verified (p50 #{verify_q.p50} ms, p99 #{verify_q.p99} ms incl. queue), #{compute.rejected} rejected by the bounded queue (overloaded)
    worst scheduler heartbeat gap: #{num(totals[:heartbeat_worst_ms])} ms (lateness of a 10 ms timer on a normal scheduler)
    """
  end

  defp series_of(snapshot, name) do
    case Enum.find(snapshot, &(&1.name == name)) do
      %{series: []} -> [%{count: 0, quantiles: %{}}]
      %{series: series} -> series
    end
  end

  defp series_by(snapshot, name, tag) do
    snapshot
    |> series_of(name)
    |> Enum.filter(&Map.has_key?(&1, :tags))
    |> Map.new(&{&1.tags[tag], &1})
  end

  defp quantiles(%{count: count, quantiles: q}) when count > 0,
    do: %{p50: ms(q[0.5]), p90: ms(q[0.9]), p99: ms(q[0.99])}

  defp quantiles(_), do: %{p50: "-", p90: "-", p99: "-"}

  defp ms(seconds) when is_number(seconds), do: num(seconds * 1000)

  defp num(nil), do: "-"
  defp num(x) when is_float(x) and x >= 100, do: Integer.to_string(round(x))
  defp num(x) when is_float(x) and x >= 10, do: :erlang.float_to_binary(x, decimals: 1)
  defp num(x) when is_float(x), do: :erlang.float_to_binary(x, decimals: 2)
  defp num(x), do: to_string(x)

  defp pad(value, width), do: value |> to_string() |> String.pad_leading(width)

  defp table(rows) do
    rows = Enum.map(rows, fn row -> Enum.map(row, &to_string/1) end)

    widths =
      rows
      |> Enum.zip()
      |> Enum.map(fn col ->
        col |> Tuple.to_list() |> Enum.map(&String.length/1) |> Enum.max()
      end)

    [head | body] =
      Enum.map(rows, fn [first | rest] ->
        [first_width | rest_widths] = widths

        [
          String.pad_trailing(first, first_width)
          | Enum.zip_with(rest, rest_widths, &String.pad_leading/2)
        ]
        |> Enum.join("  ")
      end)

    rule = String.duplicate("-", String.length(head))
    Enum.join([head, rule | body], "\n")
  end
end
