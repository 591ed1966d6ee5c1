# Hotpath.Compute: scheduler responsiveness under saturation, argon2id against the reference
# C implementation, BLAKE3 against :crypto's SHA-256, and cancellation latency.
#
#     mix run benches/compute.exs
#
# These kernels take milliseconds per call, so this script times whole calls (median of
# several runs) instead of the harness's per-op loop; tables and target lines follow the
# harness's format. Needs python3 with argon2-cffi for the argon2 baseline (scripts/bootstrap).
Code.require_file("support/harness.exs", __DIR__)

defmodule Bench.Compute do
  alias Hotpath.{Compute, Digest, Password}
  import Hotpath.Bench, only: [format_ratio: 1]

  @m 19_456
  @t 2
  @p 1
  @scenario_ms 3_000
  @callers 4

  def run do
    met =
      [responsiveness(), argon2(), blake3(), cancellation()]
      |> List.flatten()

    IO.puts("")
    %{targets_met: Enum.all?(met)}
  end

  # ---- responsiveness ---------------------------------------------------------------

  defp responsiveness do
    IO.puts("\n## Compute: normal-scheduler responsiveness under saturation\n")

    IO.puts(
      "#{@callers} processes loop for #{@scenario_ms} ms, alternating an argon2id hash " <>
        "(m=#{@m}, t=#{@t}, p=#{@p}) and a BLAKE3 digest of 16 MB; a heartbeat process " <>
        "(`receive after 1`) records how late it wakes up. Pool: `max_concurrency` " <>
        "#{Compute.default_max_concurrency()} (the default), #{:erlang.system_info(:dirty_cpu_schedulers_online)} dirty CPU schedulers.\n"
    )

    pool = :bench_compute_pool
    {:ok, _} = Compute.start_link(name: pool, max_queue: 1_000)
    data = :binary.copy("h", 16 * 1024 * 1024)
    salt = :crypto.strong_rand_bytes(16)

    scenarios = [
      {"Hotpath.Compute pool (dirty, bounded)",
       fn i ->
         job = if rem(i, 2) == 0, do: fn -> hash() end, else: fn -> Digest.blake3(data) end
         {:ok, _} = Compute.run(pool, job, timeout: :infinity)
       end},
      {"dirty NIFs, no pool (unbounded)",
       fn i -> if rem(i, 2) == 0, do: hash(), else: Digest.blake3(data) end},
      {"normal-scheduler NIFs (baseline)",
       fn i ->
         if rem(i, 2) == 0,
           do: Hotpath.Native.bench_normal_password_hash("password", salt, @m, @t, @p),
           else: Hotpath.Native.bench_normal_digest(:blake3, data)
       end}
    ]

    results = Enum.map(scenarios, fn {name, fun} -> {name, saturate(fun)} end)

    IO.puts(
      "| scenario | jobs done | heartbeat worst gap (ms) | p99 gap (ms) | median gap (ms) |"
    )

    IO.puts("|---|---:|---:|---:|---:|")

    for {name, r} <- results do
      IO.puts("| #{name} | #{r.jobs} | #{ms(r.worst)} | #{ms(r.p99)} | #{ms(r.p50)} |")
    end

    IO.puts("")
    {_, pool_result} = hd(results)
    {_, baseline} = List.last(results)

    [
      target(
        "heartbeat worst gap with the pool < 5 ms (baseline: #{ms(baseline.worst)} ms)",
        "#{ms(pool_result.worst)} ms",
        pool_result.worst < 5.0
      )
    ]
  end

  defp hash, do: Password.hash_pwd_salt("password", m_cost: @m, t_cost: @t, parallelism: @p)

  defp saturate(fun) do
    hb = Hotpath.Bench.start_heartbeat()
    deadline = System.monotonic_time(:millisecond) + @scenario_ms

    jobs =
      1..@callers
      |> Enum.map(fn c -> Task.async(fn -> work(fun, c, deadline, 0) end) end)
      |> Enum.map(&Task.await(&1, :infinity))
      |> Enum.sum()

    gaps = Hotpath.Bench.stop_heartbeat(hb)
    %{jobs: jobs, worst: List.last(gaps), p99: pct(gaps, 0.99), p50: pct(gaps, 0.5)}
  end

  defp work(fun, i, deadline, n) do
    if System.monotonic_time(:millisecond) >= deadline do
      n
    else
      fun.(i)
      work(fun, i + 1, deadline, n + 1)
    end
  end

  # ---- argon2id vs argon2-cffi ----------------------------------------------------------

  defp argon2 do
    IO.puts("\n## Compute: argon2id at the default parameters (m=#{@m}, t=#{@t}, p=#{@p})\n")
    n = 30
    salt = :crypto.strong_rand_bytes(16)
    # warm-up
    for _ <- 1..3,
        do: Password.raw_hash("password", salt, m_cost: @m, t_cost: @t, parallelism: @p)

    ours =
      median_of(5, fn ->
        timed(fn ->
          for _ <- 1..n,
              do: Password.hash_pwd_salt("password", m_cost: @m, t_cost: @t, parallelism: @p)
        end) / n
      end)

    cffi = cffi_ns_per_hash(n)

    IO.puts("1 process, median of 5 runs of #{n} hashes:\n")
    IO.puts("| case | ms/hash | hashes/s | vs argon2-cffi |")
    IO.puts("|---|---:|---:|---:|")

    IO.puts(
      "| Hotpath.Password.hash_pwd_salt/2 (RustCrypto argon2, dirty NIF) | #{ms(ours / 1.0e6)} | #{rate(ours)} | #{if cffi, do: format_ratio(ours / cffi), else: "n/a"} |"
    )

    if cffi do
      IO.puts(
        "| argon2-cffi #{cffi_version()} PasswordHasher.hash (reference C, same parameters) | #{ms(cffi / 1.0e6)} | #{rate(cffi)} | 1.00x |"
      )

      IO.puts("")

      [
        target(
          "argon2id hashes/s within 1.25x of argon2-cffi (time ratio <= 1.25x)",
          format_ratio(ours / cffi),
          ours / cffi <= 1.25
        )
      ]
    else
      IO.puts(
        "\nargon2-cffi not available (python3 -m pip install argon2-cffi): baseline skipped\n"
      )

      [target("argon2id within 1.25x of argon2-cffi", "not measured", false)]
    end
  end

  defp cffi_ns_per_hash(n) do
    script = """
    import time, statistics
    from argon2 import PasswordHasher
    ph = PasswordHasher(time_cost=#{@t}, memory_cost=#{@m}, parallelism=#{@p}, hash_len=32, salt_len=16)
    for _ in range(3): ph.hash("password")
    runs = []
    for _ in range(5):
        t = time.perf_counter_ns()
        for _ in range(#{n}): ph.hash("password")
        runs.append((time.perf_counter_ns() - t) / #{n})
    print(statistics.median(runs))
    """

    with python when is_binary(python) <- System.find_executable("python3"),
         {out, 0} <- System.cmd(python, ["-c", script], stderr_to_stdout: true),
         {ns, _} <- Float.parse(String.trim(out)) do
      ns
    else
      _ -> nil
    end
  end

  defp cffi_version do
    case System.cmd("python3", [
           "-c",
           "import importlib.metadata as m; print(m.version('argon2-cffi'))"
         ]) do
      {v, 0} -> String.trim(v)
      _ -> "?"
    end
  end

  # ---- BLAKE3 vs :crypto SHA-256 --------------------------------------------------------

  defp blake3 do
    IO.puts("\n## Compute: digest of a 64 MB binary\n")
    data = :crypto.strong_rand_bytes(64 * 1024 * 1024)
    mb = 64.0

    cases = [
      {"Hotpath.Digest.blake3/2 (dirty, 10 ms steps)", fn -> Digest.blake3(data) end},
      {"Hotpath.Digest.sha256/2 (dirty, 10 ms steps)", fn -> Digest.sha256(data) end},
      {":crypto.hash(:sha256, _) (OpenSSL)", fn -> :crypto.hash(:sha256, data) end}
    ]

    for {_, f} <- cases, do: f.()
    timings = Map.new(cases, fn {name, f} -> {name, median_of(7, fn -> timed(f) end)} end)
    base = timings[":crypto.hash(:sha256, _) (OpenSSL)"]

    IO.puts("1 process, median of 7 runs:\n")
    IO.puts("| case | ms | MB/s | throughput vs :crypto sha256 |")
    IO.puts("|---|---:|---:|---:|")

    for {name, _} <- cases do
      ns = timings[name]

      IO.puts(
        "| #{name} | #{ms(ns / 1.0e6)} | #{round(mb / (ns / 1.0e9))} | #{format_ratio(base / ns)} |"
      )
    end

    IO.puts("")
    ratio = base / timings["Hotpath.Digest.blake3/2 (dirty, 10 ms steps)"]

    [
      target(
        "BLAKE3 throughput >= 2x :crypto.hash(:sha256, _) on 64 MB",
        format_ratio(ratio),
        ratio >= 2.0
      )
    ]
  end

  # ---- cancellation latency -------------------------------------------------------------

  defp cancellation do
    IO.puts("\n## Compute: cancellation latency after a timeout\n")

    IO.puts(
      "A pool job runs a long native kernel; `run/3` times out after 30 ms. Latency: from " <>
        "`run/3` returning `{:error, :timeout}` until the job's cancel flag is set and no " <>
        "native step is running (the VM-wide native gauge reads 0). 40 samples each.\n"
    )

    pool = :bench_cancel_pool
    {:ok, _} = Compute.start_link(name: pool, max_concurrency: 1)
    big = List.duplicate(:binary.copy("c", 16 * 1024 * 1024), 256)

    kernels = [
      {"spin, 50 ms steps", fn me -> Compute.spin(1_000_000, step_us: 50_000, notify: me) end,
       50},
      {"spin, 10 ms steps", fn me -> Compute.spin(1_000_000, step_us: 10_000, notify: me) end,
       10},
      {"BLAKE3 of 4 GB iodata, 10 ms steps", fn me -> Digest.blake3(big, notify: me) end, 10}
    ]

    IO.puts("| kernel | step (ms) | p50 (ms) | p99 (ms) | max (ms) |")
    IO.puts("|---|---:|---:|---:|---:|")

    worst =
      for {name, job, step} <- kernels do
        samples = for _ <- 1..40, do: cancel_latency(pool, job)
        sorted = Enum.sort(samples)

        IO.puts(
          "| #{name} | #{step} | #{ms(pct(sorted, 0.5))} | #{ms(pct(sorted, 0.99))} | #{ms(List.last(sorted))} |"
        )

        pct(sorted, 0.99)
      end

    IO.puts("")
    p99 = Enum.max(worst)
    [target("cancellation p99 under one step (<= 50 ms)", "#{ms(p99)} ms", p99 <= 50.0)]
  end

  # Once the job's cancel flag is set no new step starts, so "flag set and no native step
  # running" means the work has stopped.
  defp cancel_latency(pool, job) do
    me = self()
    {:error, :timeout} = Compute.run(pool, fn -> job.(me) end, timeout: 30)
    t0 = System.monotonic_time(:microsecond)
    native = receive do: ({:hotpath_compute_job, native} -> native)
    wait_cancelled(native)
    wait_idle()
    (System.monotonic_time(:microsecond) - t0) / 1_000
  end

  defp wait_cancelled(native) do
    if Compute.job_info(native).state != :cancelled, do: wait_cancelled(native)
  end

  defp wait_idle do
    case Hotpath.Native.compute_native_load(false) do
      {0, _} -> :ok
      _ -> wait_idle()
    end
  end

  # ---- helpers -------------------------------------------------------------------------

  defp timed(fun) do
    t = System.monotonic_time(:nanosecond)
    fun.()
    System.monotonic_time(:nanosecond) - t
  end

  defp median_of(n, fun) do
    sorted = Enum.sort(for _ <- 1..n, do: fun.())
    Enum.at(sorted, div(n, 2))
  end

  defp pct([], _), do: 0.0
  defp pct(sorted, q), do: Enum.at(sorted, min(length(sorted) - 1, floor(q * length(sorted))))

  defp ms(x), do: :erlang.float_to_binary(x / 1, decimals: 2)
  defp rate(ns), do: :erlang.float_to_binary(1.0e9 / ns, decimals: 1)

  defp target(description, actual, met) do
    IO.puts("target: #{description}: #{actual} - #{if met, do: "met", else: "NOT met"}")
    met
  end
end

Hotpath.Bench.main(&Bench.Compute.run/0)
