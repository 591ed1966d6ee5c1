# The A/B rows of the native tricks that stay (issue #15): each trick and its plain version,
# both compiled in (the plain twins come with the crate's `bench` feature, which `make bench`
# enables), measured in the same run on the paths users call: `Hotpath.RateLimiter.hit/2`,
# and the `:telemetry` handler of `Hotpath.Metrics`. A trick stays only while its plain
# version costs at least 15% more on that path.
#
#     HOTPATH_CARGO_FEATURES=bench MIX_ENV=prod mix run benches/native_ab.exs
Code.require_file("support/harness.exs", __DIR__)

defmodule Bench.NativeAB do
  @compile {:no_warn_undefined, :telemetry}

  alias Hotpath.{Metrics, Native, RateLimiter}

  @keys 10_000
  @bar 1.15

  def run do
    if function_exported?(Native, :bench_limiter_hit_rustler_nif, 3) and twins_loaded?() do
      limiter()
      metrics()
    else
      IO.puts(
        "\n## Native tricks: A/B\n\nSkipped: the NIF was built without the `bench` feature " <>
          "(HOTPATH_CARGO_FEATURES=bench, as `make bench` sets).\n"
      )
    end
  end

  defp twins_loaded? do
    Native.bench_limiter_hit_rustler_nif(:bench_ab_none, "k", 1)
    true
  rescue
    _ -> false
  end

  # -- hit/2 -------------------------------------------------------------------------------

  defp limiter do
    keys = List.to_tuple(for i <- 1..@keys, do: "user:#{i}")
    key = fn i -> elem(keys, rem(i, @keys)) end

    for name <- [:bench_ab_allow, :bench_ab_instant] do
      {:ok, _} =
        RateLimiter.start_link(
          name: name,
          algorithm: :gcra,
          limit: 1_000_000_000,
          period: 1_000,
          sweep_every: :infinity
        )
    end

    Hotpath.Bench.run(
      title: "Native tricks, A/B: Hotpath.RateLimiter.hit/2",
      note:
        "`:gcra`, 10k binary keys, allow-heavy. \"hit/2\" is the library's call; \"hit/2, fast " <>
          "entry\" its NIF (fast entry point, quanta clock) " <>
          "through the same Elixir `case` as `hit/2`, and each row below it changes one thing " <>
          "(the targets compare them with it): \"#[rustler::nif] entry\" registers " <>
          "the NIF with rustler's wrapper (an argument `Vec` per call); \"clock: " <>
          "Instant\" reads `std::time::Instant` instead of quanta (its own limiter).",
      cases: [
        {"empty NIF", fn -> Native.noop() end},
        {"hit/2", fn i -> RateLimiter.hit(:bench_ab_allow, key.(i)) end},
        {"hit/2, fast entry",
         fn i -> decided(Native.limiter_hit(:bench_ab_allow, key.(i), 1)) end},
        {"hit/2, #[rustler::nif] entry",
         fn i -> decided(Native.bench_limiter_hit_rustler_nif(:bench_ab_allow, key.(i), 1)) end},
        {"hit/2, clock: Instant",
         fn i -> decided(Native.bench_limiter_hit_instant(:bench_ab_instant, key.(i), 1)) end}
      ],
      baselines: ["empty NIF", "hit/2"],
      targets: [
        keep("entry point (fast_nif.rs)", "hit/2, #[rustler::nif] entry", "hit/2, fast entry"),
        keep("clock (quanta)", "hit/2, clock: Instant", "hit/2, fast entry")
      ]
    )
  end

  # What `hit/2` does with the NIF's answer.
  defp decided({:report, decision}), do: decision
  defp decided(:unpublished), do: raise(ArgumentError, "unpublished")
  defp decided(decision), do: decision

  # -- the telemetry handler -----------------------------------------------------------------

  defp metrics do
    event = [:bench_ab, :request, :stop]

    {:ok, owner} =
      Metrics.start_link(
        name: Bench.NativeAB.Registry,
        telemetry: false,
        metrics: [Metrics.distribution("bench_ab.request.stop.duration", tags: [:route, :method])]
      )

    config = handler_config(owner, event)
    meta = %{route: "/users/:id", method: "GET"}
    values = List.to_tuple(for i <- 1..1024, do: %{duration: 0.5 + rem(i * 7919, 1000) / 10})
    m = fn i -> elem(values, Bitwise.band(i, 1023)) end
    dispatch = dispatch_table(event, config)

    Hotpath.Bench.run(
      title: "Native tricks, A/B: the :telemetry handler of Hotpath.Metrics",
      note:
        "A distribution with 2 binary tags, recorded the way `:telemetry.execute/3` calls it: " <>
          "`Hotpath.Metrics.Handler.handle_event/4` with the handler config the owner attaches. " <>
          "\"handler\" is the library's; the \"replica\" rows run the same steps (measurement, " <>
          "tag values, one NIF call) with the library's NIF (\"fast entry\") or its plain twin " <>
          "\"#[rustler::nif] entry\" (rustler's wrapper). \"telemetry dispatch\" is what `:telemetry.execute/3` adds before the handler " <>
          "(its ETS lookup and the guarded apply, here to a no-op handler; the real " <>
          ":telemetry when it is installed): the targets compare whole events, dispatch + handler.",
      cases: [
        {"empty NIF", fn -> Native.noop() end},
        {"telemetry dispatch", fn i -> dispatch.(m.(i)) end},
        {"handler", fn i -> Metrics.Handler.handle_event(event, m.(i), meta, config) end},
        {"replica, fast entry", fn i -> replica(:fast, m.(i), meta, config) end},
        {"replica, #[rustler::nif] entry", fn i -> replica(:rustler_nif, m.(i), meta, config) end}
      ],
      baselines: ["empty NIF", "handler"],
      targets: [
        keep_event("entry point (fast_nif.rs)", "replica, #[rustler::nif] entry")
      ]
    )
  end

  # The config `Hotpath.Metrics` attaches for `event` (read from its owner's state).
  defp handler_config(owner, event) do
    state = :sys.get_state(owner)
    %{registry: Bench.NativeAB.Registry, metrics: Map.new(state.handlers)[event]}
  end

  # `:telemetry.execute/3`'s own work: its handler table lookup and the guarded apply.
  defp dispatch_table(event, _config) do
    if Code.ensure_loaded?(:telemetry) do
      :telemetry.attach("bench-ab-noop", [:bench_ab, :noop], &__MODULE__.noop_handler/4, nil)
      fn measurements -> :telemetry.execute([:bench_ab, :noop], measurements, %{}) end
    else
      table = :ets.new(:bench_ab_handlers, [:bag, :public, read_concurrency: true])
      :ets.insert(table, {event, &__MODULE__.noop_handler/4, nil})

      fn measurements ->
        Enum.each(:ets.lookup(table, event), fn {_, handler, config} ->
          try do
            handler.(event, measurements, %{}, config)
          catch
            _, _ -> :ok
          end
        end)
      end
    end
  end

  def noop_handler(_event, _measurements, _metadata, _config), do: :ok

  defp replica(nif, measurements, metadata, %{registry: registry, metrics: metrics}) do
    replica_all(metrics, nif, registry, measurements, metadata)
  end

  defp replica_all([], _nif, _registry, _measurements, _metadata), do: :ok

  defp replica_all([{index, kind, measurement, _keep, tag_values} | rest], nif, reg, ms, md) do
    value = if kind == :counter, do: nil, else: Map.get(ms, measurement)
    :ok = record(nif, reg, index, value, tag_values.(md))
    replica_all(rest, nif, reg, ms, md)
  end

  defp record(:fast, r, i, v, t), do: Native.metrics_record_index(r, i, v, t)

  defp record(:rustler_nif, r, i, v, t),
    do: Native.bench_metrics_record_index_rustler_nif(r, i, v, t)

  # -- targets -------------------------------------------------------------------------------

  # The trick stays while its plain version costs >= 15% more on the same call.
  defp keep(trick, plain, library) do
    {:custom,
     "#{trick} pays for itself: #{plain} >= #{@bar}x #{library} (1 process, or one per scheduler)",
     fn results ->
       ratios = for {mode, r} <- results, do: {mode, r[plain].ns / r[library].ns}
       {Enum.any?(ratios, fn {_, x} -> x >= @bar end), format_ratios(ratios)}
     end}
  end

  defp format_ratios(ratios) do
    Enum.map_join(ratios, ", ", fn {mode, x} -> "#{mode} #{Hotpath.Bench.format_ratio(x)}" end)
  end

  # The same on a whole telemetry event: dispatch + replica with the plain twin against
  # dispatch + replica with the library's NIF.
  defp keep_event(trick, plain) do
    {:custom,
     "#{trick} pays for itself on a whole event: dispatch + #{plain} >= #{@bar}x dispatch + " <>
       "replica, fast entry (1 process, or one per scheduler)",
     fn results ->
       ratios =
         for {mode, s} <- results do
           event = s["telemetry dispatch"].ns
           {mode, (event + s[plain].ns) / (event + s["replica, fast entry"].ns)}
         end

       {Enum.any?(ratios, fn {_, x} -> x >= @bar end), format_ratios(ratios)}
     end}
  end
end

Hotpath.Bench.main(&Bench.NativeAB.run/0)
