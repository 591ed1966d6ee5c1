defmodule Hotpath.Test.ScrapeServer do
  @moduledoc false
  # A minimal HTTP/1.1 server on loopback answering every request with
  # `Hotpath.Metrics.HTTP.response/2`, so a real Prometheus server scrapes a Hotpath.Metrics
  # instance with its own `accept` header. One request per connection.

  @doc "Starts a server for `config` (`Hotpath.Metrics.HTTP.init/1`); returns `{pid, port}`."
  def start(config) do
    parent = self()

    pid =
      spawn_link(fn ->
        {:ok, listen} =
          :gen_tcp.listen(0, [:binary, ip: {127, 0, 0, 1}, active: false, reuseaddr: true])

        {:ok, port} = :inet.port(listen)
        send(parent, {__MODULE__, self(), port})
        accept(listen, config)
      end)

    receive do
      {__MODULE__, ^pid, port} -> {pid, port}
    after
      5_000 -> raise "the scrape server did not start"
    end
  end

  @doc "Stops a server `start/1` returned."
  def stop({pid, _port}) do
    Process.unlink(pid)
    Process.exit(pid, :kill)
  end

  defp accept(listen, config) do
    {:ok, socket} = :gen_tcp.accept(listen)
    pid = spawn(fn -> serve(socket, config) end)
    :ok = :gen_tcp.controlling_process(socket, pid)
    send(pid, :go)
    accept(listen, config)
  end

  defp serve(socket, config) do
    receive do
      :go -> :ok
    end

    with {:ok, head} <- read_head(socket, "") do
      [request_line | header_lines] = String.split(head, "\r\n", trim: true)
      [method, target | _] = String.split(request_line, " ")

      headers =
        for line <- header_lines, [name, value] <- [String.split(line, ":", parts: 2)] do
          {String.downcase(name), String.trim(value)}
        end

      request = %{method: method, request_path: target, req_headers: headers}

      {status, headers, body} =
        case Hotpath.Metrics.HTTP.response(config, request) do
          :pass -> {404, [{"content-type", "text/plain"}], "not found\n"}
          response -> response
        end

      body = IO.iodata_to_binary(body)

      head =
        ["HTTP/1.1 #{status} Status\r\n"] ++
          for({name, value} <- headers, do: "#{name}: #{value}\r\n") ++
          ["content-length: #{byte_size(body)}\r\n", "connection: close\r\n\r\n"]

      :gen_tcp.send(socket, [head, body])
    end

    :gen_tcp.close(socket)
  end

  defp read_head(socket, acc) do
    case :binary.split(acc, "\r\n\r\n") do
      [head, _rest] ->
        {:ok, head}

      [_] when byte_size(acc) > 65_536 ->
        :error

      [_] ->
        case :gen_tcp.recv(socket, 0, 5_000) do
          {:ok, data} -> read_head(socket, acc <> data)
          error -> error
        end
    end
  end
end
