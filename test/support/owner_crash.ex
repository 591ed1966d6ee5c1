defmodule Hotpath.Test.OwnerCrash do
  @moduledoc false
  # A limiter under a supervisor of its own, hit from 4 processes while its owner is killed
  # 3 times: what the owner-crash survival tests share.

  import Hotpath.Test.Eventually

  @doc """
  Starts a limiter with `opts` under a supervisor (as a test's child), makes 4 processes each
  call `hit.()` `times` times while the owner is killed 3 times, and returns
  `{admitted, first_owner, supervisor}`: `admitted` counts the calls `hit` answered `true`.
  """
  def hit_through_crashes(opts, times, hit) do
    name = Keyword.fetch!(opts, :name)

    sup =
      ExUnit.Callbacks.start_supervised!(%{
        id: :limiter_sup,
        type: :supervisor,
        start:
          {Supervisor, :start_link,
           [[{Hotpath.RateLimiter, opts}], [strategy: :one_for_one, max_restarts: 10]]}
      })

    owner = Process.whereis(name)
    hitters = for _ <- 1..4, do: Task.async(fn -> Enum.count(1..times, fn _ -> hit.() end) end)

    for _ <- 1..3 do
      killed = Process.whereis(name)
      Process.exit(killed, :kill)
      eventually(fn -> (pid = Process.whereis(name)) && pid != killed end)
    end

    {hitters |> Enum.map(&Task.await/1) |> Enum.sum(), owner, sup}
  end
end
