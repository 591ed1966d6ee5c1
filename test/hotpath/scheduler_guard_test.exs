defmodule Hotpath.SchedulerGuardTest do
  # Installs the VM's (single) system monitor: not async.
  use ExUnit.Case, async: false

  alias Hotpath.{Compute, Digest, Password}

  # "A few ms": our normal-scheduler NIFs take microseconds; the margin absorbs a noisy,
  # shared machine. A dirty NIF never triggers long_schedule (it does not hold a normal
  # scheduler); a 50 ms normal-scheduler NIF does (measured; `long_schedule` in the docs of
  # erlang:system_monitor/2; the same guard is suggested in dukesoferl/re2#9).
  @limit_ms 10

  setup do
    previous = :erlang.system_monitor()
    :erlang.system_monitor(self(), [{:long_schedule, @limit_ms}])

    on_exit(fn ->
      case previous do
        :undefined -> :erlang.system_monitor(:undefined)
        {pid, opts} -> :erlang.system_monitor(pid, opts)
      end
    end)
  end

  test "no Hotpath call holds a normal scheduler for more than a few ms" do
    pool = :scheduler_guard_pool
    start_supervised!({Compute, name: pool, max_queue: 1_000})
    big = :binary.copy("g", 32 * 1024 * 1024)
    small = :binary.copy("s", 64 * 1024)

    work = [
      fn -> Digest.blake3(big) end,
      fn -> Digest.sha256([big, small]) end,
      fn -> for _ <- 1..200, do: Digest.sha256(small) end,
      fn -> for _ <- 1..200, do: Digest.blake3(small) end,
      fn -> Password.hash_pwd_salt("pw") end,
      fn -> Password.verify_pass("pw", Password.hash_pwd_salt("pw", m_cost: 64, t_cost: 1)) end,
      fn -> Password.no_user_verify() end,
      fn ->
        for _ <- 1..1_000,
            do:
              Password.info(
                "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$3fUQ941rsmo3/Cpi+6K2zMNtfMLWcfukgfsepsnYCw4"
              )
      end,
      fn -> Compute.spin(20, step_us: 20_000) end,
      fn -> Compute.run(pool, fn -> Compute.spin(10, step_us: 20_000) end, timeout: 50) end,
      fn -> Compute.run(pool, fn -> Digest.blake3(big) end, timeout: :infinity) end,
      fn -> for _ <- 1..100, do: Compute.info(pool) end
    ]

    # Each call measured alone in scheduler-thread CPU time (Hotpath.SchedulerTrace): the
    # wall-clock long_schedule monitor also counts the OS preempting a scheduler thread, which
    # a loaded 2-core machine does for tens of ms.
    offenders =
      for {fun, i} <- Enum.with_index(work),
          %{longest_us: us, longest: ends} =
            Hotpath.SchedulerTrace.longest_stretch(fn _ -> fun.() end,
              ms: 0,
              min_calls: 1,
              rounds: 2
            ),
          us > @limit_ms * 1_000,
          do: {i, us, ends}

    assert offenders == [],
           "normal schedulers held longer than #{@limit_ms} ms in Hotpath code " <>
             "({work index, µs, {in, out}}): " <> inspect(offenders, pretty: true)
  end

  test "rate limiter calls on a large table never hold a normal scheduler" do
    alias Hotpath.RateLimiter
    l = :scheduler_guard_limiter

    start_supervised!(
      {RateLimiter,
       name: l,
       algorithm: :fixed_window,
       limit: 1,
       period: 1_000,
       max_keys: 400_000,
       sweep_every: :infinity}
    )

    fill = fn -> Enum.each(1..300_000, &RateLimiter.hit(l, &1, 1, now: 0)) end
    fill.()
    collect_long_schedules()

    assert %{keys: 300_000} = RateLimiter.info(l)
    assert %{removed: 300_000} = RateLimiter.sweep(l, now: 5_000)
    fill.()
    assert :ok = RateLimiter.reset_all(l)
    Enum.each(1..1_000, &RateLimiter.hit(l, {:tuple, &1, "key"}))

    # Keys of millions of elements are refused without being encoded.
    huge = Enum.to_list(1..5_000_000)

    for key <- [huge, List.to_tuple(huge), {:wrapped, [huge]}] do
      assert_raise ArgumentError, fn -> RateLimiter.hit(l, key) end
    end

    offenders = collect_long_schedules()

    assert offenders == [],
           "normal schedulers held longer than #{@limit_ms} ms in Hotpath code: " <>
             inspect(offenders, pretty: true)
  end

  defp collect_long_schedules do
    receive do
      {:monitor, pid, :long_schedule, info} ->
        if hotpath?(info[:in]) or hotpath?(info[:out]),
          do: [{pid, info} | collect_long_schedules()],
          else: collect_long_schedules()
    after
      0 -> []
    end
  end

  defp hotpath?({module, _f, _a}), do: String.starts_with?(inspect(module), "Hotpath")
  defp hotpath?(_), do: false
end
