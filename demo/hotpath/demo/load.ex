defmodule Hotpath.Demo.Load do
  @moduledoc false
  # The demo's load generator: client processes over real HTTP with :httpc (its own
  # profile, keep-alive connections), each a loop bounded by a deadline.
  #
  #   * well-behaved clients: about `:well_rate` requests/s each (under the API limit of 10/s),
  #     mostly `GET /api/items`, now and then a login with the right password; they wait
  #     out `retry-after` when told to;
  #   * abusive clients: `:abusive_rate` requests/s each, ignoring 429s; a share of their
  #     requests are logins with wrong passwords from a new client id each time
  #     (credential stuffing from rotating addresses), which per-client limits cannot stop
  #     and the compute pool's bounded queue sheds.

  alias Hotpath.Demo

  @profile :hotpath_demo_load
  @classes [:well_behaved, :abusive]
  @fields [:requests, :ok, :unauthorized, :denied, :overloaded, :errors, :logins]

  @defaults [
    duration_ms: 20_000,
    well_behaved: 40,
    abusive: 8,
    well_rate: 4,
    abusive_rate: 100,
    abusive_login_share: 0.4,
    on_tick: nil
  ]

  @doc """
  Runs the load against `base_url` for `:duration_ms`, calling `on_tick.(second)` once a
  second, and returns per-class counts: `%{elapsed_ms: ms, classes: %{class => counts}}`.
  """
  def run(base_url, opts \\ []) do
    opts =
      Keyword.merge(
        @defaults,
        Hotpath.Options.known!(
          opts,
          Enum.map(@defaults, fn {key, _} -> {key, []} end),
          "Hotpath.Demo.Load.run/2"
        )
      )

    {:ok, _} = Application.ensure_all_started(:inets)

    httpc =
      case :inets.start(:httpc, profile: @profile) do
        {:ok, pid} -> pid
        # Left over by a run that was killed.
        {:error, {:already_started, pid}} -> pid
      end

    try do
      :ok =
        :httpc.set_options(
          [max_sessions: 200, max_keep_alive_length: 1_000, keep_alive_timeout: 30_000],
          @profile
        )

      counters = :counters.new(length(@classes) * length(@fields), [:write_concurrency])
      started = System.monotonic_time(:millisecond)
      deadline = started + opts[:duration_ms]
      base = String.to_charlist(base_url)

      clients =
        for {class, n, rate} <- [
              {:well_behaved, opts[:well_behaved], opts[:well_rate]},
              {:abusive, opts[:abusive], opts[:abusive_rate]}
            ],
            i <- 1..n//1 do
          client = %{
            class: class,
            id: "#{class}-#{i}",
            base: base,
            interval_ms: div(1_000, max(rate, 1)),
            login_share: if(class == :abusive, do: opts[:abusive_login_share], else: 0.05),
            counters: counters,
            deadline: deadline
          }

          Task.async(fn -> loop(client, 0) end)
        end

      tick(opts[:on_tick], started, deadline, 1)
      Task.await_many(clients, 30_000)

      %{
        elapsed_ms: System.monotonic_time(:millisecond) - started,
        classes:
          Map.new(@classes, fn class ->
            clients = if class == :abusive, do: opts[:abusive], else: opts[:well_behaved]
            counts = Map.new(@fields, &{&1, :counters.get(counters, index(class, &1))})
            {class, Map.put(counts, :clients, clients)}
          end)
      }
    after
      :inets.stop(:httpc, httpc)
    end
  end

  defp tick(on_tick, started, deadline, second) do
    next = started + second * 1_000

    if next <= deadline do
      Process.sleep(max(0, next - System.monotonic_time(:millisecond)))
      if on_tick, do: on_tick.(second)
      tick(on_tick, started, deadline, second + 1)
    else
      Process.sleep(max(0, deadline - System.monotonic_time(:millisecond)))
    end
  end

  defp loop(client, n) do
    now = System.monotonic_time(:millisecond)

    if now < client.deadline do
      wait = request(client, n)
      # Pace to the client's rate (with jitter, so clients do not move in lockstep).
      pause = max(wait, client.interval_ms + :rand.uniform(max(1, div(client.interval_ms, 4))))
      spent = System.monotonic_time(:millisecond) - now

      Process.sleep(
        min(max(0, pause - spent), max(0, client.deadline - System.monotonic_time(:millisecond)))
      )

      loop(client, n + 1)
    else
      :ok
    end
  end

  # Sends one request; returns how long the client chooses to wait (ms) before the next.
  defp request(client, n) do
    login? = :rand.uniform() < client.login_share
    started = System.monotonic_time()
    response = if login?, do: login(client, n), else: items(client)
    seconds = (System.monotonic_time() - started) / System.convert_time_unit(1, :second, :native)
    Demo.Metrics.client(Atom.to_string(client.class), seconds)

    count(client, :requests)
    if login?, do: count(client, :logins)

    case response do
      {:ok, {{_, status, _}, headers, _body}} ->
        count(client, outcome(status))
        backoff(client.class, status, headers)

      {:error, _reason} ->
        count(client, :errors)
        100
    end
  end

  defp items(client) do
    :httpc.request(
      :get,
      {client.base ++ ~c"/api/items", [{~c"x-client-id", String.to_charlist(client.id)}]},
      http_opts(),
      [body_format: :binary],
      @profile
    )
  end

  defp login(client, n) do
    {user, password} = Demo.credentials()

    {id, password} =
      case client.class do
        :abusive -> {"#{client.id}-rotating-#{n}", "guess-#{n}"}
        :well_behaved -> {client.id, password}
      end

    body = URI.encode_query(%{"user" => user, "password" => password})

    :httpc.request(
      :post,
      {client.base ++ ~c"/api/login", [{~c"x-client-id", String.to_charlist(id)}],
       ~c"application/x-www-form-urlencoded", body},
      http_opts(),
      [body_format: :binary],
      @profile
    )
  end

  defp http_opts, do: [timeout: 5_000, connect_timeout: 2_000]

  defp outcome(status) when status in 200..299, do: :ok
  defp outcome(401), do: :unauthorized
  defp outcome(429), do: :denied
  defp outcome(503), do: :overloaded
  defp outcome(_), do: :errors

  # Well-behaved clients honour retry-after; abusive ones do not.
  defp backoff(:well_behaved, status, headers) when status in [429, 503] do
    case List.keyfind(headers, ~c"retry-after", 0) do
      {_, value} ->
        1_000 *
          (value
           |> List.to_string()
           |> Integer.parse()
           |> then(fn
             {s, _} -> s
             :error -> 1
           end))

      nil ->
        1_000
    end
  end

  defp backoff(_class, _status, _headers), do: 0

  defp count(client, field), do: :counters.add(client.counters, index(client.class, field), 1)

  defp index(class, field) do
    Enum.find_index(@classes, &(&1 == class)) * length(@fields) +
      Enum.find_index(@fields, &(&1 == field)) + 1
  end
end
