defmodule Hotpath.Bench do
  @moduledoc """
  A small benchmark harness (Benchee is not installable here).

  Each case is measured after a warm-up, over several rounds taken round-robin across the
  cases (so drift hits every case alike), and the median round is reported. A ratio (a `vs`
  column, a scaling, a target) is the median of the rounds' own ratios: round `i` of one case
  against round `i` of the other, measured moments apart, so a slow round moves both sides
  of its ratio instead of one side of the median's (a `:scaling` target of `run/1`, whose
  two modes are separate passes, is the ratio of the medians). Every case runs
  with 1 process and with one process per online scheduler; the latter reports aggregate
  throughput. All cases and baselines of a table are measured in the same run, so ratios are
  meaningful even where absolute times are not.

      Hotpath.Bench.run(
        title: "NIF floor",
        cases: [
          {"empty NIF", fn -> Hotpath.Native.noop() end},
          {"BIF", fn i -> :erlang.phash2(i) end}
        ],
        baselines: ["empty NIF"],
        targets: [{:ratio, "BIF", "empty NIF", :<=, 1.0, :single}]
      )

  A case is a 0-arity function, or a 1-arity function given the iteration number (use it to
  pick keys). Each call's cost includes the harness loop's (a few ns, the same for every case).

  Targets:

    * `{:ratio, case, baseline, :<= | :>=, x, mode}` - ns/op of `case` / ns/op of `baseline`
      in `mode` (`:single` or `:all`)
    * `{:scaling, case, :>=, x}` - aggregate ops/s with one process per scheduler / ops/s with
      one process
    * `{:custom, description, fun}` - `fun.(results)` returns `{met?, "actual"}`; `results` is
      `%{mode => %{case => %{ns: ns_per_op, ops: ops_per_s}}}`

  Environment: `BENCH_ROUNDS` (default 5), `BENCH_ROUND_MS` (default 200), `BENCH_WARMUP_MS`
  (default 300), `BENCH_MODES` (`single,all`).
  """

  @type result :: %{ns: float(), ops: float()}

  # How long the processes of an aggregate round may take to spread over the schedulers.
  @spread_ms 2_000

  # The line handoff check of `scaling/1` (see `handoff_ns/0`): handoffs per measurement, and
  # the bound of a "near" round.
  @handoffs 5_000
  @near_ns 100

  def run(opts) do
    %{title: title, cases: cases, targets: targets, rounds: rounds} = start = begin(opts)
    baselines = Keyword.get(opts, :baselines, [])
    modes = Keyword.get(opts, :modes, modes_from_env())

    results =
      Map.new(modes, fn mode ->
        procs = procs(mode)
        calibrated = calibrate_all(start)

        samples =
          for _round <- 1..rounds, {name, fun, n} <- calibrated, reduce: %{} do
            acc ->
              sample = measure(fun, n, procs)
              Map.update(acc, name, [sample], &[sample | &1])
          end

        per_case =
          Map.new(calibrated, fn {name, _fun, n} ->
            ns = median(samples[name])
            {name, %{ns: ns, ops: 1.0e9 / ns, n: n, samples: samples[name]}}
          end)

        print_table(mode, procs, rounds, cases, baselines, per_case)
        {mode, per_case}
      end)

    met = Enum.map(targets, &report_target(&1, results))
    IO.puts("")
    %{title: title, results: results, targets_met: Enum.all?(met)}
  end

  @doc """
  Measures how `cases` scale from 1 process to one per online scheduler. Unlike `run/1`,
  the two are measured back to back inside every round (1 process, then all), so a busy
  host moves both alike; the table prints each case's scaling beside the core check's (the
  first case, normally the empty NIF), which shows whether the cores were free, and the line
  handoff check measured just before each aggregate measurement (two processes passing one
  `:atomics` word; see `handoff_ns/0`), which shows what moving a cache line between the
  schedulers cost in that round, with each case's scaling over the rounds of a near handoff
  (at most #{@near_ns} ns) and over the others. Targets are judged on all rounds.

  Targets: `{:scaling, case, :>=, x}` (aggregate ops/s with all processes / ops/s with one),
  `{:scaling_vs_core, case, :>=, x}` (that scaling / the core check's), and
  `{:ratio, case, baseline, op, x, mode}` as in `run/1`.
  """
  def scaling(opts) do
    %{title: title, cases: cases, targets: targets, rounds: rounds} = start = begin(opts)
    [{core, _} | _] = cases
    procs = procs(:all)
    calibrated = calibrate_all(start)

    samples =
      for _round <- 1..rounds, {name, fun, n} <- calibrated, reduce: %{} do
        acc ->
          one = measure(fun, n, 1)
          handoff = handoff_ns()
          all = measure(fun, n, procs)
          Map.update(acc, name, [{one, all, handoff}], &[{one, all, handoff} | &1])
      end

    handoffs = Map.new(samples, fn {name, rounds} -> {name, Enum.map(rounds, &elem(&1, 2))} end)

    results =
      for mode <- [:single, :all], into: %{} do
        index = if mode == :single, do: 0, else: 1

        {mode,
         Map.new(calibrated, fn {name, _, n} ->
           rounds = Enum.map(samples[name], &elem(&1, index))
           ns = median(rounds)
           {name, %{ns: ns, ops: 1.0e9 / ns, n: n, samples: rounds}}
         end)}
      end

    scaling = fn name -> ratio(results[:single][name], results[:all][name]) end
    vs_core = fn name -> ratio(results, name, core) end

    IO.puts(
      "1 process and #{procs} processes (one per scheduler, aggregate) measured back to back, median of #{rounds} rounds:\n"
    )

    IO.puts(
      "| case | 1 process ns/op | #{procs} processes ns/op | scaling | vs #{core} scaling | " <>
        "line handoff ns, median (min-max) | scaling, rounds of a handoff ≤ #{@near_ns} ns / above |"
    )

    IO.puts("|---|---:|---:|---:|---:|---:|---:|")

    for {name, _} <- cases do
      IO.puts(
        "| #{name} | #{format_ns(results[:single][name].ns)} | #{format_ns(results[:all][name].ns)} | " <>
          "#{format_ratio(scaling.(name))} | #{format_ratio(vs_core.(name))} | " <>
          "#{format_handoffs(handoffs[name])} | #{near_far(results, name, handoffs[name])} |"
      )
    end

    IO.puts("")

    met =
      Enum.map(targets, fn
        {:scaling_vs_core, name, op, bound} ->
          label = "#{name}: scaling #{op_label(op)} #{bound}x the #{core}'s scaling"
          ratio_target(label, vs_core.(name), op, bound)

        {:scaling, name, op, bound} ->
          ratio_target(scaling_label(name, op, bound), scaling.(name), op, bound)

        target ->
          report_target(target, results)
      end)

    IO.puts("")
    %{title: title, results: results, targets_met: Enum.all?(met)}
  end

  # The options `run/1` and `scaling/1` share, after printing the table's title and note.
  defp begin(opts) do
    start = %{
      title: Keyword.fetch!(opts, :title),
      cases: Keyword.fetch!(opts, :cases),
      targets: Keyword.get(opts, :targets, []),
      rounds: Keyword.get(opts, :rounds, env_int("BENCH_ROUNDS", 5)),
      round_ms: Keyword.get(opts, :round_ms, env_int("BENCH_ROUND_MS", 200)),
      warmup_ms: Keyword.get(opts, :warmup_ms, env_int("BENCH_WARMUP_MS", 300))
    }

    IO.puts("\n## #{start.title}\n")
    if note = opts[:note], do: IO.puts(note <> "\n")
    start
  end

  # `{name, fun, iterations per round}` of every case.
  defp calibrate_all(%{cases: cases, warmup_ms: warmup_ms, round_ms: round_ms}),
    do: Enum.map(cases, fn {name, fun} -> {name, fun, calibrate(fun, warmup_ms, round_ms)} end)

  @doc "Prints the header (once per VM), then runs `fun`: the body of every bench script."
  def main(fun) do
    if not :persistent_term.get({__MODULE__, :header}, false) do
      IO.puts(header())
      :persistent_term.put({__MODULE__, :header}, true)
    end

    fun.()
  end

  @doc "Machine, runtime and date: printed once at the top of a bench run."
  def header do
    cpu =
      case File.read("/proc/cpuinfo") do
        {:ok, text} ->
          case Regex.run(~r/model name\s*:\s*(.+)/, text) do
            [_, model] -> String.trim(model)
            _ -> "unknown CPU"
          end

        _ ->
          "unknown CPU"
      end

    """
    # Hotpath benchmarks

    - date: #{Date.utc_today()}
    - machine: #{cpu}, #{System.schedulers_online()} schedulers online, #{:erlang.system_info(:dirty_cpu_schedulers_online)} dirty CPU schedulers
    - runtime: OTP #{System.otp_release()}, Elixir #{System.version()}, native profile #{Hotpath.native_info().profile}
    - method: warm-up, #{env_int("BENCH_ROUNDS", 5)} rounds of ~#{env_int("BENCH_ROUND_MS", 200)} ms interleaved across cases, median (ratios: median of the rounds' ratios); "all" = one process per scheduler, aggregate
    """
  end

  # ---- measurement ---------------------------------------------------------------------

  defp procs(:single), do: 1
  defp procs(:all), do: System.schedulers_online()

  # Runs `fun` for about `warmup_ms` (warming caches and the JIT), then picks the iteration
  # count that makes one single-process round last about `round_ms`.
  defp calibrate(fun, warmup_ms, round_ms) do
    deadline = System.monotonic_time(:millisecond) + warmup_ms
    {n, elapsed_ns} = warm(fun, 1_000, deadline, {0, 0})
    per_op = max(elapsed_ns / max(n, 1), 0.5)
    max(1_000, round(round_ms * 1.0e6 / per_op))
  end

  defp warm(fun, batch, deadline, {n, ns}) do
    {time_ns, _} = timed(fun, batch)
    acc = {n + batch, ns + time_ns}

    if System.monotonic_time(:millisecond) >= deadline,
      do: acc,
      else: warm(fun, min(batch * 2, 1_000_000), deadline, acc)
  end

  # ns per op of one round: `procs` processes each running `n` iterations, aggregate: the
  # slowest process's time over all the iterations. The processes are spawned on this
  # process's scheduler and the VM spreads them over the others only when it rebalances,
  # which can take most of a round (both processes then share one scheduler and "scale"
  # 1.0x). So each first runs the case untimed until the processes sit on distinct
  # schedulers (up to `@spread_ms`; a round that could not spread is reported), and all
  # start timing together.
  defp measure(fun, n, 1) do
    :erlang.garbage_collect()
    {ns, _} = timed(fun, n)
    ns / n
  end

  defp measure(fun, n, procs) do
    parent = self()
    # Slots 1..procs: each process's scheduler; slot procs + 1: processes ready.
    board = :atomics.new(procs + 1, [])
    spread = min(procs, System.schedulers_online())
    deadline = System.monotonic_time(:millisecond) + @spread_ms

    pids =
      for p <- 1..procs do
        spawn_link(fn ->
          spread?(fun, board, p, procs, spread, deadline)
          :atomics.add(board, procs + 1, 1)
          await_ready(board, procs)
          # Each process starts at another iteration number, so 1-arity cases walking a key
          # list do not hit the same keys in lockstep.
          start = System.monotonic_time(:nanosecond)
          loop(fun, n, p * 7_919)
          send(parent, {:done, self(), System.monotonic_time(:nanosecond) - start})
        end)
      end

    slowest =
      pids
      |> Enum.map(fn pid -> receive do: ({:done, ^pid, ns} -> ns) end)
      |> Enum.max()

    schedulers = for p <- 1..procs, uniq: true, do: :atomics.get(board, p)

    if length(schedulers) < spread,
      do: IO.puts("(a round of #{procs} processes ran on #{length(schedulers)} scheduler(s))")

    slowest / (n * procs)
  end

  # Runs `fun` untimed, 200 calls at a time, until the processes' schedulers are `spread`
  # distinct ones or the deadline passes.
  defp spread?(fun, board, p, procs, spread, deadline) do
    :atomics.put(board, p, :erlang.system_info(:scheduler_id))
    seen = for q <- 1..procs, id = :atomics.get(board, q), id != 0, uniq: true, do: id

    cond do
      length(seen) >= spread ->
        true

      System.monotonic_time(:millisecond) >= deadline ->
        false

      true ->
        loop(fun, 200, p * 7_919)
        spread?(fun, board, p, procs, spread, deadline)
    end
  end

  defp await_ready(board, procs) do
    if :atomics.get(board, procs + 1) < procs, do: await_ready(board, procs)
  end

  # The line handoff check: two processes on distinct schedulers pass one `:atomics` word
  # back and forth; the result is ns per one-way handoff, or nil when they could not spread.
  # This host's vCPUs move between the VM host's cores: a cache line written on one and read
  # on the other took from ~30 to ~430 ns from one second to the next (a Rust ping-pong, in
  # `benches/RESULTS.md`), which the empty NIF's check does not show and which every case
  # whose processes write the same lines pays on every op.
  defp handoff_ns do
    parent = self()
    board = :atomics.new(3, [])
    # The word counts handoffs: process 1 moves it from even to odd, process 2 back.
    ball = :atomics.new(1, [])
    deadline = System.monotonic_time(:millisecond) + @spread_ms

    pids =
      for p <- 1..2 do
        spawn_link(fn ->
          spread = spread?(fn -> :ok end, board, p, 2, 2, deadline)
          :atomics.add(board, 3, 1)
          await_ready(board, 2)
          start = System.monotonic_time(:nanosecond)
          pass(ball, p - 1, 2 * @handoffs)
          send(parent, {:handoff, self(), spread, System.monotonic_time(:nanosecond) - start})
        end)
      end

    results = for pid <- pids, do: receive(do: ({:handoff, ^pid, spread, ns} -> {spread, ns}))

    if Enum.all?(results, &elem(&1, 0)),
      do: (results |> Enum.map(&elem(&1, 1)) |> Enum.max()) / (2 * @handoffs),
      else: nil
  end

  defp pass(_ball, turn, stop) when turn >= stop, do: :ok

  defp pass(ball, turn, stop) do
    if :atomics.get(ball, 1) == turn do
      :atomics.put(ball, 1, turn + 1)
      pass(ball, turn + 2, stop)
    else
      pass(ball, turn, stop)
    end
  end

  defp format_handoffs(handoffs) do
    case Enum.reject(handoffs, &is_nil/1) do
      [] -> "-"
      ns -> "#{format_ns(median(ns))} (#{format_ns(Enum.min(ns))}-#{format_ns(Enum.max(ns))})"
    end
  end

  # The case's scaling over the rounds whose handoff was near, and over the others, each the
  # median of those rounds' own scalings, with their number.
  defp near_far(results, name, handoffs) do
    scalings = round_ratios(results[:single][name].samples, results[:all][name].samples)

    {near, far} =
      Enum.zip(scalings, handoffs)
      |> Enum.reject(fn {_, h} -> is_nil(h) end)
      |> Enum.split_with(fn {_, h} -> h <= @near_ns end)

    part = fn
      [] -> "-"
      rounds -> "#{format_ratio(median(Enum.map(rounds, &elem(&1, 0))))} (#{length(rounds)})"
    end

    "#{part.(near)} / #{part.(far)}"
  end

  defp timed(fun, n) do
    start = System.monotonic_time(:nanosecond)
    loop(fun, n)
    {System.monotonic_time(:nanosecond) - start, :ok}
  end

  defp loop(fun, n, offset \\ 0)
  defp loop(fun, n, _offset) when is_function(fun, 0), do: loop0(fun, n)
  defp loop(fun, n, offset) when is_function(fun, 1), do: loop1(fun, n + offset, offset)

  defp loop0(_fun, 0), do: :ok

  defp loop0(fun, n) do
    fun.()
    loop0(fun, n - 1)
  end

  defp loop1(_fun, stop, stop), do: :ok

  defp loop1(fun, n, stop) do
    fun.(n)
    loop1(fun, n - 1, stop)
  end

  # The ratio of two results' ns/op: the median of their rounds' own ratios (round `i` of
  # one against round `i` of the other, measured moments apart), so drift from one round to
  # the next does not enter it.
  defp ratio(%{samples: a}, %{samples: b}) when length(a) == length(b),
    do: median(round_ratios(a, b))

  defp ratio(%{ns: a}, %{ns: b}), do: a / b

  # A case's scaling over the core check's, round by round (`scaling/1`'s results).
  defp ratio(results, name, core) do
    scalings = fn case_name ->
      round_ratios(results[:single][case_name].samples, results[:all][case_name].samples)
    end

    median(round_ratios(scalings.(name), scalings.(core)))
  end

  defp round_ratios(a, b), do: Enum.zip_with(a, b, &(&1 / &2))

  defp median(samples) do
    sorted = Enum.sort(samples)
    len = length(sorted)
    mid = div(len, 2)

    if rem(len, 2) == 1,
      do: Enum.at(sorted, mid),
      else: (Enum.at(sorted, mid - 1) + Enum.at(sorted, mid)) / 2
  end

  # ---- output --------------------------------------------------------------------------

  defp print_table(mode, procs, rounds, cases, baselines, per_case) do
    label =
      if mode == :single,
        do: "1 process",
        else: "#{procs} processes (one per scheduler), aggregate"

    IO.puts("#{label}, median of #{rounds} rounds:\n")

    header = ["case", "ns/op", "ops/s"] ++ Enum.map(baselines, &"vs #{&1}")
    IO.puts("| " <> Enum.join(header, " | ") <> " |")

    IO.puts(
      "|" <>
        Enum.map_join(header, "|", fn h -> if h == "case", do: "---", else: "---:" end) <> "|"
    )

    for {name, _} <- cases do
      r = per_case[name]

      ratios =
        Enum.map(baselines, fn b ->
          if b == name, do: "1.00x", else: format_ratio(ratio(r, per_case[b]))
        end)

      row = [name, format_ns(r.ns), format_ops(r.ops)] ++ ratios
      IO.puts("| " <> Enum.join(row, " | ") <> " |")
    end

    IO.puts("")
  end

  defp report_target({:ratio, name, baseline, op, bound, mode}, results) do
    with %{^name => case_result, ^baseline => base} <- results[mode] do
      ratio = ratio(case_result, base)
      met = compare(ratio, op, bound)
      mode_label = if mode == :single, do: "1 process", else: "one per scheduler"

      print_target(
        "#{name} #{op_label(op)} #{bound}x #{baseline} (#{mode_label})",
        format_ratio(ratio),
        met
      )
    else
      _ -> print_target("#{name} vs #{baseline} (#{mode})", "not measured", false)
    end
  end

  defp report_target({:scaling, name, op, bound}, results) do
    # `run/1` measures the two modes in separate passes: their rounds are not paired.
    with %{^name => %{ops: one}} <- results[:single], %{^name => %{ops: all}} <- results[:all] do
      ratio_target(scaling_label(name, op, bound), all / one, op, bound)
    else
      _ -> print_target("#{name} scaling", "not measured (needs both modes)", false)
    end
  end

  defp report_target({:custom, description, fun}, results) do
    {met, actual} = fun.(results)
    print_target(description, actual, met)
  end

  defp scaling_label(name, op, bound),
    do: "#{name}: throughput with one process per scheduler #{op_label(op)} #{bound}x one process"

  defp ratio_target(label, ratio, op, bound),
    do: print_target(label, format_ratio(ratio), compare(ratio, op, bound))

  @doc """
  Starts a heartbeat process: it loops on `receive after 1` and records how late each wake-up
  is beyond the requested millisecond. `stop_heartbeat/1` returns the gaps in ms, sorted.
  """
  def start_heartbeat do
    parent = self()
    spawn_link(fn -> heartbeat(parent, System.monotonic_time(:microsecond), []) end)
  end

  @doc "Stops a heartbeat and returns its wake-up gaps in ms, sorted ascending."
  def stop_heartbeat(pid) do
    send(pid, :stop)
    receive do: ({:heartbeat_gaps, ^pid, gaps} -> Enum.sort(gaps))
  end

  defp heartbeat(parent, last, gaps) do
    receive do
      :stop -> send(parent, {:heartbeat_gaps, self(), gaps})
    after
      1 ->
        now = System.monotonic_time(:microsecond)
        heartbeat(parent, now, [max(0, now - last - 1_000) / 1_000 | gaps])
    end
  end

  @doc """
  The target of a native trick's A/B row (issue #15): the trick stays while its plain twin
  `plain` costs at least 15% more than the library's `library` call, with 1 process or with
  one per scheduler.
  """
  def keep_trick(trick, plain, library) do
    bar = 1.15

    {:custom,
     "#{trick} pays for itself: #{plain} >= #{bar}x #{library} (1 process, or one per scheduler)",
     fn results ->
       ratios = for {mode, r} <- results, do: {mode, r[plain].ns / r[library].ns}

       {Enum.any?(ratios, fn {_, x} -> x >= bar end),
        Enum.map_join(ratios, ", ", fn {mode, x} -> "#{mode} #{format_ratio(x)}" end)}
     end}
  end

  @doc "Prints a target line for a measurement made outside `run/1` (memory, latency)."
  def report(description, actual, met), do: print_target(description, actual, met)

  defp print_target(description, actual, met) do
    IO.puts("target: #{description}: #{actual} - #{if met, do: "met", else: "NOT met"}")
    met
  end

  defp compare(x, :<=, bound), do: x <= bound
  defp compare(x, :>=, bound), do: x >= bound

  defp op_label(:<=), do: "<="
  defp op_label(:>=), do: ">="

  def format_ns(ns) when ns >= 100, do: :erlang.float_to_binary(ns / 1, decimals: 0)
  def format_ns(ns), do: :erlang.float_to_binary(ns / 1, decimals: 1)

  def format_ops(ops) when ops >= 1.0e6,
    do: :erlang.float_to_binary(ops / 1.0e6, decimals: 2) <> "M"

  def format_ops(ops) when ops >= 1.0e3,
    do: :erlang.float_to_binary(ops / 1.0e3, decimals: 1) <> "k"

  def format_ops(ops), do: :erlang.float_to_binary(ops / 1, decimals: 0)

  def format_ratio(r), do: :erlang.float_to_binary(r / 1, decimals: 2) <> "x"

  defp modes_from_env do
    System.get_env("BENCH_MODES", "single,all")
    |> String.split(",", trim: true)
    |> Enum.map(fn
      "single" -> :single
      "all" -> :all
      other -> raise ArgumentError, "BENCH_MODES: unknown mode #{inspect(other)} (single, all)"
    end)
  end

  defp env_int(var, default) do
    case System.get_env(var) do
      nil -> default
      value -> String.to_integer(value)
    end
  end
end
